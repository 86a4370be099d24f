"""Admission: at most so many costly requests at once, the rest told to come back.

A recording (a voice report, a spoken answer to a task) is held in memory, up to 10 MB, while a
decoder learns its length, in a thread pool that queues whatever it cannot run yet: without a cap a
burst of recordings would queue without bound. Past the cap the gateway answers ``503`` with
``Retry-After`` before reading the recording.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.intake.submissions import Overloaded


class Admission:
    """A count of requests in progress, kept on the event loop (so no lock is needed)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place while the request is checked; :class:`Overloaded` when all are taken."""
        if self.active >= self.limit:
            raise Overloaded
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

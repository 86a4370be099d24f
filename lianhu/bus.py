"""Publishing with proof: a confirmed publisher and the transactional outbox relay.

A service writes its event into its own ``outbox`` table in the same transaction as the state
change; :class:`OutboxRelay` then publishes each row with a publisher confirm and ``mandatory``
set, and marks it sent only once the broker has taken responsibility for it. A broker that is
away only delays delivery: rows wait in the database until it is back; ``lianhu_outbox_backlog``
and ``lianhu_outbox_oldest_age_seconds`` show how many wait and for how long.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime

import pika
from pika.exceptions import AMQPError, UnroutableError
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lianhu import metrics
from lianhu.config import KitSettings
from lianhu.db import UtcDateTime, make_read_session_factory, write_lock
from lianhu.events import Event, utcnow
from lianhu.topology import declare

log = logging.getLogger(__name__)


class PublishFailed(Exception):
    """The broker did not confirm the message; it must stay in the outbox."""


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("exchange", String(100), nullable=False),
        Column("routing_key", String(100), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False, index=True),
        Column("sent_at", UtcDateTime, nullable=True, index=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
    )


def outbox_row(event: Event) -> dict:
    return {
        "id": event.event_id,
        "exchange": event.exchange(),
        "routing_key": event.event_type,
        "body": json.dumps(event.to_wire(), ensure_ascii=False),
        "created_at": utcnow(),
        "attempts": 0,
    }


def enqueue(session: Session, table: Table, event: Event) -> None:
    """Add an event to the outbox inside the caller's transaction."""
    session.execute(table.insert().values(**outbox_row(event)))


def outbox_backlog(session: Session, table: Table) -> tuple[int, datetime | None]:
    """Unsent rows and the creation time of the oldest."""
    count, oldest = session.execute(
        select(func.count(), func.min(table.c.created_at)).where(table.c.sent_at.is_(None))
    ).one()
    return count, oldest


def outbox_gauges(table: Table, service: str) -> Callable[[Session], list[metrics.Sample]]:
    """The :data:`lianhu.metrics.OUTBOX_GAUGES` of ``service``'s outbox, read from a session: for a
    service whose outbox is drained by other code than :class:`OutboxRelay` (``DatabaseGauges``)."""

    def read(session: Session) -> list[metrics.Sample]:
        count, oldest = outbox_backlog(session, table)
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        labels = {"service": service}
        return [("lianhu_outbox_backlog", labels, count), ("lianhu_outbox_oldest_age_seconds", labels, age)]

    return read


class ConfirmedPublisher:
    """A pika connection with publisher confirms; one per thread (pika is not thread-safe)."""

    def __init__(self, settings: KitSettings, connect_timeout: float = 5.0):
        self.settings = settings
        self.connect_timeout = connect_timeout
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def _ensure_channel(self):
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        params = pika.URLParameters(self.settings.amqp_uri)
        params.socket_timeout = self.connect_timeout
        params.blocked_connection_timeout = self.connect_timeout * 6
        params.heartbeat = 30
        self._connection = pika.BlockingConnection(params)
        channel = self._connection.channel()
        channel.confirm_delivery()
        # Declaring before publishing means a mandatory publish can only fail for a real reason.
        try:
            declare(self.settings, timeout=self.connect_timeout)
        except Exception as error:  # e.g. a queue declared elsewhere with other arguments
            self.close()
            raise PublishFailed(f"cannot declare the topology: {error}") from error
        self._channel = channel
        return channel

    def publish(self, exchange: str, routing_key: str, body: bytes, message_id: str) -> None:
        try:
            channel = self._ensure_channel()
            channel.basic_publish(
                exchange=exchange,
                routing_key=routing_key,
                body=body,
                mandatory=True,
                properties=pika.BasicProperties(
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=message_id,
                ),
            )
        except UnroutableError as error:
            # A work queue was deleted under us: reconnecting declares it again.
            self.close()
            raise PublishFailed(f"unroutable: {exchange}/{routing_key}") from error
        except (AMQPError, OSError) as error:
            self.close()
            raise PublishFailed(f"{type(error).__name__}: {error}") from error

    def keepalive(self) -> None:
        """Let pika answer heartbeats while the relay is idle; the broker drops a silent client."""
        if self._connection is None or not self._connection.is_open:
            return
        try:
            self._connection.process_data_events(time_limit=0)
        except (AMQPError, OSError):
            self.close()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(AMQPError, OSError):
                connection.close()


class OutboxRelay:
    """Moves outbox rows to the broker; safe to run in several processes at once on PostgreSQL."""

    def __init__(
        self,
        sessions: sessionmaker,
        table: Table,
        publish: Callable[[str, str, bytes, str], None],
        *,
        service: str,
        batch_size: int = 200,
        keepalive: Callable[[], None] | None = None,
    ):
        self.service = service
        self.sessions = sessions
        self.read_sessions = make_read_session_factory(sessions.kw["bind"])
        self.table = table
        self.publish = publish
        self.keepalive = keepalive
        self.batch_size = batch_size
        self.wake = threading.Event()
        # False while publishing fails (broker away); readiness and metrics report it.
        self.broker_ok = True

    def relay_once(self) -> int:
        """Publish one batch of unsent rows; returns how many were confirmed."""
        with self.sessions() as session:
            if session.bind.dialect.name == "postgresql":
                # Rows stay locked while they are published, so another relay process skips them
                # instead of publishing them twice; inserts by the gateway are not blocked.
                with session.begin():
                    rows = self._pending(session, lock=True)
                    sent, failure = self._publish_rows(rows)
                    self._mark(session, rows, sent, failure)
            else:
                # SQLite has one writer: never hold its lock across network round trips.
                with self.read_sessions() as reader:
                    rows = self._pending(reader, lock=False)
                if not rows:
                    return 0
                sent, failure = self._publish_rows(rows)
                with write_lock(session.bind), session.begin():
                    self._mark(session, rows, sent, failure)
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(sent))
        # Raised only after the commit: the rows confirmed before the failure stay marked sent.
        if failure is not None:
            metrics.OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
            raise PublishFailed(failure)
        return len(sent)

    def _pending(self, session: Session, lock: bool) -> list:
        table = self.table
        query = (
            select(table.c.id, table.c.exchange, table.c.routing_key, table.c.body)
            .where(table.c.sent_at.is_(None))
            .order_by(table.c.created_at)
            .limit(self.batch_size)
        )
        if lock:
            query = query.with_for_update(skip_locked=True)
        return session.execute(query).all()

    def _publish_rows(self, rows: list) -> tuple[list[str], str | None]:
        sent: list[str] = []
        for row in rows:
            try:
                self.publish(row.exchange, row.routing_key, row.body.encode(), row.id)
            except PublishFailed as error:
                log.warning("outbox publish failed after %d sent, will retry: %s", len(sent), error)
                return sent, str(error)
            sent.append(row.id)
        return sent, None

    def _mark(self, session: Session, rows: list, sent: list[str], failure: str | None) -> None:
        table = self.table
        if sent:
            session.execute(update(table).where(table.c.id.in_(sent)).values(sent_at=utcnow()))
        if failure is not None:
            session.execute(
                update(table)
                .where(table.c.id == rows[len(sent)].id)
                .values(attempts=table.c.attempts + 1, last_error=failure[:500])
            )

    def run(
        self,
        stop: threading.Event,
        idle_seconds: float = 1.0,
        max_backoff: float = 10.0,
        gather_seconds: float = 0.05,
    ) -> None:
        """Relay until ``stop`` is set; a commit elsewhere sets ``wake`` to cut the wait.

        After a wake the relay waits ``gather_seconds`` for more commits, so a busy gateway publishes
        in batches: a pass costs about as much for one row as for a hundred.
        """
        backoff = idle_seconds
        while not stop.is_set():
            try:
                count = self.relay_once()
                backoff = idle_seconds
                self.broker_ok = True
            except PublishFailed:
                self.broker_ok = False
                count = 0
                backoff = min(backoff * 2, max_backoff)
            except Exception:  # the database may be away; the relay must outlive that
                log.exception("outbox relay pass failed")
                count = 0
                backoff = min(backoff * 2, max_backoff)
            if count >= self.batch_size:
                continue
            woken = self.wake.wait(backoff)
            if woken and gather_seconds:
                stop.wait(gather_seconds)
            self.wake.clear()
            if self.keepalive is not None:
                self.keepalive()

    def backlog(self) -> tuple[int, datetime | None]:
        """Unsent rows and the creation time of the oldest, for readiness."""
        with self.read_sessions() as session:
            return outbox_backlog(session, self.table)

    def gauges(self) -> list[metrics.Sample]:
        """The outbox's :data:`lianhu.metrics.OUTBOX_GAUGES`, for a :class:`ScrapeGauges`."""
        with self.read_sessions() as session:
            return outbox_gauges(self.table, self.service)(session)

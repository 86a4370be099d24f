"""What "nothing accepted is lost, nothing is delivered twice" means, read from the services' own data.

For every report that got a ``201``: exactly one case in routing, exactly one inbox item in notify
for each unit among the case's recipients, and for a voice report a transcript. The databases are
read directly: the check must not trust the code it checks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from kombu import Connection

from lianhu.deadletters import depths
from tests.support.platform import Platform


@dataclass
class DeliveryAudit:
    accepted: int
    # Accepted reports without a case, without the inbox item of one of their recipients, or (voice)
    # without a transcript.
    lost: list[str] = field(default_factory=list)
    # Reports stored twice for one request, with two cases, a recipient listed twice, or an inbox
    # item twice.
    duplicated: list[str] = field(default_factory=list)
    # Why each report is lost or duplicated, for the failure message.
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.lost and not self.duplicated

    def describe(self, limit: int = 10) -> str:
        shown = [f"{report_id}: {self.reasons[report_id]}" for report_id in [*self.lost, *self.duplicated]]
        return f"{len(self.lost)} lost, {len(self.duplicated)} duplicated: " + "; ".join(shown[:limit])


def audit_delivery(
    platform: Platform,
    accepted: Collection[str],
    voice: Collection[str] = (),
    reporters: Collection[str] = (),
) -> DeliveryAudit:
    """Check every accepted report id; ``reporters``' stored reports that no ``201`` named count as
    duplicates (a retried request stored twice) — pass them only once every request was answered."""
    wanted = set(accepted)
    audit = DeliveryAudit(accepted=len(wanted))
    cases_of: dict[str, list[str]] = {}
    for report_id, case_id in platform.query("routing", "SELECT report_id, id FROM cases"):
        if report_id in wanted:
            cases_of.setdefault(report_id, []).append(case_id)
    case_ids = {case_id for ids in cases_of.values() for case_id in ids}
    recipients: dict[str, Counter[int]] = {}
    for case_id, unit_id in platform.query("routing", "SELECT case_id, org_unit_id FROM case_recipients"):
        if case_id in case_ids:
            recipients.setdefault(case_id, Counter())[unit_id] += 1
    transcribed = {
        report_id
        for report_id, state, transcript in platform.query(
            "routing", "SELECT report_id, transcription, transcript FROM cases"
        )
        if state == "done" and (transcript or "").strip()
    }
    items: dict[str, Counter[int]] = {}
    for case_id, unit_id in platform.query("notify", "SELECT case_id, org_unit_id FROM inbox_items"):
        if case_id in case_ids:
            items.setdefault(case_id, Counter())[unit_id] += 1

    def lost(report_id: str, why: str) -> None:
        audit.lost.append(report_id)
        audit.reasons[report_id] = why

    def duplicated(report_id: str, why: str) -> None:
        audit.duplicated.append(report_id)
        audit.reasons[report_id] = why

    for report_id in sorted(wanted):
        cases = cases_of.get(report_id, [])
        if not cases:
            lost(report_id, "no case")
            continue
        if len(cases) > 1:
            duplicated(report_id, f"{len(cases)} cases")
            continue
        units = recipients.get(cases[0], Counter())
        delivered = items.get(cases[0], Counter())
        if any(count > 1 for count in units.values()):
            duplicated(report_id, "a recipient listed twice")
        elif any(count > 1 for count in delivered.values()):
            duplicated(report_id, "an inbox item twice")
        elif not units or set(units) - set(delivered):
            lost(report_id, f"inbox items missing for units {sorted(set(units) - set(delivered))}")
        elif report_id in voice and report_id not in transcribed:
            lost(report_id, "no transcript")
    if reporters:
        names = set(reporters)
        for report_id, username in platform.query("intake", "SELECT id, reporter_username FROM reports"):
            if username in names and report_id not in wanted:
                duplicated(report_id, "stored, but no 201 named it (a retry stored twice)")
    return audit


def wait_for_delivery(
    platform: Platform,
    accepted: Collection[str],
    voice: Collection[str] = (),
    reporters: Collection[str] = (),
    timeout: float = 60,
) -> DeliveryAudit:
    """Audit until every accepted report is delivered or ``timeout`` passes; the last audit."""
    deadline = time.monotonic() + timeout
    while True:
        audit = audit_delivery(platform, accepted, voice, reporters)
        if not audit.lost or time.monotonic() > deadline:
            return audit
        time.sleep(0.5)


def dead_letters(amqp_uri: str) -> dict[str, int]:
    """Messages parked in each ``<queue>.dead``: not lost, but not delivered either."""
    with Connection(amqp_uri, connect_timeout=5) as connection:
        return {depth.sub.dead_letter_queue: depth.dead for depth in depths(connection.default_channel)}

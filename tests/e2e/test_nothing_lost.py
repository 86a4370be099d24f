"""Nothing accepted is lost, nothing is delivered twice: a worker killed with messages in hand, and
the broker crashing and coming back, under a stream of reports.

The short version of ``bench/soak.py`` (which injects dozens of such faults at random moments). The
broker here is a RabbitMQ node of this module's own (``PrivateBroker``): the machine's shared node
is never restarted. The services run supervised, as deployed (a process that exits is restarted).
Only outcomes are asserted, each waited for with a deadline, never a duration.
"""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from tests.e2e.test_text_reports import jiangqian_worker
from tests.support.delivery import dead_letters, wait_for_delivery
from tests.support.faults import PrivateBroker, Supervisor

pytestmark = pytest.mark.e2e

# Ordinary, urgent (a township copy) and departmental (a department copy) reports: every kind of
# recipient list is exercised.
TEXTS = (
    "请问今年的草原生态保护补助奖励资金什么时候发放？",
    "河边草场起火了，风很大，火正往定居点方向烧",
    "牧民家里的老人突然昏迷不醒，需要马上送医院",
    "一村有两户牧民的牦牛昨晚被狼咬死了五头",
    "两户人家因为草场边界吵起来了，可能会动手",
)


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory):
    broker = PrivateBroker(tmp_path_factory.mktemp("rabbitmq"))
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(scope="module")
def amqp_uri(private_broker):
    """The platform of this module runs on its own broker node, which the tests crash."""
    return private_broker.amqp_uri


@pytest.fixture
def supervisor(platform):
    with Supervisor(platform) as supervisor:
        yield supervisor


def submit_many(session, count: int) -> list[str]:
    ids = []
    for index in range(count):
        response = session.client.post(
            "/v1/reports",
            json={"text": TEXTS[index % len(TEXTS)]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def routed_count(platform, report_ids: list[str]) -> int:
    wanted = set(report_ids)
    return sum(
        1 for (report_id,) in platform.query("routing", "SELECT report_id FROM cases") if report_id in wanted
    )


def assert_all_delivered_once(platform, report_ids: list[str], amqp: str) -> None:
    audit = wait_for_delivery(platform, report_ids, timeout=120)
    assert audit.complete, audit.describe() + "\n" + platform.logs()
    assert not any(dead_letters(amqp).values()), dead_letters(amqp)
    assert all(process.poll() is None for process in platform.processes.values()), platform.logs()


def test_routing_killed_with_messages_in_hand_loses_and_repeats_nothing(
    platform, sign_in, amqp_uri, supervisor
):
    worker = sign_in(jiangqian_worker)
    flowing = submit_many(worker, 20)
    # Frozen while it works through the first reports; the next ones are pushed to it (its prefetch)
    # and sit unacknowledged in the dead process, as they would in a crash.
    os.killpg(platform.processes["routing"].pid, signal.SIGSTOP)
    in_hand = submit_many(worker, 10)
    accepted = flowing + in_hand
    assert routed_count(platform, accepted) < len(accepted), "the kill must find reports not yet routed"
    supervisor.kill("routing", signal.SIGKILL)

    assert_all_delivered_once(platform, accepted, amqp_uri)


def test_broker_crash_and_restart_loses_and_repeats_nothing(platform, sign_in, private_broker, supervisor):
    worker = sign_in(jiangqian_worker)
    flowing = submit_many(worker, 20)
    private_broker.kill()  # kill -9 of the node, mid-flow
    # Still accepted while the broker is away: the gateway's outbox keeps them.
    while_down = submit_many(worker, 10)
    private_broker.start()

    # The services reconnect by themselves; the test restarts none (the supervisor would restart
    # one that exited, as the deployment does).
    assert_all_delivered_once(platform, flowing + while_down, private_broker.amqp_uri)

"""Fault-injection soak: every report that got a ``201`` reaches every recipient exactly once.

Usage::

    .venv/bin/python bench/soak.py --minutes 6 --faults 50 [--rate 8] [--voice-share 0.1] [--seed 1]

What it runs: the whole platform as ``make run`` starts it (registry, routing, notify, speech with
the Korean Vosk model standing in for Mandarin, the gateway; each its own process from the
Procfile), seeded with the demo county, on a RabbitMQ node of its own (``PrivateBroker``: the
machine's shared broker is never touched) and on fresh PostgreSQL databases reached through a TCP
proxy that can be cut. Everything is removed afterwards (``--keep`` keeps the logs).

The load (open loop): ``--rate`` reports a second from a pool of signed-in liaison workers, a
``--voice-share`` of them voice reports (an Opus clip made with espeak-ng), whatever the gateway
answers. Each report is a phone: it retries with the same ``Idempotency-Key`` after no answer, a
cut connection, a ``409``, ``429`` or ``5xx`` (after ``Retry-After`` when given, else a growing
pause) until it gets a ``201`` or a final refusal.

The faults, ``--faults`` of them at random moments over ``--minutes`` (one at a time: each is
injected, then its recovery is awaited): ``kill -9`` of routing, notify or speech, restarted at once
as a supervisor would; a RabbitMQ crash (``kill -9`` of the node) or clean stop, started again on
the same data; the gateway killed with ``kill -9`` while a request is in flight, restarted; the
database unreachable for 2-5 s (every connection of every service cut, new ones refused). A fault
has *recovered* when its component answers again (``lianhu health``, an AMQP connection, the
gateway's ``/readyz``, a query through the proxy) within 120 s. Every process runs supervised, as
deployed (``Supervisor``): one that exits by itself is restarted and counted (``unplanned_exits``).

The check, once every submission is answered: for each accepted report exactly one case, exactly
one inbox item for each of its recipient units, a transcript for a voice report, and no report
stored that no ``201`` named (``tests/support/delivery.py``); the dead-letter queues are read too.
Progress lines first; the last line is JSON:
``{"accepted","faults","lost","duplicated","recovered","p99_submit_ms", ...}`` where
``p99_submit_ms`` runs from a report's first attempt to its ``201`` (retries through outages
included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make ``lianhu``, ``services`` and ``tests`` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg2  # noqa: E402

from lianhu.config import SERVICE_NAMES  # noqa: E402
from tests.conftest import pg_admin  # noqa: E402
from tests.support.delivery import DeliveryAudit, dead_letters, wait_for_delivery  # noqa: E402
from tests.support.faults import PrivateBroker, Supervisor  # noqa: E402
from tests.support.platform import BIN, Platform, free_port, platform_env, query  # noqa: E402
from tests.support.tcp_proxy import TcpProxy  # noqa: E402
from tests.support.vosk_model import KOREAN_MODEL, spoken_korean_clip  # noqa: E402

WORKERS = ("registry", "routing", "notify")
SERVICE_ENV = {"speech": {"LIANHU_SPEECH_MODELS": f"zh={KOREAN_MODEL}"}}
TEXTS = (
    "请问今年的草原生态保护补助奖励资金什么时候发放？",
    "河边草场起火了，风很大，火正往定居点方向烧，已经有三户人家在搬东西",
    "牧民家里的老人突然昏迷不醒，需要马上送医院",
    "一村有两户牧民的牦牛昨晚被狼咬死了五头，请派人来看看",
    "两户人家因为草场边界吵起来了，可能会动手，请网格长尽快来调解",
    "连着下了三天大雪，山上的羊群被困住，饲草只够两天了",
    "饮水管道冻裂了，十几户牧民已经两天没有干净水喝",
)
FAULT_KINDS = (
    "kill routing",
    "kill notify",
    "kill speech",
    "restart broker",
    "kill gateway",
    "cut database",
)
RECOVERY_TIMEOUT = 120.0


# --------------------------------------------------------------------------- the platform


class Stack:
    """The whole platform on a broker node and databases of its own, torn down on exit.

    ``database_link`` puts a cuttable TCP proxy between every service and PostgreSQL.
    """

    def __init__(
        self, engine: str, speech: bool, database_link: bool, keep: bool = False, env: dict | None = None
    ):
        self.engine = engine
        self.extra_env = env or {}
        self.speech = speech
        self.keep = keep
        self.var_dir = Path(tempfile.mkdtemp(prefix="lianhu-soak-"))
        self.broker = PrivateBroker(self.var_dir / "rabbitmq")
        self.database_link: TcpProxy | None = None
        if database_link:
            if engine != "postgresql":
                raise ValueError("the database link can only be cut on PostgreSQL")
            self.database_link = TcpProxy("127.0.0.1", 5432)
        self.databases: list[str] = []
        self.platform: Platform | None = None
        self.supervisor: Supervisor | None = None

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self.broker.start()
        urls = {}
        if self.engine == "postgresql":
            port = self.database_link.port if self.database_link else 5432
            for service in SERVICE_NAMES:
                name = f"lianhu_soak_{uuid.uuid4().hex[:12]}"
                pg_admin(f'CREATE DATABASE "{name}"')
                self.databases.append(name)
                urls[service] = f"postgresql://postgres@127.0.0.1:{port}/{name}"
        http_port = free_port()
        env = platform_env(self.var_dir, self.broker.amqp_uri, urls, http_port)
        env["LIANHU_TOKEN_TTL_MINUTES"] = "600"  # phones sign in once for the whole run
        env.update(self.extra_env)
        self.platform = Platform(env, self.var_dir, f"http://127.0.0.1:{http_port}")
        self.platform.prepare_demo_county()
        for name in (*WORKERS, *(("speech",) if self.speech else ()), "intake"):
            self.platform.start(name, env=SERVICE_ENV.get(name))
        self.platform.wait_ready(timeout=240)
        self.supervisor = Supervisor(self.platform, SERVICE_ENV)
        self.supervisor.start()

    def __exit__(self, *exc) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.platform is not None:
            self.platform.stop_all()
        self.broker.kill()
        if self.database_link is not None:
            self.database_link.close()
        for name in self.databases:
            with contextlib.suppress(psycopg2.Error):
                pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self.keep:
            print(f"# kept {self.var_dir}", flush=True)
        else:
            shutil.rmtree(self.var_dir, ignore_errors=True)

    def healthy(self, name: str) -> bool:
        result = subprocess.run(
            [str(BIN / "lianhu"), "health", name, "--timeout", "2"],
            env=self.platform.env,
            capture_output=True,
            timeout=30,
        )
        return result.returncode == 0

    def gateway_ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.platform.base_url}/readyz", timeout=2).status_code == 200
        return False

    def database_answers(self) -> bool:
        with contextlib.suppress(Exception):
            query(self.platform.database_url("intake"), "SELECT 1")
            return True
        return False


def liaison_workers(platform: Platform, count: int) -> list[dict]:
    accounts = [a for a in platform.accounts() if a["role"] == "liaison_worker"]
    return accounts[:count]


def sign_in(platform: Platform, account: dict) -> str:
    response = httpx.post(
        f"{platform.base_url}/v1/auth/token",
        data={"username": account["username"], "password": account["password"]},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


# --------------------------------------------------------------------------- the phones


@dataclass
class Submission:
    key: str
    token: str
    voice: bool
    text: str
    started: float = 0.0
    attempts: int = 0
    report_ids: set[str] = field(default_factory=set)
    accepted_after: float | None = None
    refused: int | None = None


@dataclass
class Phones:
    """Open-loop senders of reports that retry like a phone on a bad link."""

    base_url: str
    clip: bytes
    give_up_at: float = math.inf
    submissions: list[Submission] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    in_flight: int = 0
    cut: int = 0  # attempts whose connection broke after the request was sent

    async def send(self, client: httpx.AsyncClient, submission: Submission) -> None:
        submission.started = time.monotonic()
        pause = 0.5
        while time.monotonic() < self.give_up_at:
            submission.attempts += 1
            headers = {"Authorization": f"Bearer {submission.token}", "Idempotency-Key": submission.key}
            self.in_flight += 1
            try:
                if submission.voice:
                    response = await client.post(
                        "/v1/reports",
                        data={"language": "zh"},
                        files={"audio": ("voice.ogg", self.clip, "audio/ogg")},
                        headers=headers,
                    )
                else:
                    response = await client.post(
                        "/v1/reports", json={"text": submission.text}, headers=headers
                    )
            except httpx.ConnectError:
                self.statuses["no connection"] += 1
                retry_after = None
            except httpx.TransportError:  # sent, then no answer: the gateway died or stalled mid-request
                self.statuses["cut"] += 1
                self.cut += 1
                retry_after = None
            else:
                self.statuses[response.status_code] += 1
                if response.status_code == 201:
                    submission.report_ids.add(response.json()["id"])
                    submission.accepted_after = time.monotonic() - submission.started
                    return
                if response.status_code not in (409, 429) and response.status_code < 500:
                    submission.refused = response.status_code
                    return
                retry_after = response.headers.get("Retry-After")
            finally:
                self.in_flight -= 1
            wait = float(retry_after) if retry_after and retry_after.isdigit() else pause
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))  # jitter: phones do not retry in step
            pause = min(pause * 2, 8.0)

    async def drive(self, rate: float, voice_share: float, tokens: list[str], stop: asyncio.Event) -> None:
        """Start ``rate`` submissions a second, whatever happens to earlier ones, until ``stop``."""
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20, limits=limits) as client:
            tasks: set[asyncio.Task] = set()
            start = time.monotonic()
            sent = 0
            while not stop.is_set():
                due = int((time.monotonic() - start) * rate) + 1
                while sent < due:
                    voice = random.random() < voice_share
                    submission = Submission(
                        key=str(uuid.uuid4()),
                        token=random.choice(tokens),
                        voice=voice,
                        text=random.choice(TEXTS),
                    )
                    self.submissions.append(submission)
                    task = asyncio.create_task(self.send(client, submission))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                await asyncio.sleep(min(0.05, 1 / rate))
            if tasks:
                await asyncio.wait(tasks)


# --------------------------------------------------------------------------- the faults


@dataclass
class FaultRecord:
    kind: str
    at: float
    recovered_in: float | None


async def wait_until(check, timeout: float) -> float | None:
    """Seconds until ``check()`` (run in a thread) holds, or ``None`` after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await asyncio.to_thread(check):
            return time.monotonic() - start
        await asyncio.sleep(0.25)
    return None


async def inject(stack: Stack, kind: str, phones: Phones, crash_broker: bool) -> float | None:
    """Inject one fault and restore what a supervisor would; seconds until the component answers."""
    started = time.monotonic()
    if kind.startswith("kill ") and kind != "kill gateway":
        name = kind.removeprefix("kill ")
        await asyncio.to_thread(stack.supervisor.kill, name)
        ready = await wait_until(lambda: stack.healthy(name), RECOVERY_TIMEOUT)
    elif kind == "kill gateway":
        # Mid-request: wait (briefly) for a request to be in flight.
        deadline = time.monotonic() + 2
        while phones.in_flight == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        await asyncio.to_thread(stack.supervisor.kill, "intake")
        ready = await wait_until(stack.gateway_ready, RECOVERY_TIMEOUT)
    elif kind == "restart broker":
        await asyncio.to_thread(stack.broker.restart, crash_broker)
        ready = 0.0
    elif kind == "cut database":
        stack.database_link.cut()
        await asyncio.sleep(random.uniform(2, 5))
        stack.database_link.restore()
        ready = await wait_until(stack.database_answers, RECOVERY_TIMEOUT)
    else:
        raise ValueError(kind)
    return None if ready is None else time.monotonic() - started


async def inject_faults(
    stack: Stack, phones: Phones, count: int, seconds: float, records: list[FaultRecord]
) -> None:
    """``count`` faults at random moments over ``seconds``, one at a time."""
    start = time.monotonic()
    moments = sorted(random.uniform(0.05, 0.95) * seconds for _ in range(count))
    kinds = [FAULT_KINDS[i % len(FAULT_KINDS)] for i in range(count)]
    random.shuffle(kinds)
    broker_restarts = 0
    for moment, kind in zip(moments, kinds, strict=True):
        await asyncio.sleep(max(0.0, start + moment - time.monotonic()))
        crash = broker_restarts % 2 == 0  # crashes and clean restarts, alternately
        broker_restarts += kind == "restart broker"
        at = time.monotonic() - start
        recovered_in = await inject(stack, kind, phones, crash)
        if kind == "restart broker":
            kind += " (kill -9)" if crash else " (clean)"
        records.append(FaultRecord(kind, at, recovered_in))
        shown = f"{recovered_in:.1f}s" if recovered_in is not None else "NOT RECOVERED"
        print(f"[{at:6.1f}s] fault {len(records):3d}: {kind:26} recovered in {shown}", flush=True)


# --------------------------------------------------------------------------- the run


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def soak(stack: Stack, args: argparse.Namespace, clip: bytes) -> tuple[Phones, list[FaultRecord]]:
    accounts = liaison_workers(stack.platform, args.phones)
    tokens = [sign_in(stack.platform, account) for account in accounts]
    phones = Phones(stack.platform.base_url, clip)
    records: list[FaultRecord] = []
    stop = asyncio.Event()
    seconds = args.minutes * 60
    load = asyncio.create_task(phones.drive(args.rate, args.voice_share, tokens, stop))
    started = time.monotonic()
    await inject_faults(stack, phones, args.faults, seconds, records)
    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
    # Phones still retrying get until then to hear their answer.
    phones.give_up_at = time.monotonic() + 180
    stop.set()
    await load
    return phones, records


def summarise(
    phones: Phones,
    records: list[FaultRecord],
    audit: DeliveryAudit,
    parked: dict[str, int],
    exits: Counter,
    seconds: float,
) -> dict:
    accepted = [s for s in phones.submissions if s.report_ids]
    latencies = [s.accepted_after * 1000 for s in accepted if s.accepted_after is not None]
    recoveries = [r.recovered_in for r in records if r.recovered_in is not None]
    p99 = percentile(latencies, 0.99)
    return {
        "accepted": len(accepted),
        "faults": len(records),
        "lost": len(audit.lost),
        "duplicated": len(audit.duplicated) + sum(len(s.report_ids) > 1 for s in accepted),
        "recovered": len(recoveries),
        "p99_submit_ms": round(p99, 1) if p99 is not None else None,
        "p50_submit_ms": round(percentile(latencies, 0.5) or 0, 1),
        "voice_accepted": sum(s.voice for s in accepted),
        "submissions": len(phones.submissions),
        "unanswered": sum(1 for s in phones.submissions if not s.report_ids and s.refused is None),
        "refused": dict(Counter(str(s.refused) for s in phones.submissions if s.refused is not None)),
        "retried": sum(s.attempts > 1 for s in accepted),
        "requests_cut": phones.cut,
        "answers": {str(status): count for status, count in phones.statuses.items()},
        "faults_by_kind": dict(Counter(r.kind for r in records)),
        "recovery_s_p50": round(percentile(recoveries, 0.5) or 0, 1),
        "recovery_s_max": round(max(recoveries), 1) if recoveries else None,
        "dead_letters": sum(parked.values()),
        # Processes that died by themselves (not killed by the soak) and were restarted.
        "unplanned_exits": dict(exits),
        "lost_examples": audit.describe(5) if not audit.complete else "",
        "seconds": round(seconds),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--faults", type=int, default=50)
    parser.add_argument("--rate", type=float, default=8, help="reports started per second")
    parser.add_argument("--voice-share", type=float, default=0.1)
    parser.add_argument("--phones", type=int, default=40, help="liaison workers signed in")
    parser.add_argument("--seed", type=int, default=None, help="random seed (fault moments and kinds)")
    parser.add_argument("--keep", action="store_true", help="keep the var dir (logs)")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    started = time.monotonic()
    with Stack("postgresql", speech=True, database_link=True, keep=args.keep) as stack:
        clip = spoken_korean_clip(stack.var_dir)
        print(
            f"# platform up in {time.monotonic() - started:.0f}s; broker {stack.broker.amqp_uri}", flush=True
        )
        phones, records = asyncio.run(soak(stack, args, clip))
        accepted = {rid for s in phones.submissions for rid in s.report_ids}
        voice = {rid for s in phones.submissions if s.voice for rid in s.report_ids}
        unanswered = any(not s.report_ids and s.refused is None for s in phones.submissions)
        reporters = (
            () if unanswered else {a["username"] for a in liaison_workers(stack.platform, args.phones)}
        )
        print(f"# load stopped; checking {len(accepted)} accepted reports", flush=True)
        audit = wait_for_delivery(stack.platform, accepted, voice, reporters, timeout=300)
        parked = dead_letters(stack.broker.amqp_uri)
        exits = stack.supervisor.exits
        summary = summarise(phones, records, audit, parked, exits, time.monotonic() - started)
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()

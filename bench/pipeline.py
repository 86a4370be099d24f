"""End-to-end throughput and latency, submit → every recipient's inbox, beside the broker's own floor.

Usage::

    .venv/bin/python bench/pipeline.py [--rates 25,50,100,200,400,600] [--seconds 10]
        [--baseline-rates 100,200,…] [--engine postgresql|sqlite] [--p99-ms 2000]

What it runs: the platform as ``make run`` starts it (registry, routing, notify, the gateway; each its
own process from the Procfile, one of each), seeded with the demo county, on a RabbitMQ node of its
own (``PrivateBroker``) and fresh databases (PostgreSQL by default), all removed afterwards. No
speech: voice transcription is measured by ``bench/speech.py``.

How it measures, at each offered rate of the ladder (open loop, ``bench/intake.py``'s client: sends
on a fixed schedule whatever the gateway answers, latency from the scheduled send):

- pipeline: ``--seconds`` of ``POST /v1/reports`` (text, one liaison worker's account; each
  ``Idempotency-Key`` carries its send time). Then it waits (up to ``--drain`` seconds) until every
  accepted report has an inbox item for each unit its case went to. A report's end-to-end latency
  is the last of those items' ``created_at`` (notify's commit) minus its send time; one not
  delivered in time counts as infinitely slow.
- baseline, on the same broker in the same run: raw publish → consume → ack, the same persistence
  (a durable quorum queue, persistent messages, one synchronous publisher confirm per message as
  the gateway's outbox relay does, manual acks after receipt, prefetch 10 as a nameko service);
  latency from the scheduled publish to the consumer's receipt.

A rate passes when at least 99 % of its requests were accepted (``2xx``), every accepted message was
delivered, and the p99 is under ``--p99-ms``. Each ladder stops after its first failed rate.

Last line, JSON: ``{"sustained_rps","p99_e2e_ms","baseline_rps","ratio", ...}``: the highest
passing rate and the p99 there, the same for the baseline, their ratio; then every step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make ``bench``, ``lianhu``, ``services`` importable
    sys.path.insert(0, str(ROOT))

import pika  # noqa: E402

from bench.intake import RequestFactory, run_step  # noqa: E402
from bench.soak import Stack, liaison_workers, sign_in  # noqa: E402

BASELINE_QUEUE = "bench.baseline"
BASELINE_PREFETCH = 10  # nameko's prefetch is its worker count (LIANHU_MAX_WORKERS, 10)


class TimedRequests(RequestFactory):
    """``bench/intake.py``'s pre-built requests; each key is ``<tag><send time>-<seq>``."""

    def __call__(self) -> bytes:
        self.seq += 1
        key = b"%s%.6f-%d" % (self.tag, time.time(), self.seq)
        return self.head + key + self.tails[self.seq % len(self.tails)]


def percentile(values: list[float], q: float, total: int) -> float:
    """Nearest rank over ``total`` items, the missing ones infinitely slow."""
    if not total:
        return math.inf
    rank = max(1, math.ceil(q * total))
    return sorted(values)[rank - 1] if rank <= len(values) else math.inf


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_ids(stack: Stack) -> dict[str, int]:
    """The platform's processes and the broker node (its Erlang VM, named in its pid file)."""
    pids = {name: process.pid for name, process in stack.platform.processes.items()}
    pid_file = stack.broker.base_dir / "broker.pid"
    if pid_file.exists():
        pids["rabbitmq"] = int(pid_file.read_text().strip())
    return pids


def as_utc(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def e2e_latencies(stack: Stack, tag: str) -> tuple[int, list[float]]:
    """Accepted reports of one step and the end-to-end seconds of those fully delivered."""
    platform = stack.platform
    sent_at: dict[str, float] = {}
    for key, body in platform.query(
        "intake", "SELECT key, response_body FROM idempotency_keys WHERE key LIKE :tag", tag=f"{tag}%"
    ):
        sent_at[json.loads(body)["id"]] = float(key.removeprefix(tag).split("-", 1)[0])
    case_of = {
        case_id: report_id
        for report_id, case_id in platform.query("routing", "SELECT report_id, id FROM cases")
        if report_id in sent_at
    }
    units: dict[str, set[int]] = {}
    for case_id, unit_id in platform.query("routing", "SELECT case_id, org_unit_id FROM case_recipients"):
        if case_id in case_of:
            units.setdefault(case_id, set()).add(unit_id)
    delivered: dict[str, dict[int, datetime]] = {}
    for case_id, unit_id, created_at in platform.query(
        "notify", "SELECT case_id, org_unit_id, created_at FROM inbox_items"
    ):
        if case_id in case_of:
            delivered.setdefault(case_id, {})[unit_id] = as_utc(created_at)
    latencies = []
    for case_id, report_id in case_of.items():
        items = delivered.get(case_id, {})
        if units.get(case_id) and units[case_id] <= set(items):
            latencies.append(max(items.values()).timestamp() - sent_at[report_id])
    return len(sent_at), latencies


async def pipeline_step(stack: Stack, token: str, rate: int, args: argparse.Namespace) -> dict:
    port = int(stack.platform.base_url.rsplit(":", 1)[1])
    tag = f"{uuid.uuid4().hex[:8]}-"
    pids = process_ids(stack)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wall_before = time.monotonic()
    result = await run_step(
        "pipeline", "127.0.0.1", port, rate, args.seconds, 256, TimedRequests("127.0.0.1", port, token, tag)
    )
    deadline = time.monotonic() + args.drain
    while True:
        accepted, latencies = await asyncio.to_thread(e2e_latencies, stack, tag)
        if len(latencies) >= accepted or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    wall = time.monotonic() - wall_before
    # Where the cores went during the step and its drain (1.0 = one core busy all the time).
    cpu = {name: round((cpu_seconds(pid) - cpu_before[name]) / wall, 2) for name, pid in pids.items()}
    p99 = percentile(latencies, 0.99, accepted)
    return {
        "rate": rate,
        "scheduled": result.scheduled,
        "accepted": accepted,
        "delivered": len(latencies),
        "submit_p99_ms": None if math.isinf(result.p99_ms) else round(result.p99_ms, 1),
        "p50_e2e_ms": round(percentile(latencies, 0.5, accepted) * 1000, 1)
        if latencies and not math.isinf(percentile(latencies, 0.5, accepted))
        else None,
        "p99_e2e_ms": None if math.isinf(p99) else round(p99 * 1000, 1),
        "cpu": cpu,
        "passed": accepted >= 0.99 * result.scheduled
        and len(latencies) == accepted
        and p99 * 1000 < args.p99_ms,
    }


# --------------------------------------------------------------------------- the baseline


def _channel(amqp_uri: str):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    return connection, connection.channel()


def consume(amqp_uri: str, expected: int, idle_seconds: float, results) -> None:
    """Consume and ack until ``expected`` messages came or none came for ``idle_seconds``; send back
    each message's latency (receipt minus the scheduled publish time in its body)."""
    connection, channel = _channel(amqp_uri)
    channel.basic_qos(prefetch_count=BASELINE_PREFETCH)
    latencies: list[float] = []
    for method, _properties, body in channel.consume(BASELINE_QUEUE, inactivity_timeout=idle_seconds):
        if method is None:
            break
        latencies.append(time.time() - float(body))
        channel.basic_ack(method.delivery_tag)
        if len(latencies) >= expected:
            break
    channel.cancel()
    connection.close()
    results.put(latencies)


def baseline_step(amqp_uri: str, rate: int, args: argparse.Namespace) -> dict:
    connection, channel = _channel(amqp_uri)
    channel.queue_declare(BASELINE_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_purge(BASELINE_QUEUE)
    channel.confirm_delivery()
    total = max(1, round(rate * args.seconds))
    results: multiprocessing.Queue = multiprocessing.Queue()
    consumer = multiprocessing.Process(target=consume, args=(amqp_uri, total, args.drain, results))
    consumer.start()
    properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    start = time.time() + 0.5
    for sent in range(total):
        scheduled = start + sent / rate
        delay = scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        # The scheduled time, not the actual one: a publisher that falls behind is charged for it.
        channel.basic_publish("", BASELINE_QUEUE, b"%.6f" % scheduled, properties, mandatory=True)
    latencies = results.get(timeout=args.drain + args.seconds + 60)
    consumer.join(timeout=10)
    connection.close()
    p99 = percentile(latencies, 0.99, total)
    return {
        "rate": rate,
        "published": total,
        "delivered": len(latencies),
        "p99_ms": None if math.isinf(p99) else round(p99 * 1000, 1),
        "passed": len(latencies) == total and p99 * 1000 < args.p99_ms,
    }


# --------------------------------------------------------------------------- the run


def ladder(step, rates: list[int], label: str) -> list[dict]:
    steps = []
    for rate in rates:
        result = step(rate)
        steps.append(result)
        print(f"[{label:8}] {json.dumps(result)}", flush=True)
        if not result["passed"]:
            break
    return steps


def best(steps: list[dict]) -> dict | None:
    passed = [s for s in steps if s["passed"]]
    return max(passed, key=lambda s: s["rate"]) if passed else None


def parse_rates(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=parse_rates, default=parse_rates("25,50,100,200,400,600"))
    parser.add_argument(
        "--baseline-rates", type=parse_rates, default=parse_rates("100,200,400,600,800,1000,1500,2000")
    )
    parser.add_argument("--seconds", type=float, default=10, help="load time of each step")
    parser.add_argument("--drain", type=float, default=60, help="how long a step's deliveries may take")
    parser.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--p99-ms", type=float, default=2000.0)
    parser.add_argument(
        "--max-workers", type=int, help="LIANHU_MAX_WORKERS of every service (default: the Procfile's, 10)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the var dir (logs)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    env = {"LIANHU_MAX_WORKERS": str(args.max_workers)} if args.max_workers else {}
    with Stack(args.engine, speech=False, database_link=False, keep=args.keep, env=env) as stack:
        print(f"# platform up in {time.monotonic() - started:.0f}s ({args.engine})", flush=True)
        token = sign_in(stack.platform, liaison_workers(stack.platform, 1)[0])
        baseline = ladder(
            lambda rate: baseline_step(stack.broker.amqp_uri, rate, args), args.baseline_rates, "baseline"
        )
        # The first requests pay for imports and caches: a short step that is not reported.
        asyncio.run(pipeline_step(stack, token, 10, argparse.Namespace(**{**vars(args), "seconds": 2})))
        pipeline = ladder(
            lambda rate: asyncio.run(pipeline_step(stack, token, rate, args)), args.rates, "pipeline"
        )
        exits = dict(stack.supervisor.exits)
    top, floor = best(pipeline), best(baseline)
    summary = {
        "sustained_rps": top["rate"] if top else 0,
        "p99_e2e_ms": top["p99_e2e_ms"] if top else None,
        "baseline_rps": floor["rate"] if floor else 0,
        "ratio": round(top["rate"] / floor["rate"], 3) if top and floor else None,
        "engine": args.engine,
        "max_workers": args.max_workers or 10,
        "goal_met": bool(top and top["rate"] >= 500 and top["p99_e2e_ms"] < 2000),
        "unplanned_exits": exits,
        "pipeline_steps": pipeline,
        "baseline_steps": baseline,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

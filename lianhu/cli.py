"""``lianhu``: the operator's command line (migrate, seed, topology, status, health, dead letters,
redrive, and the services' own: ``lianhu rules``)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import amqp.exceptions
import pika
from kombu import Connection
from pika.exceptions import AMQPError
from sqlalchemy import MetaData, inspect

from lianhu import deadletters
from lianhu.bus import outbox_backlog, outbox_table
from lianhu.config import KitSettings, kit_settings
from lianhu.db import autogenerate_revision, make_engine, make_read_session_factory, migrate
from lianhu.events import utcnow
from lianhu.plugins import discover
from lianhu.topology import SUBSCRIPTIONS, declare

# The alert rule's line (deploy/prometheus/rules): an outbox row older than this is stuck.
OUTBOX_LAG_SECONDS = 60


def _broker_connection(settings: KitSettings, timeout: float = 3.0) -> pika.BlockingConnection:
    params = pika.URLParameters(settings.amqp_uri)
    params.socket_timeout = timeout
    params.connection_attempts = 1
    return pika.BlockingConnection(params)


def cmd_migrate(args, settings: KitSettings) -> int:
    for plugin in discover():
        if plugin.migrations_dir is None or (args.services and plugin.name not in args.services):
            continue
        migrate(plugin.migrations_dir, settings.database_url(plugin.name))
        print(f"migrated {plugin.name}")
    return 0


def cmd_revision(args, settings: KitSettings) -> int:
    plugin = next((p for p in discover() if p.name == args.service and p.migrations_dir), None)
    if plugin is None:
        print(f"no service {args.service} with migrations", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        autogenerate_revision(plugin.migrations_dir, args.message, Path(scratch))
    return 0


def cmd_seed(args, settings: KitSettings) -> int:
    for plugin in discover():
        if plugin.seed is not None:
            print(f"{plugin.name}: {plugin.seed(settings, args.demo)}")
    return 0


def cmd_topology(args, settings: KitSettings) -> int:
    declare(settings)
    print("exchanges and queues declared")
    return 0


def cmd_dead_letters(args, settings: KitSettings) -> int:
    for queue, count in deadletters.counts(settings).items():
        print(f"{queue}\t{count}")
    return 0


def outbox_status(settings: KitSettings) -> list[tuple[str, int, float]]:
    """(service, unsent rows, age of the oldest in seconds) for every service with an outbox."""
    found = []
    for plugin in discover():
        if plugin.migrations_dir is None:
            continue
        engine = make_engine(settings.database_url(plugin.name))
        try:
            if not inspect(engine).has_table("outbox"):
                continue
            with make_read_session_factory(engine)() as session:
                count, oldest = outbox_backlog(session, outbox_table(MetaData()))
        finally:
            engine.dispose()
        found.append((plugin.name, count, (utcnow() - oldest).total_seconds() if oldest else 0.0))
    return found


def cmd_status(args, settings: KitSettings) -> int:
    """Work queues as the broker sees them, then each outbox; 1 when something waits too long."""
    try:
        with Connection(settings.amqp_uri, connect_timeout=3) as connection:
            queues = deadletters.depths(connection.default_channel)
    except (amqp.exceptions.AMQPError, OSError) as error:
        print(
            f"cannot read the work queues ({error}): is RabbitMQ up, `lianhu topology` run?", file=sys.stderr
        )
        return 1
    print("queue\tready\tconsumers\tdead letters")
    for depth in queues:
        print(f"{depth.sub.queue}\t{depth.ready}\t{depth.consumers}\t{depth.dead}")
    outboxes = outbox_status(settings)
    print("\noutbox\tunsent\toldest (s)")
    for service, count, age in outboxes:
        print(f"{service}\t{count}\t{age:.0f}")
    # The same lines the alert rules draw: dead letters present, a queue nobody reads, outbox lag.
    trouble = [f"{d.sub.dead_letter_queue} holds {d.dead}" for d in queues if d.dead]
    trouble += [f"nobody reads {d.sub.queue}" for d in queues if d.consumers == 0]
    trouble += [f"{s} outbox lags {age:.0f} s" for s, _, age in outboxes if age > OUTBOX_LAG_SECONDS]
    for line in trouble:
        print(f"! {line}", file=sys.stderr)
    return 1 if trouble else 0


def cmd_redrive(args, settings: KitSettings) -> int:
    chosen = [sub for sub in SUBSCRIPTIONS if args.queue in ("all", sub.queue, sub.dead_letter_queue)]
    if not chosen:
        print(
            f"no work queue {args.queue}; one of: {', '.join(s.queue for s in SUBSCRIPTIONS)}",
            file=sys.stderr,
        )
        return 2
    for sub in chosen:
        print(f"{sub.queue}: {deadletters.redrive(settings, sub, args.limit)} dead letters sent back")
    return 0


def cmd_wait_broker(args, settings: KitSettings) -> int:
    deadline = time.monotonic() + args.seconds
    while True:
        try:
            _broker_connection(settings).close()
            return 0
        except (AMQPError, OSError) as error:
            if time.monotonic() > deadline:
                print(f"RabbitMQ at {settings.amqp_uri} does not answer: {error}", file=sys.stderr)
                return 1
            time.sleep(0.5)


def cmd_health(args, settings: KitSettings) -> int:
    from nameko.standalone.rpc import ServiceRpcProxy

    try:
        with ServiceRpcProxy(args.service, {"AMQP_URI": settings.amqp_uri}, timeout=args.timeout) as proxy:
            print(proxy.health())
        return 0
    except Exception as error:  # any failure means "not healthy" to the orchestrator
        print(f"{args.service} is not healthy: {error}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lianhu", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    migrate_parser = commands.add_parser("migrate", help="upgrade every service's database")
    migrate_parser.add_argument("services", nargs="*", help="only these services")
    migrate_parser.set_defaults(run=cmd_migrate)

    revision_parser = commands.add_parser("revision", help="autogenerate a migration (developers)")
    revision_parser.add_argument("service")
    revision_parser.add_argument("-m", "--message", required=True)
    revision_parser.set_defaults(run=cmd_revision)

    seed_parser = commands.add_parser("seed", help="seed empty databases")
    seed_parser.add_argument("--demo", action="store_true", help="build the demo county if empty")
    seed_parser.set_defaults(run=cmd_seed)

    commands.add_parser("topology", help="declare exchanges and queues").set_defaults(run=cmd_topology)

    commands.add_parser("status", help="work queues, dead letters and outboxes").set_defaults(run=cmd_status)

    commands.add_parser("dead-letters", help="count dead-lettered messages per queue").set_defaults(
        run=cmd_dead_letters
    )

    redrive_parser = commands.add_parser("redrive", help="send dead letters back to their work queue")
    redrive_parser.add_argument("queue", help="a work queue (e.g. routing.report_submitted) or 'all'")
    redrive_parser.add_argument("--limit", type=int, default=None, help="at most this many")
    redrive_parser.set_defaults(run=cmd_redrive)

    wait_parser = commands.add_parser("wait-broker", help="wait until RabbitMQ answers")
    wait_parser.add_argument("--seconds", type=float, default=30.0)
    wait_parser.set_defaults(run=cmd_wait_broker)

    health_parser = commands.add_parser("health", help="ping a nameko service over RPC")
    health_parser.add_argument("service")
    health_parser.add_argument("--timeout", type=float, default=5.0)
    health_parser.set_defaults(run=cmd_health)

    for plugin in discover():
        if plugin.commands is not None:
            plugin.commands(commands)

    args = parser.parse_args(argv)
    return args.run(args, kit_settings())


if __name__ == "__main__":
    sys.exit(main())

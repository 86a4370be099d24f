"""Faults a test or a soak injects into a running platform.

RabbitMQ is shared by everything on the machine, so a "broker restart" never touches the system
node: :class:`PrivateBroker` runs a RabbitMQ node of its own (own node name, port, data directory
and Erlang cookie) that can be killed with ``SIGKILL`` or stopped cleanly, and started again on the
same data, as a crash or a restart of the real one would be.

:class:`Supervisor` restarts a platform process that exits by itself, as the deployment does
(compose ``restart: unless-stopped``, Kubernetes), and counts every such exit: a fault may take down
more than the process it hit, and the figures must say so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from kombu import Connection

from tests.support.platform import Platform, free_port

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class PrivateBroker:
    """A RabbitMQ node of one test's (or one soak's) own, in ``base_dir``; ``guest`` on ``/``."""

    def __init__(self, base_dir: Path):
        if not RABBITMQ_SERVER.exists():
            raise RuntimeError(f"{RABBITMQ_SERVER} is missing: RabbitMQ is not installed here")
        self.base_dir = base_dir
        self.port = free_port()
        self.node = f"lianhu-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen | None = None
        base_dir.mkdir(parents=True, exist_ok=True)
        (base_dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (base_dir / "enabled_plugins").write_text("[].\n")
        # An empty env file: the system's (/etc/rabbitmq/rabbitmq-env.conf) names the shared node.
        (base_dir / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(base_dir),  # its own Erlang cookie
            "RABBITMQ_CONF_ENV_FILE": str(base_dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base_dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base_dir / "enabled_plugins"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base_dir / "log"),
            "RABBITMQ_PID_FILE": str(base_dir / "broker.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90) -> None:
        """Start the node on its data directory and wait until it takes AMQP connections."""
        log = open(self.base_dir / "broker.out", "ab")  # noqa: SIM115 - the process owns it
        self.process = subprocess.Popen(
            [str(RABBITMQ_SERVER)],
            env=self.env,
            cwd=self.base_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"private RabbitMQ exited with {self.process.returncode}:\n{self.tail()}")
            if port_open(self.port):
                with (
                    contextlib.suppress(Exception),
                    Connection(self.amqp_uri, connect_timeout=2) as connection,
                ):
                    connection.connect()
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"private RabbitMQ not up in {timeout}s:\n{self.tail()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """``kill -9`` of the whole node: no clean shutdown, as in a crash."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as ``systemctl restart`` does first."""
        self._signal(signal.SIGTERM)

    def restart(self, crash: bool = True) -> None:
        self.kill() if crash else self.stop()
        self.start()

    def _signal(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # The port is closed once the listener is gone; a restart must not find the old node.
        deadline = time.monotonic() + 30
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def tail(self) -> str:
        out = self.base_dir / "broker.out"
        return out.read_text(errors="replace")[-3000:] if out.exists() else ""


class Supervisor:
    """Restarts any process of ``platform`` that exits unbidden; ``exits`` counts them by name.

    Deliberate kills go through :meth:`kill`, which restarts the process too, under the same lock.
    """

    def __init__(self, platform: Platform, envs: dict[str, dict[str, str]] | None = None, every: float = 0.5):
        self.platform = platform
        self.envs = envs or {}
        self.every = every
        self.exits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """``kill -9`` (or ``sig``) of one process, restarted at once."""
        with self._lock:
            self.platform.stop(name, sig)
            self.platform.start(name, env=self.envs.get(name))

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                for name, process in list(self.platform.processes.items()):
                    if process.poll() is not None:
                        self.exits[name] += 1
                        self.platform.processes.pop(name)
                        self.platform.start(name, env=self.envs.get(name))

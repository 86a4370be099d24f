"""All services as processes, started from the Procfile's own command lines, as ``make run`` does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Platform:
    env: dict[str, str]
    var_dir: Path
    base_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def lianhu(self, *args: str) -> str:
        result = subprocess.run(
            [str(BIN / "lianhu"), *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"lianhu {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prepare_demo_county(self) -> None:
        """Migrate every service, seed the demo county and declare the broker's topology."""
        self.lianhu("migrate")
        self.lianhu("seed", "--demo")
        self.lianhu("topology")

    def start(self, name: str, env: dict[str, str] | None = None) -> None:
        log = open(self.var_dir / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        self.processes[name] = subprocess.Popen(
            ["bash", "-c", f"exec {procfile()[name]}"],
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in self.var_dir.glob("*.log")
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for name in self.processes:
            if name == "intake":
                continue
            while subprocess.run(
                [str(BIN / "lianhu"), "health", name, "--timeout", "2"], env=self.env, capture_output=True
            ).returncode:
                self._check_alive(deadline)
        while True:
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            self._check_alive(deadline)
            time.sleep(0.2)

    def _check_alive(self, deadline: float) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}\n{self.logs()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"platform not ready in time\n{self.logs()}")

    def database_url(self, service: str) -> str:
        return (
            self.env.get(f"LIANHU_{service.upper()}_DATABASE_URL") or f"sqlite:///{self.var_dir / service}.db"
        )

    def query(self, service: str, sql: str, **params) -> list[tuple]:
        return query(self.database_url(service), sql, **params)

    def accounts(self) -> list[dict]:
        return json.loads((self.var_dir / "demo-accounts.json").read_text())


def platform_env(var_dir: Path, amqp_uri: str, database_urls: dict[str, str], port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LIANHU_")}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        LIANHU_VAR_DIR=str(var_dir),
        LIANHU_AMQP_URI=amqp_uri,
        LIANHU_HTTP_PORT=str(port),
        LIANHU_SECRET_KEY="e2e-" + os.urandom(16).hex(),
        LIANHU_RPC_TIMEOUT_SECONDS="10",
        # The suites drive many reports and sign-ins from one address and account in seconds; the
        # limits themselves are tested against the gateway (tests/unit/test_gateway.py).
        LIANHU_INTAKE_RATE_PER_ACCOUNT="",
        LIANHU_INTAKE_RATE_PER_ADDRESS="",
        LIANHU_LOGIN_RATE_PER_ADDRESS="",
        PYTHONWARNINGS="ignore::DeprecationWarning",
    )
    for service, url in database_urls.items():
        env[f"LIANHU_{service.upper()}_DATABASE_URL"] = url
    return env


def query(url: str, sql: str, **params) -> list[tuple]:
    """Read a service's database directly: tests derive expectations from the data, not the code."""
    from sqlalchemy import text

    from lianhu.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()

"""Real server processes for end-to-end tests: the demo MCP server and a gateway under granian.

The gateway process cannot see the test run's own database (an in-memory SQLite database or a
PostgreSQL test transaction), so it gets one of its own in the same shape as the test run: a
SQLite file, or a fresh PostgreSQL database when DATABASE_URL points at PostgreSQL. With
REDIS_URL it shares Redis under a key prefix of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import urllib3

PROJECT_DIR = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = STARTUP_TIMEOUT_SECONDS
) -> None:
    http = urllib3.PoolManager(retries=False, timeout=1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with status {process.returncode}")
        try:
            http.request("GET", url)
            return
        except urllib3.exceptions.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def start_demo_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "demo.mcp_server", "--port", str(port)], cwd=PROJECT_DIR)
    wait_until_answering(f"http://127.0.0.1:{port}/mcp", process)
    return process


class GatewayDatabase:
    """A database of the gateway process's own, in the shape the test run uses."""

    def __init__(self, workdir: Path) -> None:
        base = os.environ.get("DATABASE_URL", "")
        self.postgres_admin_url = base if base.startswith("postgres") else ""
        if self.postgres_admin_url:
            self.name = f"gw_e2e_{uuid.uuid4().hex[:10]}"
            self.url = urlunsplit(urlsplit(base)._replace(path="/" + self.name))
        else:
            self.name = str(workdir / "gateway.sqlite3")
            self.url = f"sqlite:///{self.name}"

    def create(self) -> None:
        if self.postgres_admin_url:
            with psycopg.connect(self.postgres_admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        if self.postgres_admin_url:
            with psycopg.connect(self.postgres_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class LiveGateway:
    """A gateway server process (granian, via ``manage.py serve``) and how to reach it.

    ``sibling`` makes a second process of the same gateway: same database, same state store
    (pass ``redis_url``, since in-process state cannot be shared), so both behave as one.
    """

    workdir: Path
    demo_port: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    sibling: LiveGateway | None = None
    redis_url: str | None = None

    def __post_init__(self) -> None:
        self.database = self.sibling.database if self.sibling else GatewayDatabase(self.workdir)
        self.log_path = self.workdir / f"gateway-{self.port}.log"
        prefix = self.sibling.env["GATEWAY_STATE_PREFIX"] if self.sibling else f"gwe2e:{uuid.uuid4().hex[:8]}:"
        self.env = {
            **os.environ,
            **({"REDIS_URL": self.redis_url} if self.redis_url else {}),
            "DATABASE_URL": self.database.url,
            "GATEWAY_DATA_DIR": str(self.workdir),
            "GATEWAY_STATE_PREFIX": prefix,
            "GATEWAY_DEMO_PORT": str(self.demo_port),
            "GATEWAY_DEMO_UPSTREAM": f"http://127.0.0.1:{self.demo_port}/mcp",
            "GATEWAY_CONFIG_POLL_INTERVAL": "0.2",
            # Every test request comes from 127.0.0.1; rate limits have tests of their own.
            "GATEWAY_DEFAULT_IP_RATE_LIMIT": "0",
            "GATEWAY_STREAM_KEEPALIVE_SECONDS": "0.5",
            "PORT": str(self.port),
            # Siblings are one gateway: one public URL, so one token issuer.
            "GATEWAY_PUBLIC_URL": self.sibling.url if self.sibling else f"http://127.0.0.1:{self.port}",
            "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a management command as a separate process against the gateway's database."""
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=self.env, capture_output=True, text=True, check=True
        )

    def start(self) -> LiveGateway:
        if self.sibling is None:
            self.database.create()
            self.manage("migrate", "--noinput", "--verbosity", "0")
            self.manage("seed_demo")
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--no-demo", "--port", str(self.port), "--threads", "32"],
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until_answering(f"{self.url}/healthz", self.process)
        return self

    def access_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.sibling is None:
            self.database.drop()

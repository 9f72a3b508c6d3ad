"""Member MCP servers as real processes (tests/federation/member_server.py), started, stopped,
restarted on the same port, changed and asked what they saw."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from tests.live_servers import PROJECT_DIR, free_port, wait_until_answering

HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=10.0))


@dataclass
class MemberProcess:
    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    descriptions: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def log(self) -> Path:
        """Every execution of the bump tool, across restarts: one call id per line."""
        return self.workdir / f"{self.name}-{self.port}.executions"

    def start(self) -> MemberProcess:
        command = [sys.executable, "-m", "tests.federation.member_server", "--name", self.name, "--port", str(self.port)]
        command += ["--log", str(self.log)]
        for tool, text in self.descriptions.items():
            command += ["--describe", f"{tool}={text}"]
        self.process = subprocess.Popen(command, cwd=PROJECT_DIR)
        wait_until_answering(f"http://127.0.0.1:{self.port}/calls", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, **descriptions: str) -> None:
        """A new process on the same port: every session it had is gone."""
        self.stop()
        self.descriptions.update(descriptions)
        self.start()

    def control(self, **change: Any) -> None:
        """Change its tools live (``describe={...}``, ``add=[...]``); it announces list_changed."""
        response = HTTP.request("POST", f"http://127.0.0.1:{self.port}/control", body=json.dumps(change).encode())
        assert response.status == 200

    def calls(self) -> dict[str, Any]:
        return json.loads(HTTP.request("GET", f"http://127.0.0.1:{self.port}/calls").data)

    def executions_logged(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

"""python manage.py serve: run the gateway under granian, its background jobs, and the demo server.

granian in WSGI mode with many blocking threads: every open SSE stream holds one thread for
its whole life, so the thread count (not the core count) bounds concurrent streams. One
worker process with in-process state (embedded default); several workers need REDIS_URL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


def granian_command(host: str, port: int, workers: int, threads: int) -> list[str]:
    granian = shutil.which("granian") or str(Path(sys.executable).with_name("granian"))
    static = ["--static-path-route", "/" + settings.STATIC_URL.strip("/"), "--static-path-mount", str(settings.STATIC_ROOT)]
    return [
        granian,
        "--interface", "wsgi",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
        "--blocking-threads", str(threads),
        "--log-level", "warning",
        # Admin assets, once collectstatic has run (make run does), served by granian itself.
        *(static if Path(settings.STATIC_ROOT).is_dir() else []),
        "gateway_project.wsgi:application",
    ]  # fmt: skip


class Command(BaseCommand):
    help = "Run the gateway (granian, WSGI) and, unless --no-demo, the bundled demo MCP server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--workers", type=int, default=settings.GATEWAY_WORKERS)
        parser.add_argument("--threads", type=int, default=settings.GATEWAY_THREADS)
        parser.add_argument("--no-demo", action="store_true", help="Do not start the demo MCP server.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] > 1 and not settings.REDIS_URL:
            raise CommandError("Several workers need REDIS_URL: in-process state is per process.")
        children: list[subprocess.Popen[bytes]] = []
        if not options["no_demo"]:
            children.append(
                subprocess.Popen([sys.executable, "-m", "demo.mcp_server", "--port", str(settings.GATEWAY_DEMO_PORT)])
            )
        gateway_env = dict(os.environ)
        if settings.REDIS_URL:
            # Shared state: the background jobs run in their own process, beside the gateway.
            children.append(subprocess.Popen([sys.executable, "manage.py", "gateway_worker"], cwd=settings.BASE_DIR))
        else:
            # In-process state: only the gateway process itself can see the jobs' verdicts.
            gateway_env["GATEWAY_WORKER_IN_PROCESS"] = "true"
        command = granian_command(options["host"], options["port"], options["workers"], options["threads"])
        children.append(subprocess.Popen(command, env=gateway_env))
        base = f"http://{options['host']}:{options['port']}"
        self.stdout.write(
            f"\nMCP gateway running at {base}\n"
            f"  demo MCP server:  {base}/mcp/demo\n"
            f"  admin:            {base}/admin/\n"
            f"  health:           {base}/healthz  {base}/readyz\n"
            f"  state store:      {'redis' if settings.REDIS_URL else 'in-process memory'}; "
            f"background jobs: {'gateway_worker process' if settings.REDIS_URL else 'in the gateway process'}; "
            f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}\n"
            "Press Ctrl+C to stop.\n"
        )
        self._wait(children)

    def _wait(self, children: list[subprocess.Popen[bytes]]) -> None:
        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            raise CommandError("A server process exited; stopping the others.")
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()

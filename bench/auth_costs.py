"""Cost of authentication: the same tools/call load through one gateway, anonymous, with an
API key, and with a gateway JWT.

    .venv/bin/python bench/auth_costs.py                 (--help for durations, connections, ...)

What it does, on this machine, on free ports, in a fresh temporary folder (helpers from harness.py):
the bundled demo MCP server and one gateway in the embedded shape, ``/mcp/demo`` routed to the
demo server, and the modern-era ``tools/call add`` of run.py sent by ``wrk``:

1. ``anonymous``: the route open to anonymous callers, no credential sent;
2. ``api_key``: the route closed, ``Authorization: Bearer mgw_…`` (hash lookup in the in-process
   key cache, usage counted in the state store);
3. ``jwt``: the route closed, ``Authorization: Bearer <access token>`` from
   ``POST /api/v1/auth/token/`` (HS256 verification, the session's sliding expiry touched in the
   state store, the user read from the in-process directory).

Tool permissions are off on the route in all three, so the difference is authentication alone.
Each configuration is checked before it is measured (a call without a credential is refused
with 401 on the closed route; the call with the credential answers a JSON-RPC result), and the
configurations are measured in rounds (``--repeat``), the median run by req/s reported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: its folder is on sys.path
    BenchRequest,
    LoadResult,
    PROJECT_DIR,
    REQUESTS,
    Servers,
    WrkGenerator,
    add_measurement_arguments,
    fmt,
    log,
    machine_info,
    measure,
    median_run,
    run_benchmark,
    verify,
)

ADD = REQUESTS["add"]
CONFIGS = ("anonymous", "api_key", "jwt")
USERNAME, PASSWORD = "bench", "a long bench password 0123"


class AuthServers(Servers):
    """harness.py's demo server and gateway, with a user and an API key to authenticate as."""

    def shell(self, code: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=PROJECT_DIR, env=self.gateway_env(), check=True, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout.strip()

    def open_route(self, is_open: bool) -> None:
        self.shell(
            "from routing.models import Route\n"
            "route = Route.objects.get(name='demo')\n"
            f"route.allow_anonymous = {is_open!r}\n"
            "route.tool_permissions = False\n"
            "route.save()\n"
        )

    def create_credentials(self) -> str:
        """A user for the token endpoint and an API key (printed once, by the shell)."""
        return self.shell(
            "from django.contrib.auth.models import User\n"
            "from security.api_keys import issue_api_key\n"
            f"User.objects.filter(username={USERNAME!r}).delete()\n"
            f"User.objects.create_user({USERNAME!r}, password={PASSWORD!r})\n"
            "print(issue_api_key(name='bench')[1])\n"
        ).splitlines()[-1]


def login(servers: AuthServers) -> str:
    answer = urllib3.request(
        "POST",
        f"http://127.0.0.1:{servers.gateway_port}/api/v1/auth/token/",
        body=json.dumps({"username": USERNAME, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    if answer.status != 200:
        raise RuntimeError(f"login failed: {answer.status} {answer.data[:200]!r}")
    return str(json.loads(answer.data)["access"])


def with_bearer(token: str) -> BenchRequest:
    return replace(ADD, headers={**ADD.headers, "Authorization": f"Bearer {token}"})


def check_closed(servers: AuthServers) -> None:
    refused = urllib3.request("POST", servers.gateway_url, body=ADD.body, headers=ADD.headers, retries=False)
    if refused.status != 401:
        raise RuntimeError(f"the closed route answered {refused.status} without a credential")


def run(args: argparse.Namespace, servers: AuthServers, workdir: Path) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    generator = WrkGenerator(wrk, args.wrk_threads, workdir)
    results: dict[str, Any] = {
        "machine": machine_info(generator),
        "settings": {k: getattr(args, k) for k in ("duration", "warmup", "repeat", "connections", "gateway_threads")},
        "configs": [],
    }
    servers.start_demo()
    servers.prepare_gateway_database()
    api_key = servers.create_credentials()
    servers.start_gateway(args.gateway_threads)
    runs: dict[str, list[LoadResult]] = {key: [] for key in CONFIGS}
    for round_index in range(args.repeat):
        for key in CONFIGS:
            servers.open_route(key == "anonymous")
            if key == "anonymous":
                request = ADD
            else:
                check_closed_eventually(servers)
                request = with_bearer(api_key if key == "api_key" else login(servers))
            verify_eventually(servers.gateway_url, request)
            log(f"round {round_index + 1}/{args.repeat}: {key}")
            result = measure(generator, servers, servers.gateway_url, request, args, args.connections)
            runs[key].append(result)
            log(f"  {result.rps:.0f} req/s, p50 {fmt(result.p50_ms)} ms, p99 {fmt(result.p99_ms)} ms, errors {result.error_total}")
    for key in CONFIGS:
        figures = median_run(runs[key])
        figures["gateway_cpu_ms_per_req_runs"] = [r.to_dict()["cpu_ms_per_ok_request"].get("gateway") for r in runs[key]]
        results["configs"].append({"key": key, "result": figures})
    return results


def check_closed_eventually(servers: AuthServers, attempts: int = 40) -> None:
    """The route change reaches the gateway within its config poll (half a second)."""
    for _ in range(attempts):
        try:
            check_closed(servers)
            return
        except RuntimeError:
            time.sleep(0.25)
    check_closed(servers)


def verify_eventually(url: str, request: BenchRequest, attempts: int = 40) -> None:
    for _ in range(attempts):
        try:
            verify(url, request)
            return
        except Exception:
            time.sleep(0.25)
    verify(url, request)


def report(results: dict[str, Any]) -> None:
    rows = {row["key"]: row["result"] for row in results["configs"]}
    base = rows["anonymous"]
    base_cpu = sorted(v for v in base["gateway_cpu_ms_per_req_runs"] if v is not None)
    base_cpu_median = base_cpu[len(base_cpu) // 2] if base_cpu else None
    print("| configuration | req/s | p50 ms | p99 ms | errors | gateway CPU ms/req | Δ CPU ms/req vs anonymous |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, r in rows.items():
        cpus = sorted(v for v in r["gateway_cpu_ms_per_req_runs"] if v is not None)
        cpu = cpus[len(cpus) // 2] if cpus else None
        delta = f"{cpu - base_cpu_median:+.3f}" if cpu is not None and base_cpu_median is not None and key != "anonymous" else ""
        print(f"| {key} | {r['rps']:.0f} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {r['error_total']} | {fmt(cpu, 3)} | {delta} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Cost of authentication (none, API key, JWT) under one tools/call load.")
    add_measurement_arguments(parser)
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    parser.add_argument("--gateway-threads", type=int, default=256, help="gateway threads (default 256)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(parse_args(argv), "gateway-auth-bench-", AuthServers, run, report)


if __name__ == "__main__":
    sys.exit(main())

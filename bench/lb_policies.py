"""Load-balancing policies through the gateway: one service with 3 targets, per policy.

    .venv/bin/python bench/lb_policies.py            (--help for durations, connections, ...)

What it does, on this machine, on free ports, in a fresh temporary folder (helpers from harness.py):

1. starts three test upstreams (``python -m tests.upstream_server PORT``, whose ``/echo``
   answers any request with a small JSON document) and a gateway in the embedded shape with
   one ``http`` route per policy, each with the same three upstreams as targets
   (``weighted_round_robin`` with weights 1, 1, 2) and ``GATEWAY_DEFAULT_IP_RATE_LIMIT=0``;
2. all targets up: for each policy, a warm-up, then a measured ``wrk`` run of GET requests,
   reporting req/s, p50/p99, errors, CPU per request and how the requests spread over the
   targets (from the gateway's access-log lines ``route=... target=...``);
3. failover: for each policy asked for, a fresh gateway (fresh in-process state), a warm-up
   with all three targets up, then the third upstream is killed and the measured run starts
   at once; reports req/s, p99, errors, and how many attempts the dead target still got
   (``attempts - 1`` summed over the access-log lines: a connect error is retried on another
   target, and a request never tries the same target twice while others remain) and when the
   last of them happened.

Why the test upstream rather than three ``demo.mcp_server``: on a 2-core machine the demo
server (uvicorn + MCP SDK) costs about as much CPU per request as the gateway itself
(docs/performance.md), so three of them would take a large share of the two cores away from
the gateway; ``/echo`` is far cheaper (the script prints the upstreams' CPU per request).

Every process it starts is stopped when it ends, also on Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: its folder is on sys.path
    CLOCK_TICKS,
    PROJECT_DIR,
    WRK_SCRIPT,
    BenchRequest,
    Interrupted,
    LoadResult,
    ManagedProcess,
    Servers,
    WrkGenerator,
    fmt,
    free_port,
    log,
    run_in_workdir,
    system_ticks,
    wait_until_answering,
)

POLICIES = ("round_robin", "weighted_round_robin", "least_connections", "response_time", "health_based")
SHORT = {
    "round_robin": "rr",
    "weighted_round_robin": "wrr",
    "least_connections": "lc",
    "response_time": "rt",
    "health_based": "hb",
}
WEIGHTS = (1, 1, 2)
GET_REQUEST = BenchRequest(key="get", title="GET (http route)", body="", headers={"User-Agent": "mcp-gateway-bench"})
ACCESS_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) .*route=(?P<route>\S+) target=(?P<target>\S+) "
    r"rpc=\S+ status=(?P<status>\S+) duration_ms=\S+ bytes=\d+ attempts=(?P<attempts>\d+) error=(?P<error>\S+)"
)


class GetWrkGenerator(WrkGenerator):
    """harness.py's wrk generator with a GET script: an answer counts as good when it is the echo."""

    def script_for(self, request: BenchRequest) -> Path:
        script = WRK_SCRIPT % {"body": "", "headers": 'wrk.headers["User-Agent"] = "mcp-gateway-bench"'}
        for old, new in (('wrk.method = "POST"', 'wrk.method = "GET"'), ("'\"result\"'", "'\"method\"'")):
            if old not in script:
                raise RuntimeError(f"harness.py's wrk script changed: {old!r} not found")
            script = script.replace(old, new)
        path = self.workdir / "wrk-get.lua"
        path.write_text(script)
        return path


class LbServers(Servers):
    """Three test upstreams and a gateway with one 3-target route per policy."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.upstream_ports = [free_port() for _ in range(3)]
        self.upstreams: list[ManagedProcess | None] = [None, None, None]

    def target_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.upstream_ports[index]}/echo"

    def route_url(self, policy: str) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/lb/{SHORT[policy]}"

    def gateway_env(self) -> dict[str, str]:
        env = super().gateway_env()
        env["GATEWAY_DEFAULT_IP_RATE_LIMIT"] = "0"  # the limiter is off: it never refuses the benchmark
        return env

    def start_upstream(self, index: int) -> None:
        port = self.upstream_ports[index]
        process = ManagedProcess(
            f"upstream {index + 1}",
            [sys.executable, "-m", "tests.upstream_server", str(port)],
            dict(os.environ),
            self.workdir / f"upstream-{index + 1}.log",
        )
        self.upstreams[index] = process
        wait_until_answering(self.target_url(index), process)

    def stop_upstream(self, index: int) -> None:
        process = self.upstreams[index]
        if process is not None:
            process.stop()
            self.upstreams[index] = None

    def prepare_gateway_database(self) -> None:
        env = self.gateway_env()
        commands = [["migrate", "--noinput", "--verbosity", "0"]]
        for policy in POLICIES:
            name = SHORT[policy]
            urls = [self.target_url(i) for i in range(3)]
            commands.append(["add_route", f"/lb/{name}", *urls, "--name", name, "--kind", "http", "--lb", policy])
        # Active health checks probe /health (the test upstream answers 200 on any path); weights 1, 1, 2.
        names = [SHORT[p] for p in POLICIES]
        weights = [(self.target_url(i), w) for i, w in enumerate(WEIGHTS)]
        setup = (
            "from routing.models import Service, Target\n"
            f"Service.objects.filter(name__in={names!r}).update(health_check_path='/health')\n"
            f"for url, weight in {weights!r}:\n"
            "    Target.objects.filter(service__name='wrr', url=url).update(weight=weight)\n"
        )
        commands.append(["shell", "-c", setup])
        for args in commands:
            subprocess.run(
                [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=env, check=True, capture_output=True, text=True
            )

    def stop(self) -> None:
        super().stop()
        for index in range(3):
            self.stop_upstream(index)


def access_lines(log_path: Path, offset: int) -> list[re.Match[str]]:
    with log_path.open("rb") as log_file:
        log_file.seek(offset)
        text = log_file.read().decode(errors="replace")
    return [m for m in (ACCESS_LINE.match(line) for line in text.splitlines()) if m]


def log_time(stamp: str) -> float:
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000.0


def measure(
    servers: LbServers, generator: GetWrkGenerator, policy: str, args: argparse.Namespace, kill: int | None = None
) -> dict[str, Any]:
    url = servers.route_url(policy)
    if args.warmup > 0:
        generator.run(url, GET_REQUEST, args.connections, args.warmup, args.timeout)
    assert servers.gateway is not None
    time.sleep(0.3)  # let the warm-up's last access-log lines land before the offset is taken
    offset = servers.gateway.log_path.stat().st_size
    killed_at = None
    if kill is not None:
        servers.stop_upstream(kill)  # SIGTERM: the port refuses connections from now on
        killed_at = time.time()
    processes = {"gateway": servers.gateway, **{f"upstream {i + 1}": p for i, p in enumerate(servers.upstreams) if p}}
    ticks = {name: p.cpu_ticks() for name, p in processes.items()}
    busy_before = system_ticks()[0]
    result: LoadResult = generator.run(url, GET_REQUEST, args.connections, args.duration, args.timeout)
    busy_after = system_ticks()[0]
    cpu = {name: (p.cpu_ticks() - ticks[name]) / CLOCK_TICKS for name, p in processes.items()}
    time.sleep(0.3)
    lines = [m for m in access_lines(servers.gateway.log_path, offset) if m["route"] == SHORT[policy]]
    spread = {servers.target_url(i): 0 for i in range(3)}
    statuses: dict[str, int] = {}
    extra_attempts = 0
    last_retry = None
    for m in lines:
        spread[m["target"]] = spread.get(m["target"], 0) + 1
        statuses[m["status"]] = statuses.get(m["status"], 0) + 1
        if int(m["attempts"]) > 1:
            extra_attempts += int(m["attempts"]) - 1
            last_retry = log_time(m["time"])
    upstream_cpu = sum(v for k, v in cpu.items() if k.startswith("upstream"))
    other = max(0.0, (busy_after - busy_before) / CLOCK_TICKS - sum(cpu.values()) - result.client_cpu_s)
    figures = {
        "policy": policy,
        "rps": round(result.rps, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "errors": result.error_total,
        "errors_by_kind": {k: v for k, v in result.errors.items() if v},
        "logged": len(lines),
        "spread": [spread[servers.target_url(i)] for i in range(3)],
        "statuses": statuses,
        "retried_attempts": extra_attempts,
        "gateway_cpu_ms_per_req": round(cpu["gateway"] * 1000 / result.ok, 3) if result.ok else None,
        "upstreams_cpu_ms_per_req": round(upstream_cpu * 1000 / result.ok, 3) if result.ok else None,
        "other_cpu_s": round(other, 1),
    }
    if killed_at is not None:
        figures["last_retry_after_kill_s"] = round(last_retry - killed_at, 2) if last_retry else None
    return figures


def pct(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.0f}%)" if total else str(count)


def print_tables(healthy: list[dict[str, Any]], failover: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n### All 3 targets up ({args.connections} connections, {args.duration} s after {args.warmup} s warm-up)\n")
    print("| policy | req/s | p50 ms | p99 ms | errors | target 1 | target 2 | target 3 | gateway CPU ms/req | upstreams CPU ms/req | other work CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in healthy:
        total = sum(r["spread"])
        cells = " | ".join(pct(n, total) for n in r["spread"])
        print(
            f"| {r['policy']} | {r['rps']:.0f} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {r['errors']} | {cells} | "
            f"{r['gateway_cpu_ms_per_req']} | {r['upstreams_cpu_ms_per_req']} | {r['other_cpu_s']} |"
        )
    if failover:
        print("\n### Target 3 killed as the measured run starts\n")
        print("| policy | req/s | p50 ms | p99 ms | max ms | errors | non-200 logged | answered by 1 / 2 / 3 | attempts on the dead target | last one, s after the kill |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in failover:
            non_200 = sum(n for s, n in r["statuses"].items() if s != "200")
            print(
                f"| {r['policy']} | {r['rps']:.0f} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | "
                f"{r['errors']} {r['errors_by_kind'] or ''} | {non_200} | {' / '.join(map(str, r['spread']))} | "
                f"{r['retried_attempts']} | {r['last_retry_after_kill_s']} |"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the gateway's load-balancing policies over 3 targets.")
    parser.add_argument("--duration", type=int, default=5, help="measured seconds per run (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each run (default 1)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    parser.add_argument("--timeout", type=int, default=5, help="client timeout per request, seconds (default 5)")
    parser.add_argument("--gateway-threads", type=int, default=64, help="gateway threads (default 64)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="policies measured with all targets up")
    parser.add_argument(
        "--failover-policies", default=",".join(POLICIES), help="policies measured with a dead target ('' to skip)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) and print its path")
    args = parser.parse_args(argv)
    args.policy_list = [p for p in args.policies.split(",") if p]
    args.failover_list = [p for p in args.failover_policies.split(",") if p]
    unknown = [p for p in args.policy_list + args.failover_list if p not in POLICIES]
    if unknown:
        parser.error(f"unknown policies: {unknown}")
    return args


def run(args: argparse.Namespace, servers: LbServers, workdir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    generator = GetWrkGenerator(wrk, args.wrk_threads, workdir)
    log(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; starting 3 upstreams")
    for index in range(3):
        servers.start_upstream(index)
    servers.start_gateway(args.gateway_threads)
    healthy = []
    for policy in args.policy_list:
        log(f"{policy}, all targets up")
        healthy.append(measure(servers, generator, policy, args))
        r = healthy[-1]
        log(f"  {r['rps']:.0f} req/s, p50 {fmt(r['p50_ms'])} ms, p99 {fmt(r['p99_ms'])} ms, errors {r['errors']}, spread {r['spread']}")
    failover = []
    for policy in args.failover_list:
        if servers.upstreams[2] is None:
            servers.start_upstream(2)
        servers.start_gateway(args.gateway_threads)  # fresh in-process state: no ejection, breaker or average left
        log(f"{policy}, target 3 killed as the run starts")
        failover.append(measure(servers, generator, policy, args, kill=2))
        r = failover[-1]
        log(
            f"  {r['rps']:.0f} req/s, p99 {fmt(r['p99_ms'])} ms, errors {r['errors']}, spread {r['spread']}, "
            f"attempts on the dead target {r['retried_attempts']}, last {r['last_retry_after_kill_s']} s after the kill"
        )
    log(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return healthy, failover


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        healthy, failover = run_in_workdir(
            "gateway-lb-bench-", LbServers, lambda servers, workdir: run(args, servers, workdir), keep=args.keep
        )
    except Interrupted:
        return 130
    print_tables(healthy, failover, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost of the security stages: the same tools/call load through one gateway, stage by stage.

    .venv/bin/python bench/stage_costs.py --nice -10       (--help for durations, connections, ...)

What it does, on this machine, on free ports, in a fresh temporary folder (helpers from harness.py):
the bundled demo MCP server and one gateway in the embedded shape (SQLite + in-process state,
``/mcp/demo`` routed to the demo server), and the modern-era ``tools/call add`` of run.py sent
by ``wrk`` through the gateway, in these configurations (only configuration changes between them):

1. ``baseline``: ``GATEWAY_DEFAULT_IP_RATE_LIMIT=0`` (no rate-limit policy applies) and the
   route's ``injection_detection="off"``;
2. ``ratelimit``: the default per-IP sliding window on (``1000000/60``: never trips, but every
   request is counted), injection detection off;
3. ``ratelimit_route_bucket``: as 2, plus a ``RateLimitPolicy`` with scope "route", algorithm
   token bucket (1e6/s, burst 500000) on the demo route;
4. ``injection``: as 2 (the route policy deleted), ``injection_detection="block"`` (the default);
5. ``tool_schema``: as 4 after one ``tools/list`` through the gateway, from which it learns the
   add tool's inputSchema and validates every call against it.

The gateway is restarted where the environment changes (1 -> 2) and at the start of every
round (to forget the learned schema); route fields and policies are changed with
``manage.py shell -c`` (a save bumps the config version, the gateway's watcher picks it up
within a second). Before measuring, each configuration is checked: the call answers HTTP 200
with a JSON-RPC result, the ``RateLimit-Limit`` header shows which policy is counted, an
injection probe is refused (block) or let through (off), and a call with ``a="x"`` is refused
with 400 / -32602 only once the schema is known. The configurations are measured in rounds
(1..5, 1..5, ...; ``--repeat`` rounds), and the median run by req/s is reported per configuration.

Every process it starts is stopped when it ends, also on Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: its folder is on sys.path
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
    modern_request,
    run_benchmark,
    verify,
)

ROUTE_NAME = "demo"
RATE_LIMIT_ON = "1000000/60"
BUCKET_POLICY_NAME = "bench route bucket"
BUCKET_RATE = 1_000_000.0
BUCKET_BURST = 500_000  # below the per-IP window's remaining count, so its headers win: a visible check

ADD = REQUESTS["add"]
LIST = REQUESTS["list"]
INJECTION_PROBE = modern_request(
    "injection-probe", "tools/call add, SQL tautology", "tools/call", {"name": "add", "arguments": {"a": "1' OR '1'='1", "b": 3}}, "add"
)
BAD_CALL = modern_request("bad-call", "tools/call add, a=\"x\"", "tools/call", {"name": "add", "arguments": {"a": "x", "b": 3}}, "add")


@dataclass(frozen=True)
class Config:
    key: str
    title: str
    rate_limit: str  # GATEWAY_DEFAULT_IP_RATE_LIMIT
    injection: str  # Route.injection_detection
    route_bucket: bool
    schema: bool


CONFIGS = (
    Config("baseline", "baseline: no rate limiting, injection off", "0", "off", False, False),
    Config("ratelimit", "+ default per-IP sliding window", RATE_LIMIT_ON, "off", False, False),
    Config("ratelimit_route_bucket", "+ route-scoped token bucket as well", RATE_LIMIT_ON, "off", True, False),
    Config("injection", "per-IP window + injection detection (block)", RATE_LIMIT_ON, "block", False, False),
    Config("tool_schema", "per-IP window + injection + tool-schema validation", RATE_LIMIT_ON, "block", False, True),
)


class StageServers(Servers):
    """harness.py's demo server and gateway, with the default per-IP limit chosen per configuration."""

    rate_limit = "0"

    def gateway_env(self) -> dict[str, str]:
        env = super().gateway_env()
        env["GATEWAY_DEFAULT_IP_RATE_LIMIT"] = self.rate_limit
        return env

    def shell(self, code: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=PROJECT_DIR, env=self.gateway_env(), check=True, capture_output=True, text=True,
        )  # fmt: skip

    def set_route(self, injection: str, route_bucket: bool) -> None:
        """Save the route's injection mode (save(), not update(): the signal bumps the config
        version) and create or delete the route-scoped token-bucket policy."""
        self.shell(
            "from routing.models import Route\n"
            "from security.models import RateLimitPolicy\n"
            f"route = Route.objects.get(name={ROUTE_NAME!r})\n"
            "if route.injection_detection != " + repr(injection) + ":\n"
            f"    route.injection_detection = {injection!r}\n"
            "    route.save()\n"
            f"policy = RateLimitPolicy.objects.filter(name={BUCKET_POLICY_NAME!r}).first()\n"
            f"if {route_bucket!r} and policy is None:\n"
            f"    policy = RateLimitPolicy.objects.create(name={BUCKET_POLICY_NAME!r}, algorithm='token_bucket',\n"
            f"        scope='route', rate_per_second={BUCKET_RATE!r}, burst={BUCKET_BURST!r})\n"
            "    policy.routes.add(route)\n"
            f"elif not {route_bucket!r} and policy is not None:\n"
            "    policy.delete()\n"
        )


def post(url: str, request: Any) -> urllib3.BaseHTTPResponse:
    return urllib3.request("POST", url, body=request.body, headers=request.headers, retries=False, timeout=10)


def check_config(servers: StageServers, config: Config, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until the gateway behaves as ``config`` says (config changes land within a second)."""
    url = servers.gateway_url
    expected_limit = {"0": None, RATE_LIMIT_ON: RATE_LIMIT_ON.split("/")[0]}[config.rate_limit]
    if config.route_bucket:
        expected_limit = str(BUCKET_BURST)
    deadline = time.monotonic() + timeout
    problem = ""
    while time.monotonic() < deadline:
        verify(url, ADD)  # HTTP 200 with a JSON-RPC result, or raise
        answer = post(url, ADD)
        limit = answer.headers.get("RateLimit-Limit")
        probe = post(url, INJECTION_PROBE)
        refused_as_injection = probe.status == 400 and b"injection" in probe.data.lower()
        bad = post(url, BAD_CALL)
        bad_refused = bad.status == 400 and b"-32602" in bad.data and b"injection" not in bad.data.lower()
        problem = ""
        if limit != expected_limit:
            problem = f"RateLimit-Limit is {limit!r}, expected {expected_limit!r}"
        elif refused_as_injection != (config.injection == "block"):
            problem = f"injection probe answered {probe.status}: {probe.data[:160]!r}"
        elif bad_refused != config.schema:
            problem = f'call with a="x" answered {bad.status}: {bad.data[:160]!r}'
        if not problem:
            return {
                "ratelimit_limit_header": limit,
                "injection_probe_status": probe.status,
                "bad_call_status": bad.status,
                "bad_call_answer": bad.data[:200].decode(errors="replace"),
            }
        time.sleep(0.25)
    raise RuntimeError(f"{config.key}: the gateway does not behave as configured: {problem}")


def enter_config(servers: StageServers, config: Config, threads: int, restart: bool) -> dict[str, Any]:
    if restart or servers.rate_limit != config.rate_limit:
        servers.rate_limit = config.rate_limit
        servers.stop_gateway()
        servers.prepare_gateway_database()
        servers.set_route(config.injection, config.route_bucket)  # before the start: no wait for the watcher
        servers.start_gateway(threads)
    else:
        servers.set_route(config.injection, config.route_bucket)
    if config.schema:
        verify(servers.gateway_url, LIST)  # the response stage learns the tools' inputSchemas
    return check_config(servers, config)


def run(args: argparse.Namespace, servers: StageServers, workdir: Path) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    generator = WrkGenerator(wrk, args.wrk_threads, workdir)
    configs = [c for c in CONFIGS if c.key in args.config_keys]
    results: dict[str, Any] = {
        "machine": machine_info(generator),
        "settings": {
            "duration": args.duration,
            "warmup": args.warmup,
            "repeat": args.repeat,
            "connections": args.connections,
            "gateway_threads": args.gateway_threads,
            "wrk_threads": args.wrk_threads,
            "quiet_threshold": args.quiet_threshold,
            "command": " ".join(["bench/stage_costs.py", *sys.argv[1:]]),
        },
        "request": {"headers": ADD.headers, "body": ADD.body},
        "configs": [],
    }
    log(f"load average {' '.join(results['machine']['loadavg_before'])}; starting the demo MCP server")
    servers.start_demo()
    verify(servers.demo_url, ADD)
    runs: dict[str, list[LoadResult]] = {c.key: [] for c in configs}
    checks: dict[str, dict[str, Any]] = {}
    for round_index in range(args.repeat):
        for position, config in enumerate(configs):
            # A fresh gateway at each round's start: the schema learned in the last round is forgotten.
            checks[config.key] = enter_config(servers, config, args.gateway_threads, restart=position == 0)
            log(f"round {round_index + 1}/{args.repeat}: {config.title}")
            result = measure(generator, servers, servers.gateway_url, ADD, args, args.connections)
            runs[config.key].append(result)
            log(
                f"  {result.rps:.0f} req/s, p50 {fmt(result.p50_ms)} ms, p99 {fmt(result.p99_ms)} ms, errors "
                f"{result.error_total}, gateway CPU {result.to_dict()['cpu_ms_per_ok_request'].get('gateway')} ms/req, "
                f"other CPU {result.cpu_s.get('other', 0):.1f} s"
            )
    for config in configs:
        figures = median_run(runs[config.key])
        figures["gateway_cpu_ms_per_req_runs"] = [r.to_dict()["cpu_ms_per_ok_request"].get("gateway") for r in runs[config.key]]
        results["configs"].append(
            {
                "key": config.key,
                "title": config.title,
                "default_ip_rate_limit": config.rate_limit,
                "injection_detection": config.injection,
                "route_token_bucket": config.route_bucket,
                "tool_schema_learned": config.schema,
                "check": checks[config.key],
                "result": figures,
            }
        )
    results["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    return results


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def report(results: dict[str, Any]) -> None:
    info, settings = results["machine"], results["settings"]
    print(
        f"\n{info['cpu_cores']} cores ({info['cpu_model']}), Python {info['python']}, code {info['code']}, nice {info['nice']}; "
        f"load average before {' '.join(info['loadavg_before'])}, after {' '.join(info.get('loadavg_after', []))}.\n"
        f"tools/call add, {settings['connections']} connections, warm-up {settings['warmup']} s, measured "
        f"{settings['duration']} s, {settings['repeat']} rounds (median run by req/s; CPU ms/req: median of the runs).\n"
    )
    rows = results["configs"]
    base = rows[0]["result"] if rows and rows[0]["key"] == "baseline" else None
    base_cpu = median(base["gateway_cpu_ms_per_req_runs"]) if base else None
    print("| configuration | req/s | all runs req/s | p50 ms | p99 ms | errors | gateway CPU ms/req | all runs CPU ms/req | Δ req/s vs baseline | Δ CPU ms/req vs baseline |")
    print("|---|---:|---|---:|---:|---:|---:|---|---:|---:|")
    for row in rows:
        r = row["result"]
        cpu = median(r["gateway_cpu_ms_per_req_runs"])
        d_rps = f"{100 * (r['rps'] / base['rps'] - 1):+.1f}%" if base and base["rps"] and row["key"] != "baseline" else ""
        d_cpu = f"{cpu - base_cpu:+.3f}" if base_cpu is not None and cpu is not None and row["key"] != "baseline" else ""
        print(
            f"| {row['title']} | {r['rps']:.0f} | {' / '.join(f'{v:.0f}' for v in r['runs_rps'])} | {fmt(r['p50_ms'])} | "
            f"{fmt(r['p99_ms'])} | {r['error_total']} | {fmt(cpu, 3)} | "
            f"{' / '.join(fmt(v, 3) for v in r['gateway_cpu_ms_per_req_runs'])} | {d_rps} | {d_cpu} |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Cost of the gateway's security stages under one tools/call load.")
    add_measurement_arguments(parser)
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    parser.add_argument("--gateway-threads", type=int, default=256, help="gateway threads (default 256, the default)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--configs", default=",".join(c.key for c in CONFIGS), help="configurations to measure, in order")
    args = parser.parse_args(argv)
    args.config_keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    unknown = [k for k in args.config_keys if k not in {c.key for c in CONFIGS}]
    if unknown or not args.config_keys:
        parser.error(f"unknown or no configurations: {unknown}")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(parse_args(argv), "gateway-stage-bench-", StageServers, run, report)


if __name__ == "__main__":
    sys.exit(main())

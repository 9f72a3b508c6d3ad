"""Cost of virtual MCP servers: a tools/call through a virtual server against the same call
through a plain route, and tools/list latency for virtual servers of 2 and 10 members.

    .venv/bin/python bench/virtual_servers.py --nice -10      (--help for durations, eras, ...)

What it does, on this machine, on free ports, in a fresh temporary folder (helpers from harness.py):

1. starts 10 bundled demo MCP servers (``python -m demo.mcp_server``, official SDK on uvicorn;
   ``--members`` to change), and prepares one gateway in the embedded shape (SQLite, in-process
   state): ``/mcp/demo`` is routed to member 1 by harness.py (the plain route), and
   ``manage.py virtual_server apply`` creates two virtual servers, ``vs2`` at ``/mcp/v/vs2``
   (members 1 and 2, prefixes ``m1``, ``m2``) and ``vs10`` at ``/mcp/v/vs10`` (members 1..10,
   ``m1``..``m10``). Member 1 is the plain route's own service (``demo``): the call through the
   virtual server and the plain call reach the same upstream process over the same pool.
   All three routes are open to anonymous callers with ``tool_permissions`` off (the other
   stages as their defaults: injection detection ``block``, the default per-IP window that
   never trips); the virtual servers keep the default pinning policy (``block``) and are
   approved with ``manage.py virtual_server approve``, so no tool is held back;
2. starts the gateway (``manage.py serve --no-demo``, 1 worker, ``--gateway-threads``) and
   checks every benchmark request once: it must answer HTTP 200 with a JSON-RPC result (not an
   error, not ``isError``), and the virtual servers' ``tools/list`` must hold every member's
   tools (4 per member). Doing so also fetches the members' lists and lets the gateway learn
   the tools' input schemas on every route, so every route is measured in the same steady state;
3. measures, with ``wrk``, a warm-up (discarded) then a measured window per case, in rounds
   (``--repeat``; every case once per round, in order), reporting the run with the median
   req/s and, for CPU per request, the median of the runs:

   a. ``tools/call add`` through the plain route and ``tools/call m1_add`` through ``vs2`` at
      ``--connections`` connections, in the stateless 2026-07-28 era and in the 2025 session
      era (``--eras``; for the latter the script opens one session per route with
      ``initialize`` + ``notifications/initialized`` through the gateway, and every request
      carries it: the plain route's session lives in the demo server, the virtual server's in
      the gateway, which talks to its members over its own pooled sessions);
   b. ``tools/list`` through the plain route, ``vs2`` and ``vs10``, at 1 connection (latency)
      and at ``--connections`` connections (throughput), in the eras of ``--list-eras``
      (default: 2026-07-28 only).

Every request wrk sends carries a JSON-RPC id of its own (appended Lua ``request()``; run.py's
fixed ``"id": 1`` with ``--fixed-ids``): the SDK server files a session's answer streams by
request id, so concurrent requests sharing an id in one session (all of wrk's 2025-era requests,
and any clients' requests a virtual server passes into its shared member session with their ids
unchanged) leave all but one without an answer.

CPU per request comes from /proc: the gateway's process group, and "demo", member 1 (the only
member a call reaches). Members 2..10 fall under "other" (they are asked for their lists only by
the gateway's background refresh). Every process it starts is stopped when it ends, also on
Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
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
    BASE_HEADERS,
    BenchRequest,
    CLIENT_INFO,
    LEGACY_VERSION,
    LoadResult,
    ManagedProcess,
    PROJECT_DIR,
    REQUESTS,
    Servers,
    WrkGenerator,
    _compact,
    add_measurement_arguments,
    fmt,
    free_port,
    log,
    machine_info,
    measure,
    median_run,
    modern_request,
    run_benchmark,
    verify,
    wait_until_answering,
)

PLAIN_ROUTE = "demo"  # harness.py's route and service name
DEMO_TOOLS = 4  # echo, add, countdown, fail
ERAS = ("modern", "legacy")
ERA_TITLES = {"modern": "2026-07-28 (stateless)", "legacy": "2025-11-25 (session)"}


@dataclass(frozen=True)
class Target:
    key: str  # plain | vs2 | vs10
    title: str
    path: str
    members: int  # 0: the plain route
    call_name: str  # the add tool's name as this target exposes it


def targets_for(members: int) -> dict[str, Target]:
    return {
        "plain": Target("plain", "plain route /mcp/demo", "/mcp/demo", 0, "add"),
        "vs2": Target("vs2", "virtual server, 2 members", "/mcp/v/vs2", 2, "m1_add"),
        f"vs{members}": Target(f"vs{members}", f"virtual server, {members} members", f"/mcp/v/vs{members}", members, "m1_add"),
    }


@dataclass(frozen=True)
class LegacyRequest(BenchRequest):
    """A 2025-era request inside a session: the answer may be JSON or an event stream (the SDK
    server answers a session's POSTs with one ``message`` event)."""

    def check(self, status: int, body: bytes) -> str:
        if status == 200 and body.lstrip().startswith((b"event:", b"data:", b":")):
            data = [line[5:].strip() for line in body.splitlines() if line.startswith(b"data:")]
            answers = [d for d in data if b'"result"' in d or b'"error"' in d]
            if not answers:
                return f"no JSON-RPC answer in the event stream: {body[:200]!r}"
            body = answers[-1]
        return super().check(status, body)


def legacy_request(key: str, title: str, method: str, params: dict[str, Any], session_id: str) -> LegacyRequest:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    headers = {**BASE_HEADERS, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY_VERSION}
    return LegacyRequest(key=key, title=title, body=_compact(body), headers=headers)


def open_legacy_session(url: str) -> str:
    """initialize + notifications/initialized through the gateway; the session id."""
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
    }
    answer = http.request("POST", url, body=_compact(init), headers=BASE_HEADERS)
    session_id = answer.headers.get("mcp-session-id", "")
    if answer.status != 200 or not session_id:
        raise RuntimeError(f"initialize at {url} failed: {answer.status} {answer.data[:200]!r}")
    headers = {**BASE_HEADERS, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY_VERSION}
    notified = http.request("POST", url, body=_compact({"jsonrpc": "2.0", "method": "notifications/initialized"}), headers=headers)
    if notified.status not in (200, 202):
        raise RuntimeError(f"notifications/initialized at {url} answered {notified.status}: {notified.data[:200]!r}")
    return session_id


def call_request(target: Target, era: str, session_id: str = "") -> BenchRequest:
    name = target.call_name
    params = {"name": name, "arguments": {"a": 2, "b": 3}}
    key = f"call-{era}-{target.key}"
    title = f"tools/call {name} ({ERA_TITLES[era]}) via {target.title}"
    if era == "modern":
        return modern_request(key, title, "tools/call", params, name)
    return legacy_request(key, title, "tools/call", params, session_id)


def list_request(target: Target, era: str, session_id: str = "") -> BenchRequest:
    key = f"list-{era}-{target.key}"
    title = f"tools/list ({ERA_TITLES[era]}) via {target.title}"
    if era == "modern":
        return modern_request(key, title, "tools/list", {})
    return legacy_request(key, title, "tools/list", {}, session_id)


class VirtualServerServers(Servers):
    """harness.py's demo server (member 1) and gateway, plus members 2..N and the virtual servers."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.members: list[ManagedProcess] = []  # members 2..N (member 1 is self.demo)
        self.member_ports: list[int] = []  # members 1..N

    def member_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.member_ports[index - 1]}/mcp"

    def start_members(self, count: int) -> None:
        """Start every member at once (member 1 as harness.py's demo server), then wait for each."""
        self.member_ports = [free_port() for _ in range(count)]
        self.demo_port = self.member_ports[0]
        processes = []
        for index, port in enumerate(self.member_ports, start=1):
            process = ManagedProcess(
                f"member {index} (demo MCP server)",
                [sys.executable, "-m", "demo.mcp_server", "--port", str(port)],
                dict(os.environ),
                self.workdir / f"member-{index}.log",
            )
            if index == 1:
                self.demo = process
            else:
                self.members.append(process)
            processes.append(process)
        for index, process in enumerate(processes, start=1):
            wait_until_answering(self.member_url(index), process)

    def manage(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT_DIR, env=self.gateway_env(), input=stdin, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout.strip()

    def create_virtual_servers(self, sizes: list[int]) -> list[str]:
        """The plain route's access as the virtual servers'; a virtual server per size, approved."""
        self.manage(
            "shell", "-c",
            "from routing.models import Route\n"
            f"route = Route.objects.get(name={PLAIN_ROUTE!r})\n"
            "route.allow_anonymous = True\n"
            "route.tool_permissions = False\n"
            "route.save()\n",
        )  # fmt: skip
        said = []
        for size in sizes:
            members: list[dict[str, Any]] = [{"service": PLAIN_ROUTE, "prefix": "m1"}]
            members += [{"service": f"member{i}", "url": self.member_url(i), "prefix": f"m{i}"} for i in range(2, size + 1)]
            spec = {
                "name": f"vs{size}",
                "pinning_policy": "block",
                "route": {"allow_anonymous": True, "tool_permissions": False},
                "members": members,
            }
            said.append(self.manage("virtual_server", "apply", "-", stdin=json.dumps(spec)))
            said.append(self.manage("virtual_server", "approve", f"vs{size}"))
        return said

    def stop(self) -> None:
        super().stop()
        for process in self.members:
            process.stop()
        self.members = []


# Appended to harness.py's wrk script (same chunk, so it sees its ``threads``): every request
# gets a JSON-RPC id of its own, unique across wrk's threads.
UNIQUE_IDS_LUA = r"""
local id_head = [==[%(head)s]==]
local id_tail = [==[%(tail)s]==]
local thread_count = 0
function setup(thread)
  table.insert(threads, thread)
  thread_count = thread_count + 1
  thread:set("id_base", thread_count * 1000000000)
end
local counter = 0
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, id_head .. string.format("%%d", id_base + counter) .. id_tail)
end
"""
FIXED_ID = '"id":1,'


class UniqueIdWrk(WrkGenerator):
    """harness.py's wrk load, but with a JSON-RPC id per request instead of ``1`` throughout.

    Requests in one 2025 session must not share an id (the SDK server files its answer streams by
    id: concurrent requests with the same id leave all but one unanswered), and the virtual
    server passes a client's id on into the member session it shares between clients."""

    def script_for(self, request: BenchRequest) -> Path:
        path = super().script_for(request)
        head, found, tail = request.body.partition(FIXED_ID)
        if not found or FIXED_ID in tail:
            raise ValueError(f"the body has no single {FIXED_ID}: {request.body}")
        with path.open("a") as script:
            script.write(UNIQUE_IDS_LUA % {"head": head + '"id":', "tail": "," + tail})
        return path


def post(url: str, request: BenchRequest) -> urllib3.BaseHTTPResponse:
    return urllib3.request("POST", url, body=request.body, headers=request.headers, retries=False, timeout=30)


def verify_eventually(url: str, request: BenchRequest, attempts: int = 40) -> None:
    """The first requests build the catalog (the members' lists are fetched): allow some time."""
    for _ in range(attempts):
        try:
            verify(url, request)
            return
        except (RuntimeError, urllib3.exceptions.HTTPError):
            time.sleep(0.25)
    verify(url, request)


def listed_tools(url: str, request: BenchRequest) -> tuple[list[str], int]:
    """The tool names a tools/list answers (first page), and the answer's size in bytes."""
    answer = post(url, request)
    body = answer.data
    if body.lstrip().startswith((b"event:", b"data:", b":")):
        body = [line[5:].strip() for line in body.splitlines() if line.startswith(b"data:") and b'"result"' in line][-1]
    return [tool["name"] for tool in json.loads(body)["result"]["tools"]], len(answer.data)


@dataclass(frozen=True)
class Case:
    part: str  # call | list
    era: str
    target: Target
    connections: int
    request: BenchRequest

    @property
    def key(self) -> str:
        return f"{self.part}-{self.era}-{self.target.key}-c{self.connections}"


def build_cases(args: argparse.Namespace, servers: VirtualServerServers, targets: dict[str, Target]) -> tuple[list[Case], dict[str, Any]]:
    """Every case, each request checked once; what the checks found."""
    base = f"http://127.0.0.1:{servers.gateway_port}"
    sessions: dict[str, str] = {}
    used_eras = sorted(set(args.era_keys) | set(args.list_era_keys), key=ERAS.index)
    if "legacy" in used_eras:
        for target in targets.values():
            sessions[target.key] = open_legacy_session(base + target.path)
    checks: dict[str, Any] = {"legacy_sessions": sessions, "tools_listed": {}, "list_bytes": {}}
    # Lists first, on every route and era: the catalog is built, the schemas learned.
    for era in used_eras:
        for target in targets.values():
            request = list_request(target, era, sessions.get(target.key, ""))
            verify_eventually(base + target.path, request)
            names, size = listed_tools(base + target.path, request)
            expected = DEMO_TOOLS * max(1, target.members)
            if len(names) != expected:
                raise RuntimeError(f"{request.title} lists {len(names)} tools, expected {expected}: {names}")
            checks["tools_listed"][f"{era}-{target.key}"] = len(names)
            checks["list_bytes"][f"{era}-{target.key}"] = size
    cases: list[Case] = []
    call_targets = [targets["plain"], targets["vs2"]]
    for era in args.era_keys:
        for target in call_targets:
            request = call_request(target, era, sessions.get(target.key, ""))
            verify_eventually(base + target.path, request)
            cases.append(Case("call", era, target, args.connections, request))
    for era in args.list_era_keys:
        for connections in (1, args.connections):
            for target in targets.values():
                request = list_request(target, era, sessions.get(target.key, ""))
                cases.append(Case("list", era, target, connections, request))
    return cases, checks


def gateway_cpu_runs(runs: list[LoadResult], process: str = "gateway") -> list[float | None]:
    return [r.to_dict()["cpu_ms_per_ok_request"].get(process) for r in runs]


def run(args: argparse.Namespace, servers: VirtualServerServers, workdir: Path) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    generator = (WrkGenerator if args.fixed_ids else UniqueIdWrk)(wrk, args.wrk_threads, workdir)
    targets = targets_for(args.members)
    results: dict[str, Any] = {
        "machine": machine_info(generator),
        "settings": {
            "duration": args.duration,
            "warmup": args.warmup,
            "repeat": args.repeat,
            "connections": args.connections,
            "members": args.members,
            "eras": args.era_keys,
            "list_eras": args.list_era_keys,
            "gateway_threads": args.gateway_threads,
            "wrk_threads": args.wrk_threads,
            "json_rpc_ids": "1 on every request" if args.fixed_ids else "unique per request",
            "quiet_threshold": args.quiet_threshold,
            "command": " ".join(["bench/virtual_servers.py", *sys.argv[1:]]),
        },
        "cases": [],
    }
    log(f"load average {' '.join(results['machine']['loadavg_before'])}; starting {args.members} demo MCP servers")
    servers.start_members(args.members)
    verify(servers.demo_url, REQUESTS["add"])
    servers.prepare_gateway_database()
    results["setup"] = servers.create_virtual_servers(sorted({2, args.members}))
    servers.start_gateway(args.gateway_threads)
    cases, checks = build_cases(args, servers, targets)
    results["checks"] = checks
    log(f"every request checked; tools listed: {checks['tools_listed']}")
    runs: dict[str, list[LoadResult]] = {case.key: [] for case in cases}
    base = f"http://127.0.0.1:{servers.gateway_port}"
    for round_index in range(args.repeat):
        for case in cases:
            log(f"round {round_index + 1}/{args.repeat}: {case.request.title}, {case.connections} connection(s)")
            result = measure(generator, servers, base + case.target.path, case.request, args, case.connections)
            runs[case.key].append(result)
            log(
                f"  {result.rps:.0f} req/s, p50 {fmt(result.p50_ms)} ms, p99 {fmt(result.p99_ms)} ms, errors "
                f"{result.error_total}, gateway CPU {result.to_dict()['cpu_ms_per_ok_request'].get('gateway')} ms/req, "
                f"other CPU {result.cpu_s.get('other', 0):.1f} s"
            )
            if servers.gateway is not None and not servers.gateway.alive():
                raise RuntimeError(f"the gateway exited:\n{servers.gateway.log_tail()}")
    for case in cases:
        figures = median_run(runs[case.key])
        figures["gateway_cpu_ms_per_req_runs"] = gateway_cpu_runs(runs[case.key])
        figures["member1_cpu_ms_per_req_runs"] = gateway_cpu_runs(runs[case.key], "demo")
        results["cases"].append(
            {
                "key": case.key,
                "part": case.part,
                "era": case.era,
                "target": case.target.key,
                "path": case.target.path,
                "members": case.target.members,
                "connections": case.connections,
                "title": case.request.title,
                "request": {"headers": case.request.headers, "body": case.request.body},
                "result": figures,
            }
        )
    results["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    return results


def median(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    middle = len(present) // 2
    return present[middle] if len(present) % 2 else (present[middle - 1] + present[middle]) / 2


def report(results: dict[str, Any]) -> None:
    info, settings = results["machine"], results["settings"]
    print(
        f"\n{info['cpu_cores']} cores ({info['cpu_model']}), Python {info['python']}, code {info['code']}, nice {info['nice']}; "
        f"load average before {' '.join(info['loadavg_before'])}, after {' '.join(info.get('loadavg_after', []))}.\n"
        f"Warm-up {settings['warmup']} s, measured {settings['duration']} s, {settings['repeat']} round(s) "
        f"(median run by req/s; CPU ms/req: median of the runs). Gateway {settings['gateway_threads']} threads.\n"
    )
    cases = results["cases"]
    calls = [c for c in cases if c["part"] == "call"]
    if calls:
        print(f"tools/call add (via a virtual server: m1_add), {settings['connections']} connections:\n")
        print(
            "| era | route | req/s | all runs req/s | p50 ms | p99 ms | errors | gateway CPU ms/req | "
            "member 1 CPU ms/req | Δ req/s vs plain | Δ gateway CPU ms/req vs plain |"
        )
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for era in settings["eras"]:
            rows = [c for c in calls if c["era"] == era]
            plain = next((c["result"] for c in rows if c["target"] == "plain"), None)
            plain_cpu = median(plain["gateway_cpu_ms_per_req_runs"]) if plain else None
            for row in rows:
                r = row["result"]
                cpu = median(r["gateway_cpu_ms_per_req_runs"])
                is_plain = row["target"] == "plain"
                d_rps = f"{100 * (r['rps'] / plain['rps'] - 1):+.1f}%" if plain and plain["rps"] and not is_plain else ""
                d_cpu = f"{cpu - plain_cpu:+.3f}" if cpu is not None and plain_cpu is not None and not is_plain else ""
                print(
                    f"| {ERA_TITLES[era]} | {row['path']} | {r['rps']:.0f} | {' / '.join(f'{v:.0f}' for v in r['runs_rps'])} | "
                    f"{fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {r['error_total']} | {fmt(cpu, 3)} | "
                    f"{fmt(median(r['member1_cpu_ms_per_req_runs']), 3)} | {d_rps} | {d_cpu} |"
                )
        print()
    lists = [c for c in cases if c["part"] == "list"]
    if lists:
        print(f"tools/list: 1 connection (latency) and {settings['connections']} connections (throughput):\n")
        print(
            f"| era | route | tools listed | answer bytes | p50 ms @1 | p99 ms @1 | req/s @1 | req/s @{settings['connections']} | "
            f"p99 ms @{settings['connections']} | gateway CPU ms/req @{settings['connections']} | errors |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        checks = results.get("checks", {})
        for era in settings["list_eras"]:
            for target in dict.fromkeys(c["target"] for c in lists if c["era"] == era):
                one = next((c for c in lists if c["era"] == era and c["target"] == target and c["connections"] == 1), None)
                many = next((c for c in lists if c["era"] == era and c["target"] == target and c["connections"] != 1), None)
                path = (one or many or {}).get("path", target)
                r1 = one["result"] if one else {}
                rn = many["result"] if many else {}
                errors = r1.get("error_total", 0) + rn.get("error_total", 0)
                print(
                    f"| {ERA_TITLES[era]} | {path} | {checks.get('tools_listed', {}).get(f'{era}-{target}', '-')} | "
                    f"{checks.get('list_bytes', {}).get(f'{era}-{target}', '-')} | {fmt(r1.get('p50_ms'))} | "
                    f"{fmt(r1.get('p99_ms'))} | {fmt(r1.get('rps'), 0)} | {fmt(rn.get('rps'), 0)} | {fmt(rn.get('p99_ms'))} | "
                    f"{fmt(median(rn.get('gateway_cpu_ms_per_req_runs', [])), 3)} | {errors} |"
                )
        print()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Cost of a tools/call through a virtual server vs a plain route, and tools/list latency for 2 and N members."
    )
    add_measurement_arguments(parser)
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    parser.add_argument("--members", type=int, default=10, help="members of the larger virtual server (3..40, default 10)")
    parser.add_argument("--eras", default="modern,legacy", help="eras of the tools/call comparison (modern, legacy)")
    parser.add_argument("--list-eras", default="modern", help="eras of the tools/list cases (modern, legacy; '' for none)")
    parser.add_argument("--gateway-threads", type=int, default=256, help="gateway threads (default 256, the default)")
    parser.add_argument(
        "--fixed-ids", action="store_true",
        help='send "id": 1 on every request, as run.py does, instead of an id per request',
    )  # fmt: skip
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    args = parser.parse_args(argv)
    args.era_keys = [k.strip() for k in args.eras.split(",") if k.strip()]
    args.list_era_keys = [k.strip() for k in args.list_eras.split(",") if k.strip()]
    unknown = [k for k in args.era_keys + args.list_era_keys if k not in ERAS]
    if unknown or not (args.era_keys or args.list_era_keys):
        parser.error(f"unknown or no eras: {unknown} (choose from {', '.join(ERAS)})")
    if not 3 <= args.members <= 40:
        parser.error("--members must be between 3 and 40")
    if args.repeat < 1 or args.duration < 1:
        parser.error("--repeat and --duration must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(parse_args(argv), "gateway-virtual-bench-", VirtualServerServers, run, report)


if __name__ == "__main__":
    sys.exit(main())

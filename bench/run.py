"""Gateway benchmark: the demo MCP server directly versus the same request through the gateway.

    .venv/bin/python bench/run.py            (or: make bench)
    .venv/bin/python bench/run.py --help     (duration, concurrency, stream counts, ...)

What it does, all on this machine and on free ports, in fresh temporary folders:

1. starts the bundled demo MCP server (``python -m demo.mcp_server``) and a gateway in the
   embedded shape (SQLite + in-process state, ``manage.py serve --no-demo``, access log at the
   default INFO level written to a file) with ``/mcp/demo`` routed to the demo server;
2. checks that each benchmark request answers HTTP 200 with a JSON-RPC result, both directly
   and through the gateway, before measuring anything;
3. for each request kind and concurrency, runs the load generator (``wrk`` with a Lua script
   when installed, else a Python thread pool with pooled urllib3 connections) for a warm-up
   and then a measured window, against the demo server and through the gateway, alternately
   (``--repeat`` times; the median run is reported), and reports req/s, p50/p99 latency,
   errors, the CPU time per request of each process, the CPU time taken by other work on the
   machine, the upstream connections used and the warnings the gateway logged;
4. optionally profiles the gateway worker with py-spy under the same load (``--py-spy``);
5. times how long a gateway thread stays busy after the client of an idle SSE stream left;
6. holds K long-lived SSE streams open through the gateway (GET server streams of legacy
   sessions: each holds one gateway thread) and measures what ordinary calls still get,
   for each gateway thread count asked for.

The requests are what an MCP 2.x SDK client sends in the stateless 2026-07-28 era: a POST with
``MCP-Protocol-Version``, ``Mcp-Method`` (and ``Mcp-Name`` for a tool call) headers and the
protocol version, client info and capabilities in ``params._meta``; no session, no initialize.

Every process it starts is stopped when it ends, also on Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402  bench/ is not a package: its folder is on sys.path
    BASE_HEADERS,
    CLIENT_INFO,
    LEGACY_VERSION,
    REQUESTS,
    BenchRequest,
    Interrupted,
    LoadResult,
    Servers,
    _compact,
    choose_generator,
    fmt,
    log,
    machine_info,
    measure,
    median_run,
    print_table,
    proc_status,
    run_in_workdir,
    verify,
    write_json,
)


class HeldStreams:
    """K legacy sessions, each with its GET server stream (SSE) held open through the gateway.

    The sessions are initialised through the gateway; each GET then holds one gateway thread for
    as long as it is open. Teardown deletes the sessions at the upstream directly (the gateway's
    threads may all be busy), which ends the upstream streams and so frees the gateway threads.
    """

    def __init__(self, gateway_url: str, upstream_url: str) -> None:
        self.gateway_url = gateway_url
        self.upstream_url = upstream_url
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=10))
        self.session_ids: list[str] = []
        self.sockets: list[socket.socket] = []
        self.opened_sockets: list[socket.socket] = []
        self.opened = 0
        self.open_seconds = 0.0

    def _initialize(self) -> str:
        headers = dict(BASE_HEADERS)
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
        }
        response = self.http.request("POST", self.gateway_url, body=_compact(init), headers=headers)
        session_id = response.headers.get("mcp-session-id", "")
        if response.status != 200 or not session_id:
            raise RuntimeError(f"initialize through the gateway failed: {response.status} {response.data[:200]!r}")
        headers.update({"mcp-session-id": session_id, "mcp-protocol-version": LEGACY_VERSION})
        notified = self.http.request(
            "POST", self.gateway_url, body=_compact({"jsonrpc": "2.0", "method": "notifications/initialized"}), headers=headers
        )
        if notified.status not in (200, 202):
            raise RuntimeError(f"notifications/initialized failed: {notified.status}")
        return session_id

    def open(self, count: int, timeout: float) -> int:
        """Initialise ``count`` sessions, then open their GET streams; return how many got headers."""
        self.session_ids = [self._initialize() for _ in range(count)]
        parts = urlsplit(self.gateway_url)
        selector = selectors.DefaultSelector()
        received: dict[socket.socket, bytes] = {}
        started = time.perf_counter()
        for session_id in self.session_ids:
            sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
            sock.sendall(
                (
                    f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
                    f"Cache-Control: no-store\r\nmcp-session-id: {session_id}\r\n"
                    f"mcp-protocol-version: {LEGACY_VERSION}\r\nUser-Agent: mcp-gateway-bench\r\n\r\n"
                ).encode()
            )
            sock.setblocking(False)
            self.sockets.append(sock)
            received[sock] = b""
            selector.register(sock, selectors.EVENT_READ)
        pending = set(self.sockets)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                sock = ready
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                received[sock] += chunk
                if b"\r\n\r\n" in received[sock] or not chunk:
                    selector.unregister(sock)
                    pending.discard(sock)
        selector.close()
        self.open_seconds = time.perf_counter() - started
        self.opened_sockets = [
            sock
            for sock in self.sockets
            if received[sock].startswith(b"HTTP/1.1 200") and b"text/event-stream" in received[sock].lower()
        ]
        self.opened = len(self.opened_sockets)
        return self.opened

    def still_open(self) -> int:
        """How many of the opened streams the gateway has not closed."""
        alive = 0
        for sock in self.opened_sockets:
            try:
                while sock.recv(65536):  # drain keep-alive pings; b"" means closed by the peer
                    pass
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        for session_id in self.session_ids:
            try:
                self.http.request(
                    "DELETE",
                    self.upstream_url,
                    headers={**BASE_HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": LEGACY_VERSION},
                )
            except urllib3.exceptions.HTTPError:
                pass
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        self.opened_sockets = []
        self.session_ids = []


def wait_for_gateway_idle(servers: Servers, request: BenchRequest, timeout: float = 60.0) -> None:
    """After streams close: wait until a call through the gateway answers quickly again."""
    http = urllib3.PoolManager(retries=False, timeout=2.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = http.request("POST", servers.gateway_url, body=request.body, headers=request.headers)
            if not request.check(response.status, response.data):
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the gateway did not recover after the streams were closed")


# --------------------------------------------------------------------------------------------
# Reporting


def per_request_ms(result: dict[str, Any], name: str) -> str:
    value = result["cpu_ms_per_ok_request"].get(name)
    return "-" if value is None else f"{value:.2f}"


def runs_text(figures: dict[str, Any]) -> str:
    runs = figures.get("runs_rps", [])
    return " / ".join(f"{v:.0f}" for v in runs) if len(runs) > 1 else ""


def report(results: dict[str, Any]) -> None:
    info = results["machine"]
    settings = results["settings"]
    print("\n## Machine and settings")
    print(
        f"{info['cpu_cores']} cores ({info['cpu_model']}), Linux {info['kernel']}, Python {info['python']}, "
        + ", ".join(f"{k} {v}" for k, v in info["packages"].items())
        + f". Load generator: {info['load_generator']}. Load average before: {' '.join(info['loadavg_before'])}"
        + (f", after: {' '.join(info['loadavg_after'])}" if "loadavg_after" in info else "")
        + "."
    )
    print(
        f"Code: {info['code']}. Nice: {info['nice']}. "
        f"Warm-up {settings['warmup']} s, measured {settings['duration']} s, {settings['repeat']} run(s) each "
        f"(median by req/s shown), client timeout {settings['timeout']} s; gateway {settings['gateway_threads']} "
        "threads x 1 worker, embedded shape, access log at INFO written to a file.\n"
    )
    if results["throughput"]:
        print("## Direct vs the bare Django proxy (floor) vs the gateway")
        rows = []
        for row in results["throughput"]:
            direct, floor, gateway = row["direct"], row["floor"], row["gateway"]
            ratio = gateway["rps"] / direct["rps"] if direct["rps"] else 0.0
            floor_ratio = gateway["rps"] / floor["rps"] if floor["rps"] else 0.0
            p99_ratio = gateway["p99_ms"] / floor["p99_ms"] if floor["p99_ms"] and gateway["p99_ms"] else 0.0
            for label, r in (("direct", direct), ("floor", floor), ("gateway", gateway)):
                rows.append(
                    [
                        row["key"],
                        str(row["connections"]),
                        label,
                        f"{r['rps']:.0f}",
                        runs_text(r),
                        fmt(r["p50_ms"]),
                        fmt(r["p99_ms"]),
                        str(r["error_total"]),
                        f"{ratio:.2f}" if label == "gateway" else "",
                        f"{floor_ratio:.2f} / {p99_ratio:.2f}" if label == "gateway" else "",
                        per_request_ms(r, "gateway") if label == "gateway" else per_request_ms(r, "floor") if label == "floor" else "-",
                        per_request_ms(r, "demo"),
                        per_request_ms(r, "client"),
                        f"{r['cpu_s'].get('other', 0):.1f}",
                        str(r.get("demo_connections_seen", "-")),
                        str(sum(r.get("gateway_log_problems", {}).values())) if label == "gateway" else "-",
                    ]
                )
        print_table(
            [
                "request", "conns", "target", "req/s", "all runs req/s", "p50 ms", "p99 ms", "errors",
                "gateway/direct req/s", "gateway/floor req/s / p99", "proxy CPU ms/req", "demo CPU ms/req", "client CPU ms/req",
                "other CPU s", "connections to demo seen", "gateway log warnings",
            ],
            rows,
        )  # fmt: skip
    problems: dict[str, int] = {}
    for figures in [row[label] for row in results["throughput"] for label in ("direct", "floor", "gateway")] + [
        row["load"] for row in results["streams"]
    ]:
        for kind, count in figures.get("gateway_log_problems", {}).items():
            problems[kind] = problems.get(kind, 0) + count
    if problems:
        print("## Warnings and errors the gateway logged during the reported runs")
        print_table(["log line (numbers masked)", "count"], [[kind.replace("|", "/"), str(n)] for kind, n in problems.items()])
    profile = results.get("profile")
    if profile:
        print(f"## Where the gateway's GIL time goes (py-spy --gil, {profile['samples']} samples, tools/call add)")
        print_table(["part of the request", "share of samples"], [[k, f"{v:.1f}%"] for k, v in profile["categories_pct"].items()])
    disconnect = results.get("disconnect")
    if disconnect:
        released = disconnect["released_after_s"]
        print(
            "## Abandoned stream: the gateway thread stays busy for "
            + (f"{released} s after the client went away\n" if released is not None else
               f"more than {disconnect['waited_up_to_s']} s after the client went away\n")
        )
    if results["streams"]:
        print("## Ordinary calls (tools/call add) while K SSE streams are held open through the gateway")
        rows = []
        for row in results["streams"]:
            r = row["load"]
            rows.append(
                [
                    str(row["gateway_threads"]),
                    str(row["streams_requested"]),
                    str(row["streams_opened"]),
                    str(row["streams_still_open_after_load"]),
                    str(max(0, row["gateway_threads"] - row["streams_opened"])),
                    str(row["worker_os_threads"]),
                    f"{row['worker_rss_mb']:.0f}",
                    f"{r['rps']:.0f}",
                    runs_text(r),
                    fmt(r["p50_ms"]),
                    fmt(r["p99_ms"]),
                    str(r["requests"]),
                    str(r["error_total"]),
                    str(sum(r.get("gateway_log_problems", {}).values())),
                ]
            )
        print_table(
            [
                "gateway threads", "streams asked", "streams open", "still open after", "threads left",
                "worker OS threads", "worker RSS MB", "calls req/s", "all runs req/s", "p50 ms", "p99 ms",
                "calls answered", "errors", "gateway log warnings",
            ],
            rows,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the gateway against the demo MCP server directly.")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds before each run, discarded (default 3)")
    parser.add_argument(
        "--connections",
        default="16",
        help="concurrent keep-alive connections; a comma-separated list measures each (default 16)",
    )
    parser.add_argument(
        "--latency-connections",
        type=int,
        default=1,
        help="also measure tools/call add at this concurrency, for unloaded latency (0 to skip; default 1)",
    )
    parser.add_argument("--timeout", type=int, default=5, help="client timeout per request, whole seconds (default 5)")
    parser.add_argument("--requests", default="add,list", help=f"request kinds to measure, of {','.join(REQUESTS)}")
    parser.add_argument("--gateway-threads", type=int, default=64, help="gateway threads for the main comparison (default 64)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--streams", default="0,16,100", help="numbers of SSE streams to hold open (default 0,16,100)")
    parser.add_argument(
        "--stream-gateway-threads", default="64", help="gateway thread counts for the streams test, comma separated"
    )
    parser.add_argument("--stream-open-timeout", type=float, default=5.0, help="seconds to wait for streams to open")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each measurement; the median by req/s is reported (default 1)"
    )
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.2,
        help="before each run, wait until the whole machine is at most this busy (0..1; 1 disables; default 0.2)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling priority for the benchmark and every process it starts; negative (root only) "
        "shields the figures from other jobs on a shared machine (default 0)",
    )
    parser.add_argument(
        "--quiet-max-wait", type=float, default=30.0, help="longest wait for a quiet machine (s, default 30)"
    )
    parser.add_argument("--no-throughput", action="store_true", help="skip the direct vs gateway comparison")
    parser.add_argument(
        "--no-disconnect-check", action="store_true", help="skip timing how long an abandoned stream holds a thread"
    )
    parser.add_argument("--disconnect-wait", type=float, default=70.0, help="longest wait in the disconnect check")
    parser.add_argument("--py-spy", help="path to a py-spy binary: also profile the gateway under load (GIL samples)")
    parser.add_argument("--profile-seconds", type=int, default=20, help="py-spy sampling time (default 20)")
    parser.add_argument("--profile-out", type=Path, help="keep py-spy's collapsed stacks in this file")
    parser.add_argument("--no-streams", action="store_true", help="skip the streams test")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) and print its path")
    args = parser.parse_args(argv)
    args.request_keys = [key.strip() for key in args.requests.split(",") if key.strip()]
    unknown = [key for key in args.request_keys if key not in REQUESTS]
    if unknown:
        parser.error(f"unknown request kinds: {unknown}")
    args.connection_counts = [int(v) for v in args.connections.split(",") if v.strip()]
    if not args.connection_counts:
        parser.error("--connections needs at least one number")
    args.stream_counts = [int(v) for v in args.streams.split(",") if v.strip()]
    args.stream_thread_counts = [int(v) for v in args.stream_gateway_threads.split(",") if v.strip()]
    return args


def run_throughput(generator: Any, servers: Servers, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    plan = [(key, connections) for connections in args.connection_counts for key in args.request_keys]
    if args.latency_connections > 0 and args.latency_connections not in args.connection_counts:
        plan.append(("add", args.latency_connections))
    for key, connections in plan:
        request = REQUESTS[key]
        runs: dict[str, list[LoadResult]] = {"direct": [], "floor": [], "gateway": []}
        # Direct and gateway runs alternate, so a burst of load from elsewhere hits both alike.
        for repeat in range(args.repeat):
            for label, url in (("direct", servers.demo_url), ("floor", servers.floor_url), ("gateway", servers.gateway_url)):
                log(f"{request.title}, {connections} connections, {label} (run {repeat + 1}/{args.repeat})")
                result = measure(generator, servers, url, request, args, connections)
                runs[label].append(result)
                log(
                    f"  {result.rps:.0f} req/s, p50 {fmt(result.p50_ms)} ms, p99 {fmt(result.p99_ms)} ms, "
                    f"errors {result.error_total}, other CPU {result.cpu_s.get('other', 0):.1f} s"
                )
        rows.append(
            {
                "request": request.title,
                "key": key,
                "connections": connections,
                "direct": median_run(runs["direct"]),
                "floor": median_run(runs["floor"]),
                "gateway": median_run(runs["gateway"]),
            }
        )
    return rows


def run_streams(generator: Any, servers: Servers, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    request = REQUESTS["add"]
    for threads in args.stream_thread_counts:
        if servers.gateway_threads != threads:
            log(f"restarting the gateway with {threads} threads")
            servers.start_gateway(threads)
            verify(servers.gateway_url, request)
        for count in args.stream_counts:
            held = HeldStreams(servers.gateway_url, servers.demo_url)
            try:
                opened = held.open(count, args.stream_open_timeout) if count else 0
                log(f"{threads} threads: {opened} of {count} streams open; measuring calls")
                assert servers.gateway is not None
                worker = servers.gateway.leaf_pid()
                runs = []
                for repeat in range(args.repeat):
                    runs.append(
                        measure(generator, servers, servers.gateway_url, request, args, args.connection_counts[0])
                    )
                    last = runs[-1]
                    log(
                        f"  run {repeat + 1}/{args.repeat}: {last.rps:.0f} req/s, p50 {fmt(last.p50_ms)} ms, "
                        f"p99 {fmt(last.p99_ms)} ms, errors {last.error_total}"
                    )
                status = proc_status(worker)
                still_open = held.still_open()
                rows.append(
                    {
                        "gateway_threads": threads,
                        "streams_requested": count,
                        "streams_opened": opened,
                        "streams_still_open_after_load": still_open,
                        "streams_open_seconds": round(held.open_seconds, 3),
                        "worker_os_threads": int(status.get("Threads", "0") or 0),
                        "worker_rss_mb": round(int((status.get("VmRSS", "0 kB").split() or ["0"])[0]) / 1024, 1),
                        "load": median_run(runs),
                    }
                )
            finally:
                held.close()
            wait_for_gateway_idle(servers, request)
    return rows


def run_disconnect_check(servers: Servers, args: argparse.Namespace) -> dict[str, Any]:
    """How long a gateway thread stays busy after the client of an idle SSE stream goes away.

    WSGI gives the application no disconnect signal: the gateway learns that the client left only
    when it next writes to it, that is when the upstream next sends something on the stream.
    The access-log line of a stream is written when the stream ends, so its time tells.
    """
    assert servers.gateway is not None
    held = HeldStreams(servers.gateway_url, servers.demo_url)
    log_path = servers.gateway.log_path

    def stream_lines() -> int:
        return sum(1 for line in log_path.read_text(errors="replace").splitlines() if "method=GET" in line)

    try:
        before = stream_lines()
        if held.open(1, args.stream_open_timeout) != 1:
            raise RuntimeError("could not open a stream for the disconnect check")
        time.sleep(1.0)
        for sock in held.sockets:
            sock.close()
        closed_at = time.monotonic()
        held.sockets = []
        released_after = None
        while time.monotonic() - closed_at < args.disconnect_wait:
            if stream_lines() > before:
                released_after = round(time.monotonic() - closed_at, 1)
                break
            time.sleep(0.1)
    finally:
        held.close()
    log(f"thread of an abandoned idle stream released after {released_after} s")
    return {"released_after_s": released_after, "waited_up_to_s": args.disconnect_wait}


PROFILE_CATEGORIES = (
    # (label, a frame that marks it); a sample goes to the first label whose frame is on its stack.
    ("access log line (record_exchange)", "record_exchange ("),
    ("upstream call: urllib3 send + read status/headers (open_upstream)", "open_upstream ("),
    ("upstream body read + Django response build (relay_response)", "relay_response ("),
    ("other pipeline stages: limits, body read, JSON-RPC parse, route match, target choice", "_run_stages ("),
    ("pipeline wrapper (handle)", "handle (gateway_project/pipeline.py"),
    ("Django response close: request_finished signal", "HttpResponseBase.close ("),
    ("Django handler, middleware, URL resolving", "WSGIHandler.__call__ ("),
    ("granian WSGI glue (environ, start_response, body iteration)", "granian/wsgi.py"),
)


def profile_summary(raw_path: Path) -> dict[str, Any]:
    """Split py-spy's collapsed GIL-holder samples into the categories above, plus the top frames."""
    categories = {label: 0 for label, _ in PROFILE_CATEGORIES}
    categories["other (config watcher, GC, ...)"] = 0
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        for label, marker in PROFILE_CATEGORIES:
            if marker in stack:
                categories[label] += count
                break
        else:
            categories["other (config watcher, GC, ...)"] += count
        for frame in {frame.rsplit(":", 1)[0] if frame.endswith(")") else frame for frame in stack.split(";")}:
            inclusive[frame] = inclusive.get(frame, 0) + count
    top = sorted(inclusive.items(), key=lambda item: -item[1])[:40]
    return {
        "samples": total,
        "categories_pct": {label: round(100 * n / total, 1) if total else 0.0 for label, n in categories.items()},
        "top_inclusive_pct": {frame + ")": round(100 * n / total, 1) for frame, n in top} if total else {},
    }


def run_profile(generator: Any, servers: Servers, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Sample the gateway worker's GIL holder with py-spy during a tools/call load (not measured)."""
    assert servers.gateway is not None
    worker = servers.gateway.leaf_pid()
    raw_path = workdir / "py-spy-gil.txt"
    seconds = args.profile_seconds
    request = REQUESTS["add"]
    load = threading.Thread(
        target=generator.run,
        args=(servers.gateway_url, request, args.connection_counts[0], seconds + 4, args.timeout),
        daemon=True,
    )
    load.start()
    time.sleep(2)
    log(f"profiling the gateway worker (pid {worker}) with py-spy for {seconds} s")
    subprocess.run(
        [
            args.py_spy, "record", "--pid", str(worker), "--duration", str(seconds), "--rate", "250",
            "--gil", "--nonblocking", "--format", "raw", "--output", str(raw_path),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    load.join()
    summary = profile_summary(raw_path)
    if args.profile_out:
        args.profile_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw_path, args.profile_out)
        summary["raw_file"] = str(args.profile_out)
    return summary


def run(args: argparse.Namespace, workdir: Path, servers: Servers) -> dict[str, Any]:
    generator = choose_generator(args, workdir)
    results: dict[str, Any] = {
        "machine": machine_info(generator),
        "settings": {
            "duration": args.duration,
            "warmup": args.warmup,
            "repeat": args.repeat,
            "connections": args.connection_counts,
            "latency_connections": args.latency_connections,
            "timeout": args.timeout,
            "quiet_threshold": args.quiet_threshold,
            "gateway_threads": args.gateway_threads,
            "wrk_threads": args.wrk_threads if generator.name == "wrk" else None,
            "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        },
        "requests": {key: {"headers": REQUESTS[key].headers, "body": REQUESTS[key].body} for key in args.request_keys},
        "throughput": [],
        "streams": [],
        "disconnect": None,
        "profile": None,
    }
    log("starting the demo MCP server")
    servers.start_demo()
    log(f"starting the gateway ({args.gateway_threads} threads)")
    servers.start_gateway(args.gateway_threads)
    log(f"starting the bare Django proxy floor ({args.gateway_threads} threads, same server)")
    servers.start_floor(args.gateway_threads)
    for key in args.request_keys:
        for url in (servers.demo_url, servers.floor_url, servers.gateway_url):
            verify(url, REQUESTS[key])
    log("all three answer every request with a JSON-RPC result")
    if not args.no_throughput:
        results["throughput"] = run_throughput(generator, servers, args)
    if args.py_spy:
        results["profile"] = run_profile(generator, servers, args, workdir)
    if not args.no_disconnect_check:
        results["disconnect"] = run_disconnect_check(servers, args)
    if not args.no_streams:
        results["streams"] = run_streams(generator, servers, args)
    results["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nice:
        # Inherited by every process started from here (servers, wrk) and all their threads.
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    try:
        results = run_in_workdir(
            "gateway-bench-", Servers, lambda servers, workdir: run(args, workdir, servers), keep=args.keep
        )
    except Interrupted:
        return 130
    report(results)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

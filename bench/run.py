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
import datetime
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3

PROJECT_DIR = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NEVER_TRIPPING_IP_RATE_LIMIT = "1000000000/1"  # requests/seconds

MODERN_VERSION = "2026-07-28"
LEGACY_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "mcp-gateway-bench", "version": "1.0"}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
}
BASE_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "User-Agent": "mcp-gateway-bench",
}


def _compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


@dataclass(frozen=True)
class BenchRequest:
    """One benchmark request: a modern (stateless) MCP POST and how to tell that it succeeded."""

    key: str
    title: str
    body: str
    headers: dict[str, str]

    def check(self, status: int, body: bytes) -> str:
        """'' when the answer is a JSON-RPC success, else what is wrong with it."""
        if status != 200:
            return f"HTTP {status}: {body[:200]!r}"
        try:
            document = json.loads(body)
        except ValueError:
            return f"not JSON: {body[:200]!r}"
        if "result" not in document or "error" in document:
            return f"not a JSON-RPC result: {body[:200]!r}"
        if document["result"].get("isError"):
            return f"the tool reported an error: {body[:200]!r}"
        return ""


def modern_request(key: str, title: str, method: str, params: dict[str, Any], name: str = "") -> BenchRequest:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": MODERN_META}}
    headers = {**BASE_HEADERS, "MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": method}
    if name:
        headers["Mcp-Name"] = name
    return BenchRequest(key=key, title=title, body=_compact(body), headers=headers)


REQUESTS = {
    "add": modern_request(
        "add", "tools/call add (2026-07-28, stateless)", "tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}, "add"
    ),
    "list": modern_request("list", "tools/list (2026-07-28, stateless)", "tools/list", {}),
}


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, process group, utime + stime in ticks) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12])


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


class ManagedProcess:
    """A child process in a process group of its own, so stopping it stops its children too."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                argv, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pgid = self.popen.pid  # start_new_session: the child leads a new group

    def group_pids(self) -> list[int]:
        pids = []
        for pid in all_pids():
            stat = read_proc_stat(pid)
            if stat is not None and stat[1] == self.pgid:
                pids.append(pid)
        return pids

    def cpu_ticks(self) -> int:
        """CPU time (user + system) of every live process of the group, in clock ticks."""
        total = 0
        for pid in self.group_pids():
            stat = read_proc_stat(pid)
            if stat is not None:
                total += stat[2]
        return total

    def leaf_pid(self) -> int:
        """The deepest process of the group (granian's worker process for the gateway)."""
        stats = {pid: read_proc_stat(pid) for pid in self.group_pids()}
        parents = {stat[0] for stat in stats.values() if stat is not None}
        leaves = [pid for pid, stat in stats.items() if stat is not None and pid not in parents]
        return max(leaves) if leaves else self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.group_pids():
            if self.popen.poll() is None:
                try:
                    self.popen.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.1)
        if self.group_pids():
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def proc_status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def wait_until_answering(url: str, process: ManagedProcess, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
    http = urllib3.PoolManager(retries=False, timeout=1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited with status {process.popen.returncode}:\n{process.log_tail()}")
        try:
            http.request("GET", url)
            return
        except urllib3.exceptions.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{process.log_tail()}")


class Servers:
    """The demo MCP server and gateway processes of one benchmark run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.demo: ManagedProcess | None = None
        self.gateway: ManagedProcess | None = None
        self.demo_port = 0
        self.gateway_port = 0
        self.gateway_threads = 0
        self._gateway_starts = 0

    @property
    def demo_url(self) -> str:
        return f"http://127.0.0.1:{self.demo_port}/mcp"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/mcp/demo"

    def gateway_env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # The embedded shape, at default logging: whatever this shell has set is ignored.
            if key not in ("DATABASE_URL", "REDIS_URL", "LOG_LEVEL", "DEBUG", "GATEWAY_WORKERS", "GATEWAY_THREADS")
        }
        # All the load comes from one client IP: the default per-IP rate limit would answer 429
        # after a few hundred requests. A limit that never trips keeps the stage (and its cost)
        # on the path; a limit set in the calling shell is kept.
        env.setdefault("GATEWAY_DEFAULT_IP_RATE_LIMIT", NEVER_TRIPPING_IP_RATE_LIMIT)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
                "GATEWAY_DATA_DIR": str(self.workdir / "gateway-data"),
                "GATEWAY_DEMO_PORT": str(self.demo_port),
                "GATEWAY_DEMO_UPSTREAM": self.demo_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start_demo(self) -> None:
        self.demo_port = free_port()
        self.demo = ManagedProcess(
            "demo MCP server",
            [sys.executable, "-m", "demo.mcp_server", "--port", str(self.demo_port)],
            dict(os.environ),
            self.workdir / "demo.log",
        )
        wait_until_answering(self.demo_url, self.demo)

    def prepare_gateway_database(self) -> None:
        """Migrate the gateway's database and route /mcp/demo to the demo server (idempotent)."""
        env = self.gateway_env()
        for args in (
            ["migrate", "--noinput", "--verbosity", "0"],
            ["add_route", "/mcp/demo", self.demo_url, "--name", "demo"],
        ):
            subprocess.run(
                [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=env, check=True, capture_output=True, text=True
            )

    def start_gateway(self, threads: int) -> None:
        self.stop_gateway()
        # Migrate at every start: the code may have moved on since the last start.
        self.prepare_gateway_database()
        self._gateway_starts += 1
        self.gateway_port = free_port()
        self.gateway_threads = threads
        self.gateway = ManagedProcess(
            f"gateway ({threads} threads)",
            [sys.executable, "manage.py", "serve", "--no-demo", "--port", str(self.gateway_port), "--threads", str(threads)],
            self.gateway_env(),
            self.workdir / f"gateway-{self._gateway_starts}-{threads}threads.log",
        )
        wait_until_answering(f"http://127.0.0.1:{self.gateway_port}/healthz", self.gateway)

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None

    def stop(self) -> None:
        self.stop_gateway()
        if self.demo is not None:
            self.demo.stop()
            self.demo = None


# --------------------------------------------------------------------------------------------
# Load generators


WRK_SCRIPT = r"""
-- Generated by bench/run.py: one fixed MCP POST; counts answers that are not JSON-RPC results.
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  rpc_errors = 0
end
function response(status, headers, body)
  if status == 200 and (not string.find(body, '"result"', 1, true) or string.find(body, '"isError":true', 1, true)) then
    rpc_errors = rpc_errors + 1
  end
end
function done(summary, latency, requests)
  local rpc = 0
  for _, thread in ipairs(threads) do
    rpc = rpc + thread:get("rpc_errors")
  end
  local e = summary.errors
  local have = summary.requests > 0 and latency.max > 0
  io.write(string.format(
    'BENCH_RESULT {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "rpc": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "mean_us": %%.1f, "have_latency": %%s}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, rpc,
    have and latency:percentile(50) or 0, have and latency:percentile(90) or 0,
    have and latency:percentile(99) or 0, latency.max, latency.mean, have and "true" or "false"))
end
"""


@dataclass
class LoadResult:
    generator: str
    connections: int
    duration_s: float
    requests: int  # answers received (any status)
    errors: dict[str, int]
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    client_cpu_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # filled in by measure()
    quiet_wait_s: float = 0.0  # filled in by measure()
    demo_connections_seen: int = 0  # filled in by measure()
    gateway_log_problems: dict[str, int] = field(default_factory=dict)  # filled in by measure()

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    @property
    def ok(self) -> int:
        return max(0, self.requests - self.errors.get("status", 0) - self.errors.get("rpc", 0))

    @property
    def rps(self) -> float:
        """Successful answers per second."""
        return self.ok / self.duration_s if self.duration_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "connections": self.connections,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "ok": self.ok,
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "error_total": self.error_total,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "client_cpu_s": round(self.client_cpu_s, 2),
            "cpu_s": self.cpu_s,
            "quiet_wait_s": self.quiet_wait_s,
            "demo_connections_seen": self.demo_connections_seen,
            "gateway_log_problems": self.gateway_log_problems,
            "cpu_ms_per_ok_request": {
                name: round(seconds * 1000 / self.ok, 3) if self.ok else None for name, seconds in self.cpu_s.items()
            },
        }


class WrkGenerator:
    name = "wrk"

    def __init__(self, binary: str, threads: int, workdir: Path) -> None:
        self.binary = binary
        self.threads = threads
        self.workdir = workdir

    def version(self) -> str:
        run = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return (run.stdout or run.stderr).splitlines()[0].strip() if (run.stdout or run.stderr) else "wrk"

    def script_for(self, request: BenchRequest) -> Path:
        path = self.workdir / f"wrk-{request.key}.lua"
        if "]==]" in request.body:
            raise ValueError("the body cannot be embedded in a Lua long string")
        headers = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in request.headers.items())
        path.write_text(WRK_SCRIPT % {"body": request.body, "headers": headers})
        return path

    def run(self, url: str, request: BenchRequest, connections: int, duration: int, timeout: float) -> LoadResult:
        argv = [
            self.binary,
            "-t", str(min(self.threads, connections)),
            "-c", str(connections),
            "-d", f"{duration}s",
            "--timeout", f"{max(1, round(timeout))}s",
            "-s", str(self.script_for(request)),
            url,
        ]  # fmt: skip
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        try:
            stdout = process.stdout.read()
        except BaseException:  # interrupted: do not leave wrk running
            process.kill()
            process.wait()
            raise
        # wait4 rather than wait: it also gives the CPU time wrk used.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        lines = [line for line in stdout.splitlines() if line.startswith("BENCH_RESULT ")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout}")
        raw = json.loads(lines[-1].split(" ", 1)[1])
        have = raw["have_latency"]

        def ms(key: str) -> float | None:
            return round(raw[key] / 1000.0, 3) if have else None

        return LoadResult(
            generator=self.name,
            connections=connections,
            duration_s=raw["duration_us"] / 1e6,
            requests=raw["requests"],
            errors={k: raw[k] for k in ("connect", "read", "write", "status", "timeout", "rpc")},
            p50_ms=ms("p50_us"),
            p90_ms=ms("p90_us"),
            p99_ms=ms("p99_us"),
            max_ms=ms("max_us"),
            client_cpu_s=usage.ru_utime + usage.ru_stime,
        )


class PythonGenerator:
    """Closed-loop load from threads, one pooled keep-alive urllib3 connection per thread.

    It shares the machine's cores with the servers it measures (and the GIL with itself), so on
    a small machine it takes CPU away from them: prefer wrk.
    """

    name = "python"

    def version(self) -> str:
        return f"python {platform.python_version()} threads + urllib3 {urllib3.__version__}"

    def run(self, url: str, request: BenchRequest, connections: int, duration: int, timeout: float) -> LoadResult:
        parts = urlsplit(url)
        body = request.body.encode()
        deadline = time.perf_counter() + duration
        latencies: list[list[float]] = [[] for _ in range(connections)]
        errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0, "rpc": 0}
        answered = [0] * connections
        lock = threading.Lock()

        def worker(index: int) -> None:
            pool = urllib3.HTTPConnectionPool(
                parts.hostname or "127.0.0.1", parts.port, maxsize=1, retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout)
            )
            own = latencies[index]
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = pool.urlopen("POST", parts.path, body=body, headers=request.headers, retries=False)
                except urllib3.exceptions.TimeoutError:
                    with lock:
                        errors["timeout"] += 1
                    continue
                except (urllib3.exceptions.NewConnectionError, ConnectionError):
                    with lock:
                        errors["connect"] += 1
                    time.sleep(0.01)
                    continue
                except urllib3.exceptions.HTTPError:
                    with lock:
                        errors["read"] += 1
                    continue
                own.append(time.perf_counter() - started)
                answered[index] += 1
                problem = request.check(response.status, response.data)
                if problem:
                    with lock:
                        errors["status" if response.status != 200 else "rpc"] += 1
            pool.close()

        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        elapsed = time.perf_counter() - started
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
        everything = sorted(value for own in latencies for value in own)

        def pct(fraction: float) -> float | None:
            if not everything:
                return None
            return round(everything[min(len(everything) - 1, int(fraction * len(everything)))] * 1000, 3)

        return LoadResult(
            generator=self.name,
            connections=connections,
            duration_s=elapsed,
            requests=sum(answered),
            errors=errors,
            p50_ms=pct(0.50),
            p90_ms=pct(0.90),
            p99_ms=pct(0.99),
            max_ms=round(everything[-1] * 1000, 3) if everything else None,
            client_cpu_s=(usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime),
        )


def established_local_ports(remote_port: int) -> set[int]:
    """Local ports of the established IPv4 TCP connections to 127.0.0.1:remote_port."""
    ports: set[int] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and int(remote.rsplit(":", 1)[1], 16) == remote_port:
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


class ConnectionSampler(threading.Thread):
    """Samples which connections to a port exist, to count how many distinct ones a run used.

    Sampling every 50 ms misses connections that live shorter than that, so the count is a floor.
    """

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.seen: set[int] = set()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            self.seen |= established_local_ports(self.port)

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return len(self.seen)


def system_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])
    return total - values[3] - (values[4] if len(values) > 4 else 0), total


def wait_for_quiet(args: argparse.Namespace) -> float:
    """Wait until the machine is mostly idle (another job's load skews every figure); return the wait."""
    if args.quiet_threshold >= 1:
        return 0.0
    started = time.monotonic()
    while True:
        busy_before, total_before = system_ticks()
        time.sleep(1.0)
        busy_after, total_after = system_ticks()
        busy = (busy_after - busy_before) / max(1, total_after - total_before)
        waited = time.monotonic() - started
        if busy <= args.quiet_threshold:
            return round(waited, 1)
        if waited >= args.quiet_max_wait:
            log(f"  the machine is still {busy:.0%} busy with other work after {waited:.0f} s; measuring anyway")
            return round(waited, 1)


LOG_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
LOG_NUMBERS = re.compile(r"(?<![A-Za-z])\d+")


def log_problems(log_path: Path, offset: int) -> dict[str, int]:
    """WARNING and ERROR lines the gateway logged past ``offset``, counted by message (numbers masked)."""
    counts: dict[str, int] = {}
    try:
        with log_path.open("rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode(errors="replace")
    except OSError:
        return counts
    for line in text.splitlines():
        line = LOG_TIMESTAMP.sub("", line)
        if line.startswith(("WARNING ", "ERROR ", "CRITICAL ")) or line.startswith("Traceback"):
            kind = LOG_NUMBERS.sub("N", line)[:160]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def log_size(process: ManagedProcess | None) -> int:
    try:
        return process.log_path.stat().st_size if process is not None else 0
    except OSError:
        return 0


def measure(generator: Any, servers: Servers, url: str, request: BenchRequest, args: argparse.Namespace, connections: int) -> LoadResult:
    """A warm-up run (discarded), then the measured run with the CPU time of every process."""
    quiet_wait = wait_for_quiet(args)
    if args.warmup > 0:
        generator.run(url, request, connections, args.warmup, args.timeout)
    processes = {"demo": servers.demo, "gateway": servers.gateway}
    before = {name: proc.cpu_ticks() for name, proc in processes.items() if proc is not None}
    busy_before = system_ticks()[0]
    log_offset = log_size(servers.gateway)
    sampler = ConnectionSampler(servers.demo_port)
    sampler.start()
    try:
        result = generator.run(url, request, connections, args.duration, args.timeout)
    finally:
        result_connections = sampler.stop()
    busy_after = system_ticks()[0]
    result.demo_connections_seen = result_connections
    if servers.gateway is not None:
        result.gateway_log_problems = log_problems(servers.gateway.log_path, log_offset)
    cpu = {name: (processes[name].cpu_ticks() - ticks) / CLOCK_TICKS for name, ticks in before.items()}  # type: ignore[union-attr]
    cpu["client"] = result.client_cpu_s
    cpu["other"] = max(0.0, (busy_after - busy_before) / CLOCK_TICKS - sum(cpu.values()))
    result.cpu_s = {name: round(seconds, 2) for name, seconds in cpu.items()}
    result.quiet_wait_s = quiet_wait
    return result


# --------------------------------------------------------------------------------------------
# Long-lived streams through the gateway


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


def code_info() -> str:
    """The commit benchmarked, and whether the working tree differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_DIR, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BENCH_CODE_LABEL", "unknown (not a git checkout)")
    return f"{commit}{' with uncommitted changes' if changed else ''}"


def machine_info(generator: Any) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("django", "granian", "mcp", "uvicorn", "urllib3"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "?"
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "code": code_info(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "cpu_cores": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "load_generator": generator.version(),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


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
        print("## Direct vs through the gateway")
        rows = []
        for row in results["throughput"]:
            direct, gateway = row["direct"], row["gateway"]
            ratio = gateway["rps"] / direct["rps"] if direct["rps"] else 0.0
            for label, r in (("direct", direct), ("gateway", gateway)):
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
                        per_request_ms(r, "gateway") if label == "gateway" else "-",
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
                "gateway/direct req/s", "gateway CPU ms/req", "demo CPU ms/req", "client CPU ms/req",
                "other CPU s", "connections to demo seen", "gateway log warnings",
            ],
            rows,
        )  # fmt: skip
    problems: dict[str, int] = {}
    for figures in [row[label] for row in results["throughput"] for label in ("direct", "gateway")] + [
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


def choose_generator(args: argparse.Namespace, workdir: Path) -> Any:
    wrk = shutil.which("wrk")
    if args.generator == "wrk" and not wrk:
        sys.exit("wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)")
    if args.generator in ("auto", "wrk") and wrk:
        return WrkGenerator(wrk, args.wrk_threads, workdir)
    print(
        "note: wrk not found, using the Python load generator; it competes with the servers for CPU "
        "(install wrk: apt-get install -y wrk)",
        file=sys.stderr,
    )
    return PythonGenerator()


def verify(url: str, request: BenchRequest) -> None:
    response = urllib3.request("POST", url, body=request.body, headers=request.headers, retries=False, timeout=10)
    problem = request.check(response.status, response.data)
    if problem:
        raise RuntimeError(f"{request.title} at {url} does not succeed: {problem}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median_run(runs: list[LoadResult]) -> dict[str, Any]:
    """The run with the median req/s (the middle one of an odd number), with every run's req/s."""
    chosen = sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]
    figures = chosen.to_dict()
    figures["runs_rps"] = [round(r.rps, 1) for r in runs]
    if len(runs) > 1:
        figures["runs"] = [r.to_dict() for r in runs]
    return figures


def run_throughput(generator: Any, servers: Servers, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    plan = [(key, connections) for connections in args.connection_counts for key in args.request_keys]
    if args.latency_connections > 0 and args.latency_connections not in args.connection_counts:
        plan.append(("add", args.latency_connections))
    for key, connections in plan:
        request = REQUESTS[key]
        runs: dict[str, list[LoadResult]] = {"direct": [], "gateway": []}
        # Direct and gateway runs alternate, so a burst of load from elsewhere hits both alike.
        for repeat in range(args.repeat):
            for label, url in (("direct", servers.demo_url), ("gateway", servers.gateway_url)):
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
    for key in args.request_keys:
        verify(servers.demo_url, REQUESTS[key])
        verify(servers.gateway_url, REQUESTS[key])
    log("both answer every request with a JSON-RPC result")
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


ServersT = TypeVar("ServersT", bound="Servers")
ResultT = TypeVar("ResultT")


class Interrupted(Exception):
    """Ctrl+C or SIGTERM arrived while a benchmark ran; everything it started is stopped."""


def run_in_workdir(prefix: str, make_servers: Callable[[Path], ServersT], body: Callable[[ServersT, Path], ResultT], *, keep: bool) -> ResultT:
    """Run ``body`` with servers in a fresh temporary folder; whatever happens (also Ctrl+C or
    SIGTERM, raised as ``Interrupted``), stop every server and remove the folder (``keep``:
    leave it, with the logs)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    servers = make_servers(workdir)

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return body(servers, workdir)
    except KeyboardInterrupt:
        log("interrupted")
        raise Interrupted from None
    finally:
        servers.stop()
        if keep:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def write_json(path: Path | None, results: Any) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        log(f"figures written to {path}")


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

"""What the benchmarks share: MCP benchmark requests, server processes, load generators
(wrk, or a Python thread pool), measurement of req/s, latency and CPU per request, and the
scaffolding that stops everything it started (also on Ctrl+C or SIGTERM).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
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
        self.floor: ManagedProcess | None = None
        self.floor_port = 0
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
            ["add_route", "/mcp/demo", self.demo_url, "--name", "demo", "--open"],
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

    @property
    def floor_url(self) -> str:
        return f"http://127.0.0.1:{self.floor_port}/mcp/demo"

    def start_floor(self, threads: int) -> None:
        """The bare Django proxy (floor_proxy.py) under the gateway's server and thread count."""
        self.stop_floor()
        self.floor_port = free_port()
        granian = shutil.which("granian") or str(Path(sys.executable).with_name("granian"))
        self.floor = ManagedProcess(
            f"floor proxy ({threads} threads)",
            [
                granian, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(self.floor_port),
                "--workers", "1", "--blocking-threads", str(threads), "--log-level", "warning",
                "--working-dir", str(PROJECT_DIR / "bench"), "floor_proxy:application",
            ],
            {**os.environ, "FLOOR_UPSTREAM": self.demo_url, "PYTHONUNBUFFERED": "1"},
            self.workdir / f"floor-{threads}threads.log",
        )  # fmt: skip
        wait_until_answering(self.floor_url, self.floor)

    def stop_floor(self) -> None:
        if self.floor is not None:
            self.floor.stop()
            self.floor = None

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None

    def stop(self) -> None:
        self.stop_floor()
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
    processes = {"demo": servers.demo, "gateway": servers.gateway, "floor": servers.floor}
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




def add_measurement_arguments(parser: argparse.ArgumentParser, *, duration: int = 10, warmup: int = 3) -> None:
    """The options ``measure()`` reads, and those every benchmark's ``main`` shares."""
    parser.add_argument("--duration", type=int, default=duration, help=f"measured seconds per run (default {duration})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"warm-up seconds before each run (default {warmup})")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every case; median reported (default 3)")
    parser.add_argument("--timeout", type=int, default=5, help="client timeout per request, seconds (default 5)")
    parser.add_argument(
        "--quiet-threshold", type=float, default=0.2,
        help="before each run, wait until the machine is at most this busy (0..1; 1 disables; default 0.2)",
    )  # fmt: skip
    parser.add_argument("--quiet-max-wait", type=float, default=10.0, help="longest wait for a quiet machine (s, default 10)")
    parser.add_argument("--nice", type=int, default=0, help="scheduling priority for everything started (negative: root only)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) and print its path")


def run_benchmark(
    args: argparse.Namespace,
    prefix: str,
    make_servers: Callable[[Path], ServersT],
    body: Callable[[argparse.Namespace, ServersT, Path], ResultT],
    report: Callable[[ResultT], None],
) -> int:
    """A benchmark's ``main``: priority, servers in a temporary folder, the report, the JSON file;
    130 when interrupted."""
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by the servers and wrk
    try:
        results = run_in_workdir(prefix, make_servers, lambda servers, workdir: body(args, servers, workdir), keep=args.keep)
    except Interrupted:
        return 130
    report(results)
    write_json(args.json, results)
    return 0

"""Two checks of the gateway the throughput benchmarks do not make: memory over a long run, and
how soon the first event of a stream reaches the client.

    .venv/bin/python bench/memory_and_first_event.py [--requests 200000] [--samples 200]

1. **Memory**: the gateway (embedded shape, 256 threads) serves ``tools/call add`` from ``wrk``
   (16 connections) in rounds until at least ``--requests`` answers were counted; the resident
   memory (RSS) of the gateway's worker process is read from /proc after a warm-up of 20,000
   requests and after every round. Growth after the warm-up is what a leak would show.
2. **First event**: a 2025-era session is opened directly with the demo server and one through
   the gateway; ``tools/call countdown`` (steps=2, delay 0.05 s, with a progress token) answers
   with an event stream whose first event is a progress notification. For ``--samples`` calls,
   alternately direct and through the gateway, the time from sending the request to receiving
   the first ``data:`` line is measured; the medians and p99s are compared.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: its folder is on sys.path
    BASE_HEADERS,
    LEGACY_VERSION,
    REQUESTS,
    Interrupted,
    Servers,
    choose_generator,
    log,
    machine_info,
    run_in_workdir,
    verify,
    write_json,
)

WARMUP_REQUESTS = 20_000
ROUND_SECONDS = 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def measure_memory(args: argparse.Namespace, servers: Servers, generator: Any) -> dict[str, Any]:
    assert servers.gateway is not None
    worker = servers.gateway.leaf_pid()
    request = REQUESTS["add"]
    served, samples = 0, [{"requests": 0, "rss_kib": rss_kib(worker)}]
    while served < WARMUP_REQUESTS + args.requests:
        result = generator.run(servers.gateway_url, request, 16, ROUND_SECONDS, 5)
        served += result.ok
        samples.append({"requests": served, "rss_kib": rss_kib(worker), "errors": result.error_total, "rps": round(result.rps)})
        log(f"  {served} requests, RSS {samples[-1]['rss_kib'] / 1024:.1f} MiB, {result.rps:.0f} req/s, errors {result.error_total}")
    after_warmup = next(s for s in samples if s["requests"] >= WARMUP_REQUESTS)
    return {
        "worker_pid": worker,
        "samples": samples,
        "rss_after_warmup_kib": after_warmup["rss_kib"],
        "rss_at_end_kib": samples[-1]["rss_kib"],
        "requests_after_warmup": samples[-1]["requests"] - after_warmup["requests"],
    }


class EventTimer:
    """A raw HTTP/1.1 keep-alive connection timing the first SSE data line of each answer."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.path
        self.host = parts.netloc
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.session_id = ""

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        headers = {**BASE_HEADERS, "Host": self.host, "Content-Length": str(len(body)), "MCP-Protocol-Version": LEGACY_VERSION}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        head = f"POST {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.sock.sendall(head.encode() + body)

    def read_head(self) -> dict[str, str]:
        status = self.reader.readline()
        if b" 200 " not in status and b" 202 " not in status:
            raise RuntimeError(f"unexpected answer: {status!r}")
        headers = {}
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    def read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return self.reader.read(int(headers["content-length"]))
        body = b""
        while True:  # chunked
            size = int(self.reader.readline().strip(), 16)
            if size == 0:
                self.reader.readline()
                return body
            body += self.reader.read(size)
            self.reader.readline()

    def initialize(self) -> None:
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
        headers = self.read_head()
        self.session_id = headers["mcp-session-id"]
        self.read_body(headers)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.read_body(self.read_head())

    def first_event_ms(self, call_id: int) -> float:
        """Send one countdown call; return the milliseconds until its first data: line, then
        read the rest of the answer so the connection can carry the next one."""
        self.send({"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": {
            "name": "countdown", "arguments": {"steps": 2, "delay_seconds": 0.05}, "_meta": {"progressToken": call_id}}})
        started = time.perf_counter()
        headers = self.read_head()
        if "chunked" not in headers.get("transfer-encoding", ""):
            raise RuntimeError(f"not a streamed answer: {headers}")
        first = None
        while True:
            size = int(self.reader.readline().strip(), 16)
            if size == 0:
                self.reader.readline()
                break
            chunk = self.reader.read(size)
            self.reader.readline()
            if first is None and b"data:" in chunk:
                first = (time.perf_counter() - started) * 1000
        if first is None:
            raise RuntimeError("no event in the answer")
        return first


def measure_first_event(args: argparse.Namespace, servers: Servers) -> dict[str, Any]:
    timers = {"direct": EventTimer(servers.demo_url), "gateway": EventTimer(servers.gateway_url)}
    for timer in timers.values():
        timer.initialize()
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    for index in range(args.samples):
        for label, timer in timers.items():
            times[label].append(timer.first_event_ms(index + 1))
    summary = {}
    for label, values in times.items():
        values.sort()
        summary[label] = {"p50_ms": round(statistics.median(values), 3), "p99_ms": round(values[int(len(values) * 0.99) - 1], 3)}
    summary["p50_difference_ms"] = round(summary["gateway"]["p50_ms"] - summary["direct"]["p50_ms"], 3)
    return summary


def run(args: argparse.Namespace, servers: Servers, workdir: Path) -> dict[str, Any]:
    generator = choose_generator(args, workdir)
    results: dict[str, Any] = {"machine": machine_info(generator), "settings": vars(args) | {"json": str(args.json)}}
    servers.start_demo()
    servers.start_gateway(256)
    verify(servers.gateway_url, REQUESTS["add"])
    log("first SSE event: direct vs through the gateway")
    results["first_event"] = measure_first_event(args, servers)
    log(f"  {results['first_event']}")
    log(f"memory: until {args.requests} requests after a {WARMUP_REQUESTS}-request warm-up")
    results["memory"] = measure_memory(args, servers, generator)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gateway memory over a long run, and first-event latency of streams.")
    parser.add_argument("--requests", type=int, default=200_000, help="requests after the warm-up (default 200000)")
    parser.add_argument("--samples", type=int, default=200, help="stream calls per side for the first-event timing")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    try:
        results = run_in_workdir("gateway-memory-bench-", Servers, lambda s, w: run(args, s, w), keep=args.keep)
    except Interrupted:
        return 130
    memory, first = results["memory"], results["first_event"]
    growth = (memory["rss_at_end_kib"] - memory["rss_after_warmup_kib"]) / 1024
    print(f"first SSE event p50: direct {first['direct']['p50_ms']} ms, gateway {first['gateway']['p50_ms']} ms "
          f"(+{first['p50_difference_ms']} ms); p99 {first['direct']['p99_ms']} / {first['gateway']['p99_ms']} ms")
    print(f"RSS after warm-up {memory['rss_after_warmup_kib'] / 1024:.1f} MiB, after {memory['requests_after_warmup']} more "
          f"requests {memory['rss_at_end_kib'] / 1024:.1f} MiB ({growth:+.1f} MiB)")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

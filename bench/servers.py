"""Which WSGI server runs the gateway best: granian (what ``manage.py serve`` uses) against
gunicorn's threaded worker, same gateway, same threads, same load.

    .venv/bin/python bench/servers.py --gunicorn /path/to/gunicorn [--threads 64]

gunicorn is not one of the project's dependencies: pass the path of a gunicorn installed in an
environment that also has the project's requirements (e.g. a scratch virtualenv). The embedded
shape as ``serve`` sets it up (SQLite, in-process state, background jobs on a thread of the
process), one worker with ``--threads`` threads in both; ``tools/call add`` from ``wrk`` at 16
connections, the servers alternating for ``--repeat`` rounds, the median run reported.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: its folder is on sys.path
    LoadResult,
    ManagedProcess,
    PROJECT_DIR,
    REQUESTS,
    Servers,
    WrkGenerator,
    add_measurement_arguments,
    fmt,
    free_port,
    log,
    machine_info,
    measure,
    median_run,
    run_benchmark,
    verify,
    wait_until_answering,
)


class ServerChoice(Servers):
    """harness.py's demo server and gateway, the gateway under granian or gunicorn."""

    gunicorn = ""

    def start_gunicorn(self, threads: int) -> None:
        self.stop_gateway()
        self.prepare_gateway_database()
        self.gateway_port = free_port()
        env = {**self.gateway_env(), "GATEWAY_WORKER_IN_PROCESS": "1"}  # as `serve` does in this shape
        self.gateway = ManagedProcess(
            f"gateway under gunicorn gthread ({threads} threads)",
            [
                self.gunicorn, "--worker-class", "gthread", "--workers", "1", "--threads", str(threads),
                "--bind", f"127.0.0.1:{self.gateway_port}", "--chdir", str(PROJECT_DIR), "--log-level", "warning",
                "gateway_project.wsgi:application",
            ],
            env,
            self.workdir / "gateway-gunicorn.log",
        )  # fmt: skip
        wait_until_answering(f"http://127.0.0.1:{self.gateway_port}/healthz", self.gateway)


def run(args: argparse.Namespace, servers: ServerChoice, workdir: Path) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    generator = WrkGenerator(wrk, 2, workdir)
    servers.gunicorn = args.gunicorn
    request = REQUESTS["add"]
    results: dict[str, Any] = {"machine": machine_info(generator), "threads": args.threads, "servers": {}}
    servers.start_demo()
    runs: dict[str, list[LoadResult]] = {"granian": [], "gunicorn gthread": []}
    for round_index in range(args.repeat):
        for name in runs:
            if name == "granian":
                servers.start_gateway(args.threads)
            else:
                servers.start_gunicorn(args.threads)
            verify(servers.gateway_url, request)
            log(f"round {round_index + 1}/{args.repeat}: {name}")
            result = measure(generator, servers, servers.gateway_url, request, args, 16)
            runs[name].append(result)
            log(f"  {result.rps:.0f} req/s, p50 {fmt(result.p50_ms)} ms, p99 {fmt(result.p99_ms)} ms, errors {result.error_total}")
    for name, name_runs in runs.items():
        figures = median_run(name_runs)
        figures["gateway_cpu_ms_per_req_runs"] = [r.to_dict()["cpu_ms_per_ok_request"].get("gateway") for r in name_runs]
        results["servers"][name] = figures
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The gateway under granian vs gunicorn gthread.")
    add_measurement_arguments(parser, duration=8, warmup=2)
    parser.add_argument("--gunicorn", required=True, help="path of a gunicorn binary (not a project dependency)")
    parser.add_argument("--threads", type=int, default=64, help="gateway threads under either server (default 64)")
    return parser.parse_args(argv)


def report(results: dict[str, Any]) -> None:
    print("| server | req/s | all runs | p50 ms | p99 ms | errors | gateway CPU ms/req (runs) |")
    print("|---|---:|---|---:|---:|---:|---|")
    for name, r in results["servers"].items():
        print(
            f"| {name} | {r['rps']:.0f} | {' / '.join(f'{v:.0f}' for v in r['runs_rps'])} | {fmt(r['p50_ms'])} | "
            f"{fmt(r['p99_ms'])} | {r['error_total']} | {' / '.join(fmt(v, 3) for v in r['gateway_cpu_ms_per_req_runs'])} |"
        )


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(parse_args(argv), "gateway-server-bench-", ServerChoice, run, report)


if __name__ == "__main__":
    sys.exit(main())

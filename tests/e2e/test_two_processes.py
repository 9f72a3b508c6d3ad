"""Two gateway processes sharing PostgreSQL/SQLite and Redis behave as one gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from tests.live_servers import PROJECT_DIR, LiveGateway, free_port, wait_until_answering
from tests.upstream_server import UpstreamServer

REDIS_URL = "redis://127.0.0.1:6379/0"
INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


@pytest.fixture(scope="module")
def gateway_pair(tmp_path_factory: pytest.TempPathFactory, demo_server_port: int) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    workdir = Path(tmp_path_factory.mktemp("pair"))
    first = LiveGateway(workdir=workdir, demo_port=demo_server_port, redis_url=REDIS_URL).start()
    second = LiveGateway(workdir=workdir, demo_port=demo_server_port, redis_url=REDIS_URL, sibling=first).start()
    yield first, second
    second.stop()
    first.stop()


def add_route_and_wait(gateways: tuple[LiveGateway, ...], urls: list[str], kind: str = "mcp") -> str:
    path = f"/pair/{uuid.uuid4().hex[:8]}"
    gateways[0].manage("add_route", path, *urls, "--kind", kind, "--open")
    for gateway in gateways:
        deadline = time.monotonic() + 10
        while urllib3.request("GET", f"{gateway.url}{path}/echo", retries=False).status == 404:
            assert time.monotonic() < deadline, f"{gateway.url} never picked up {path}"
            time.sleep(0.05)
    return path


def echo_requests(server: UpstreamServer) -> int:
    """Requests the test sent (the background health checker probes the base path too)."""
    return sum(1 for request in server.requests if str(request["path"]).endswith("/echo"))


def post(url: str, message: dict[str, object], session_id: str | None = None) -> urllib3.BaseHTTPResponse:
    headers = {"Content-Type": "application/json"}
    if session_id:
        headers["Mcp-Session-Id"] = session_id
    return urllib3.request("POST", url, body=json.dumps(message).encode(), headers=headers, retries=False)


def test_session_stays_on_its_target_whichever_process_serves_it(gateway_pair: tuple[LiveGateway, LiveGateway]) -> None:
    """initialize through one process; every later request, through either, reaches the same target."""
    servers = [UpstreamServer().start(), UpstreamServer().start()]
    try:
        path = add_route_and_wait(gateway_pair, [server.url for server in servers])
        for server in servers:
            server.requests.clear()
        session_id = post(f"{gateway_pair[0].url}{path}/echo", INITIALIZE).headers["Mcp-Session-Id"]
        owner = next(s for s in servers if session_id.startswith(f"session-{s.server_address[1]}-"))
        for round_number in range(10):
            gateway = gateway_pair[round_number % 2]
            assert post(f"{gateway.url}{path}/echo", TOOLS_LIST, session_id).status == 200
        assert echo_requests(owner) == 11
        assert sum(echo_requests(s) for s in servers) == 11
        ended = urllib3.request("DELETE", f"{gateway_pair[1].url}{path}/echo", headers={"Mcp-Session-Id": session_id})
        assert ended.status == 200
        assert post(f"{gateway_pair[0].url}{path}/echo", TOOLS_LIST, session_id).status == 404
    finally:
        for server in servers:
            server.stop()


def test_round_robin_is_even_across_two_processes(gateway_pair: tuple[LiveGateway, LiveGateway]) -> None:
    servers = [UpstreamServer().start() for _ in range(3)]
    try:
        path = add_route_and_wait(gateway_pair, [server.url for server in servers], kind="http")
        for server in servers:
            server.requests.clear()
        for number in range(60):
            assert urllib3.request("GET", f"{gateway_pair[number % 2].url}{path}/echo").status == 200
        assert [echo_requests(server) for server in servers] == [20, 20, 20]
    finally:
        for server in servers:
            server.stop()


def start_killable_upstream() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.upstream_server", str(port)], cwd=PROJECT_DIR)
    wait_until_answering(f"http://127.0.0.1:{port}/echo", process)
    return process, f"http://127.0.0.1:{port}"


def test_upstream_dying_mid_load_is_invisible_to_clients(gateway_pair: tuple[LiveGateway, LiveGateway]) -> None:
    """Under concurrent load one of two upstreams is killed; every client request still succeeds."""
    doomed, doomed_url = start_killable_upstream()
    survivor, survivor_url = start_killable_upstream()
    try:
        path = add_route_and_wait(gateway_pair, [doomed_url, survivor_url], kind="http")
        statuses: list[int] = []
        lock = threading.Lock()

        def client_loop(gateway: LiveGateway) -> None:
            http = urllib3.PoolManager(retries=False, timeout=10)
            for _ in range(60):
                status = http.request("GET", f"{gateway.url}{path}/echo").status
                with lock:
                    statuses.append(status)

        clients = [threading.Thread(target=client_loop, args=(gateway_pair[n % 2],)) for n in range(6)]
        for client in clients:
            client.start()
        while len(statuses) < 60:
            time.sleep(0.01)
        doomed.kill()
        for client in clients:
            client.join(timeout=60)
        assert len(statuses) == 360
        failures = [line for gateway in gateway_pair for line in gateway.access_log().splitlines() if f'path="{path}/echo"' in line and "status=200" not in line]
        assert set(statuses) == {200}, failures
        retried = [
            line
            for gateway in gateway_pair
            for line in gateway.access_log().splitlines()
            if f'path="{path}/echo"' in line and "attempts=2" in line
        ]
        assert retried, "the dead target was never tried: the test did not test failover"
    finally:
        doomed.kill()
        survivor.kill()


@pytest.mark.parametrize("algorithm", ["sliding_window", "token_bucket"])
def test_rate_limit_is_exact_across_two_processes(gateway_pair: tuple[LiveGateway, LiveGateway], algorithm: str) -> None:
    """N requests spread over both processes against a limit of L: exactly L are admitted."""
    limit, requests = 25, 60
    server = UpstreamServer().start()
    try:
        path = add_route_and_wait(gateway_pair, [server.url], kind="http")
        route_name = path.strip("/").replace("/", "-")
        fields = (
            f"limit={limit}, window_seconds=3600"
            if algorithm == "sliding_window"
            else f"rate_per_second=0.0001, burst={limit}"
        )
        gateway_pair[0].manage(
            "shell",
            "--no-imports",
            "-c",
            "from security.models import RateLimitPolicy; from routing.models import Route; "
            f"p = RateLimitPolicy.objects.create(name='{route_name}-{algorithm}', algorithm='{algorithm}', scope='route', {fields}); "
            f"p.routes.add(Route.objects.get(name='{route_name}'))",
        )
        # Each process shows the policy's headers once it applies it; that first answer counts.
        for gateway in gateway_pair:
            deadline = time.monotonic() + 10
            while urllib3.request("GET", f"{gateway.url}{path}/echo").headers.get("RateLimit-Limit") != str(limit):
                assert time.monotonic() < deadline, f"{gateway.url} never applied the policy"
                time.sleep(0.05)
        statuses: list[int] = []
        lock = threading.Lock()

        def fire(gateway: LiveGateway, count: int) -> None:
            http = urllib3.PoolManager(retries=False, timeout=10)
            for _ in range(count):
                status = http.request("GET", f"{gateway.url}{path}/echo").status
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=fire, args=(gateway_pair[n % 2], requests // 6)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(statuses) == requests
        assert statuses.count(200) == limit - 2  # two were spent showing the policy applied
        assert statuses.count(429) == requests - (limit - 2)
    finally:
        server.stop()

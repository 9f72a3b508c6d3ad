"""Fixtures shared by every test: isolated state, real upstreams, real server processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from gateway_project.state import get_state_store, reset_state_store
from performance.pools import close_all_pools
from routing.balancing import latencies
from routing.config_version import mark_local_snapshot_stale
from routing.retries import retry_budget
from security.tool_schemas import tool_schemas
from gateway_project.state.degraded import reset_log_throttle
from tests.gateway_project.conftest import CLOSED_REDIS_URL, Backend
from tests.live_servers import LiveGateway, free_port, start_demo_server
from tests.upstream_server import UpstreamServer


@pytest.fixture(autouse=True)
def isolated_state() -> Iterator[None]:
    """Each test gets its own state-store key space and a snapshot rebuilt from its own data."""
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    latencies.clear()
    retry_budget.clear()
    # Learned per route id, and ids are reused once a test's rows are rolled back.
    tool_schemas.clear()
    # No metrics flusher thread in the test process: tests that need a flush call it.
    with override_settings(GATEWAY_STATE_PREFIX=prefix, GATEWAY_METRICS_BACKGROUND_FLUSH=False):
        reset_state_store()
        mark_local_snapshot_stale()
        yield
    mark_local_snapshot_stale()
    reset_state_store()
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    """A real HTTP upstream server on a free port (see tests/upstream_server.py)."""
    server = UpstreamServer().start()
    yield server
    close_all_pools()
    server.stop()


@pytest.fixture
def make_route(db: Any) -> Callable[..., Any]:
    """Create a service with targets and a route to it in one call."""
    from routing.models import Route, Service, Target

    def make(
        path: str,
        target_urls: list[str] | str,
        *,
        name: str | None = None,
        kind: str = "http",
        **route_fields: Any,
    ) -> Route:
        urls = [target_urls] if isinstance(target_urls, str) else target_urls
        name = name or f"r{uuid.uuid4().hex[:8]}"
        service = Service.objects.create(name=name, kind=kind)
        for url in urls:
            Target.objects.create(service=service, url=url)
        # Open unless the test says otherwise: only the authn tests are about credentials.
        route_fields.setdefault("allow_anonymous", True)
        route_fields.setdefault("tool_permissions", not route_fields["allow_anonymous"])
        return Route.objects.create(name=name, path=path, service=service, **route_fields)

    return make


@pytest.fixture
def state_store() -> Any:
    return get_state_store()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The test runs once on memory (fake clock) and once on real Redis (real, short TTLs)."""
    chosen = Backend(request.param)
    yield chosen
    chosen.cleanup()


@pytest.fixture
def store(backend: Backend) -> Any:
    """A store on the current backend with its own random key prefix."""
    return backend.make_store()


@pytest.fixture
def state_store_down() -> Iterator[None]:
    """REDIS_URL points at a closed port: every state-store call fails as in a Redis outage."""
    reset_log_throttle()
    with override_settings(REDIS_URL=CLOSED_REDIS_URL):
        reset_state_store()
        yield
    reset_state_store()


@pytest.fixture(scope="session")
def demo_server_port() -> Iterator[int]:
    port = free_port()
    process = start_demo_server(port)
    yield port
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def live_gateway(tmp_path_factory: pytest.TempPathFactory, demo_server_port: int) -> Iterator[LiveGateway]:
    """A real gateway process routing /mcp/demo to a real demo MCP server."""
    gateway = LiveGateway(workdir=Path(tmp_path_factory.mktemp("gateway")), demo_port=demo_server_port).start()
    yield gateway
    gateway.stop()

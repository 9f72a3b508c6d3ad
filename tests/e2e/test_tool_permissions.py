"""Tool permissions end to end: two API keys with different grants list tools through a real
gateway process with the official SDK (both protocol eras) and see two different lists, and a
tool that is not granted cannot be called either."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from authn.authorization import TOOL_NOT_ALLOWED
from authn.errors import JSONRPC_FORBIDDEN
from tests.e2e.mcp_http import MODERN_VERSION, modern_headers, modern_message, post_jsonrpc, tool_names

CLIENT_TIMEOUT_SECONDS = 30
PICKUP_TIMEOUT_SECONDS = 10
ALL_DEMO_TOOLS = {"echo", "add", "countdown", "fail"}


@dataclass(frozen=True)
class GuardedRoute:
    """A route to the demo server that requires a key and checks tool permissions."""

    url: str
    narrow_key: str  # may call add only
    wide_key: str  # may call every tool of the service


@pytest.fixture(scope="module")
def guarded(live_gateway: Any) -> GuardedRoute:
    name = f"guarded{uuid.uuid4().hex[:8]}"
    demo = f"http://127.0.0.1:{live_gateway.demo_port}/mcp"
    live_gateway.manage("add_route", f"/mcp/{name}", demo, "--name", name)  # credential required
    route = GuardedRoute(
        url=f"{live_gateway.url}/mcp/{name}",
        narrow_key=create_api_key(live_gateway, "narrow", f"tool:{name}:add"),
        wide_key=create_api_key(live_gateway, "wide", f"tool:{name}:*"),
    )
    for key in (route.narrow_key, route.wide_key):
        wait_until_listing_works(route.url, key)
    return route


def create_api_key(live_gateway: Any, name: str, permission: str) -> str:
    output = live_gateway.manage("create_api_key", "--name", name, "--permission", permission).stdout
    return next(line.strip() for line in output.splitlines() if line.strip().startswith("mgw_"))


def wait_until_listing_works(url: str, key: str) -> None:
    """The gateway picks up the new route and key on its next config poll."""
    deadline = time.monotonic() + PICKUP_TIMEOUT_SECONDS
    while post_jsonrpc(url, modern_message(1, "tools/list"), bearer(key) | modern_headers("tools/list")).status != 200:
        assert time.monotonic() < deadline, f"the gateway never accepted the key on {url}"
        time.sleep(0.05)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(params=["legacy", MODERN_VERSION])
def mode(request: pytest.FixtureRequest) -> str:
    """The 2025 session era (initialize handshake, SSE answers) and the 2026-07-28 stateless era."""
    return request.param


def run_client(url: str, key: str, mode: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Open an SDK client on ``url`` that sends ``key``, run ``body`` with it, return its result."""

    async def main() -> Any:
        with anyio.fail_after(CLIENT_TIMEOUT_SECONDS):
            async with create_mcp_http_client(headers=bearer(key)) as http:
                async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                    return await body(client)

    return anyio.run(main)


async def listed_tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


def test_two_keys_with_different_grants_see_different_tool_lists(guarded: GuardedRoute, mode: str) -> None:
    narrow = run_client(guarded.url, guarded.narrow_key, mode, listed_tool_names)
    wide = run_client(guarded.url, guarded.wide_key, mode, listed_tool_names)

    assert narrow == {"add"}
    assert wide == ALL_DEMO_TOOLS


def test_the_granted_tool_can_be_called(guarded: GuardedRoute, mode: str) -> None:
    result = run_client(guarded.url, guarded.narrow_key, mode, lambda client: client.call_tool("add", {"a": 1, "b": 2}))

    assert result.is_error is False
    assert result.structured_content == {"result": 3.0}


def test_a_tool_that_is_not_granted_cannot_be_called(guarded: GuardedRoute, mode: str) -> None:
    async def call_echo(client: Client) -> tuple[int, str] | None:
        try:
            await client.call_tool("echo", {"text": "hidden"})
        except MCPError as error:  # the gateway's JSON-RPC error, raised by the SDK
            return error.code, error.error.message
        return None

    outcome = run_client(guarded.url, guarded.narrow_key, mode, call_echo)

    assert outcome == (JSONRPC_FORBIDDEN, TOOL_NOT_ALLOWED.format(name="echo"))


def test_the_refusal_is_a_403_jsonrpc_error_with_the_request_id(guarded: GuardedRoute) -> None:
    call = modern_message(9, "tools/call", {"name": "echo", "arguments": {"text": "hidden"}})

    refused = post_jsonrpc(guarded.url, call, bearer(guarded.narrow_key) | modern_headers("tools/call", name="echo"))

    assert refused.status == 403
    error = refused.json()
    assert error["id"] == 9 and error["error"]["code"] == JSONRPC_FORBIDDEN
    assert error["error"]["message"] == TOOL_NOT_ALLOWED.format(name="echo")


def test_the_wide_key_lists_every_tool_unfiltered(guarded: GuardedRoute) -> None:
    """The raw answer (fast path: no parsing) carries every tool, as the demo server sent it."""
    listing = post_jsonrpc(guarded.url, modern_message(2, "tools/list"), bearer(guarded.wide_key) | modern_headers("tools/list"))

    assert listing.status == 200
    assert tool_names(listing.messages()[0]) == ALL_DEMO_TOOLS

"""The official MCP SDK client, in the 2026-07-28 stateless era, talking to the demo server through a live gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.mcp_http import MODERN_VERSION, count_access_lines, gateway_url, wait_for_access_lines

CLIENT_TIMEOUT_SECONDS = 30


@pytest.fixture(params=["auto", MODERN_VERSION])
def mode(request: pytest.FixtureRequest) -> str:
    """'auto' discovers the era through the gateway; the version pin adopts it without a probe."""
    return request.param


def run_client(url: str, mode: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Open an SDK client on ``url`` in ``mode``, run ``body`` with it, and return what it returns."""

    async def main() -> Any:
        with anyio.fail_after(CLIENT_TIMEOUT_SECONDS):
            async with Client(url, mode=mode) as client:
                return await body(client)

    return anyio.run(main)


def test_modern_client_negotiates_2026_era_and_lists_demo_tools(live_gateway: Any, mode: str) -> None:
    """Both modern modes end up on 2026-07-28 through the gateway and see all demo tools."""

    async def body(client: Client) -> tuple[str, set[str]]:
        listing = await client.list_tools()
        return client.protocol_version, {tool.name for tool in listing.tools}

    version, names = run_client(gateway_url(live_gateway), mode, body)

    assert version == MODERN_VERSION
    assert {"echo", "add", "countdown", "fail"} <= names


def test_auto_mode_discovery_goes_through_the_gateway(live_gateway: Any) -> None:
    """'auto' sends server/discover, which the gateway forwards to the demo route and answers 200."""
    before = count_access_lines(live_gateway, rpc="server/discover", status=200)

    async def body(client: Client) -> str:
        return client.protocol_version

    version = run_client(gateway_url(live_gateway), "auto", body)

    assert version == MODERN_VERSION
    assert len(wait_for_access_lines(live_gateway, before + 1, rpc="server/discover", status=200)) == before + 1


def test_modern_client_calls_add_and_gets_the_sum(live_gateway: Any, mode: str) -> None:
    """tools/call add returns the sum as text and as structured content."""
    result = run_client(gateway_url(live_gateway), mode, lambda client: client.call_tool("add", {"a": 1.5, "b": 2}))

    assert result.is_error is False
    assert result.structured_content == {"result": 3.5}
    assert [block.text for block in result.content] == ["3.5"]


def test_countdown_progress_notifications_all_arrive_before_the_result(live_gateway: Any, mode: str) -> None:
    """Every progress notification of countdown reaches the client before the tool's final result."""
    steps = 4
    events: list[tuple[str, Any]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append(("progress", (progress, total, message)))

    async def body(client: Client) -> None:
        result = await client.call_tool(
            "countdown", {"steps": steps, "delay_seconds": 0.1}, progress_callback=on_progress
        )
        events.append(("result", result))

    run_client(gateway_url(live_gateway), mode, body)

    kinds = [kind for kind, _ in events]
    assert kinds == ["progress"] * steps + ["result"]
    progress = [value for kind, value in events if kind == "progress"]
    assert [p for p, _, _ in progress] == [float(step) for step in range(1, steps + 1)]
    assert all(total == float(steps) for _, total, _ in progress)
    assert progress[0][2] == f"step 1 of {steps}"
    result = events[-1][1]
    assert result.is_error is False
    assert result.content[0].text == f"counted down {steps} steps"


def test_failing_tool_is_a_tool_error_not_a_transport_failure(live_gateway: Any, mode: str) -> None:
    """The fail tool comes back as a normal result with is_error=True, and the session keeps working."""

    async def body(client: Client) -> tuple[Any, Any]:
        failed = await client.call_tool("fail", {"reason": "on purpose"})
        after = await client.call_tool("echo", {"text": "still here"})
        return failed, after

    failed, after = run_client(gateway_url(live_gateway), mode, body)

    assert failed.is_error is True
    assert "fail" in failed.content[0].text
    assert after.is_error is False
    assert after.structured_content == {"result": "still here"}


def test_tools_call_is_recorded_in_access_log_with_demo_route_and_status_200(live_gateway: Any, mode: str) -> None:
    """A tools/call through the gateway leaves one access-log line with route=demo, its target and status=200."""

    async def body(client: Client) -> int:
        await client.list_tools()  # connected and settled: earlier tests' exchanges are logged by now
        before = count_access_lines(live_gateway, rpc="tools/call", status=200)
        await client.call_tool("add", {"a": 2, "b": 3})
        return before

    before = run_client(gateway_url(live_gateway), mode, body)

    lines = wait_for_access_lines(live_gateway, before + 1, rpc="tools/call", status=200)
    assert len(lines) == before + 1
    assert lines[-1].endswith("error=-")


def test_modern_client_reads_demo_resource_and_gets_greet_prompt(live_gateway: Any, mode: str) -> None:
    """resources/read demo://readme and prompts/get greet are answered by the demo server through the gateway."""

    async def body(client: Client) -> tuple[Any, Any]:
        return await client.read_resource("demo://readme"), await client.get_prompt("greet", {"name": "Ada"})

    resource, prompt = run_client(gateway_url(live_gateway), mode, body)

    assert [(str(item.uri), item.text) for item in resource.contents] == [
        ("demo://readme", "This is the MCP gateway's demo server.")
    ]
    assert [message.content.text for message in prompt.messages] == ["Say hello to Ada."]

"""A member that is down leaves the lists instead of failing them, its items are refused with a
reason, and everything comes back with it."""

from __future__ import annotations

import time
from typing import Any

from federation.errors import MEMBER_DOWN
from tests.federation.conftest import McpCaller, connect, member, text_of

WAIT_SECONDS = 10.0


def wait_for_tools(caller: McpCaller, expected: list[str]) -> list[str]:
    deadline = time.monotonic() + WAIT_SECONDS
    while (names := caller.tool_names()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return names


def test_a_member_going_down_leaves_the_list_and_comes_back_with_it(own_member: Any, make_virtual_server: Any, era: str) -> None:
    gamma, delta = own_member("gamma"), own_member("delta")
    caller = connect(make_virtual_server(member(gamma), member(delta)), era)
    everything = caller.tool_names()

    delta.stop()
    while_down = wait_for_tools(caller, [name for name in everything if name.startswith("gamma_")])
    refused = caller.call_tool("delta_echo", {"text": "x"})
    still_served = caller.call_tool("gamma_echo", {"text": "x"})
    delta.start()
    after = wait_for_tools(caller, everything)

    assert while_down == ["gamma_echo", "gamma_search", "gamma_bump", "gamma_countdown"]
    assert refused.status == 502
    assert refused.error["code"] == -32000
    assert refused.error["message"].startswith(MEMBER_DOWN.format(name="delta_echo", member="delta", reason=""))
    assert text_of(still_served) == "gamma:x"
    assert after == everything
    assert text_of(caller.call_tool("delta_echo", {"text": "back"})) == "delta:back"


def test_a_virtual_server_whose_members_are_all_down_still_answers_its_lists(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    server = make_virtual_server(member(gamma))
    gamma.stop()

    caller = connect(server, "modern")

    assert caller.call("tools/list").result["tools"] == []
    assert caller.call("prompts/list").result["prompts"] == []

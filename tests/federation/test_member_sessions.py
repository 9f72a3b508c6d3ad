"""The gateway's own sessions with members: reused across calls and clients, re-established
when a member forgets them, kept per client session for members that need it."""

from __future__ import annotations

import time
from typing import Any

from federation.models import SessionScope
from tests.federation.conftest import connect, member, text_of


def test_calls_from_many_clients_share_one_member_session(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    server = make_virtual_server(member(gamma))
    callers = [connect(server, "legacy"), connect(server, "modern"), connect(server, "legacy")]

    for number, caller in enumerate(callers * 3):
        assert text_of(caller.call_tool("gamma_echo", {"text": str(number)})) == f"gamma:{number}"

    assert len(gamma.calls()["sessions"]) == 1
    assert gamma.calls()["executions"]["echo"] == 9


def test_a_restarted_member_gets_a_new_session_and_runs_the_call_once(own_member: Any, make_virtual_server: Any, era: str) -> None:
    gamma = own_member("gamma")
    caller = connect(make_virtual_server(member(gamma)), era)
    assert text_of(caller.call_tool("gamma_bump", {"call_id": "before"})) == "gamma:1"

    gamma.restart()
    after = caller.call_tool("gamma_bump", {"call_id": "after"})

    assert text_of(after) == "gamma:1"  # the first execution in the new process
    assert gamma.executions_logged() == ["before", "after"]  # each call ran exactly once
    assert len(gamma.calls()["sessions"]) == 1


def test_a_stateful_member_gets_one_session_per_client_session(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    server = make_virtual_server(member(gamma, session_scope=SessionScope.CLIENT))
    first, second = connect(server, "legacy"), connect(server, "legacy")

    for caller in (first, second, first, second):
        caller.call_tool("gamma_echo", {"text": "x"})
    seen = gamma.calls()["sessions"]

    # The shared session lists the tools; each client session has its own for calls.
    assert len(seen) == 3


def test_a_stateful_members_session_stays_with_its_client_across_a_restart(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    server = make_virtual_server(member(gamma, session_scope=SessionScope.CLIENT))
    caller = connect(server, "legacy")
    caller.call_tool("gamma_bump", {"call_id": "one"})

    gamma.restart()
    answer = caller.call_tool("gamma_bump", {"call_id": "two"})

    assert text_of(answer) == "gamma:1"
    assert gamma.executions_logged() == ["one", "two"]


def test_a_call_that_may_have_reached_the_tool_is_never_sent_twice(own_member: Any, make_virtual_server: Any) -> None:
    gamma = own_member("gamma")
    slow_to_answer = {"request_timeout": 0.5, "response_timeout": 0.5}
    caller = connect(make_virtual_server(member(gamma, service=slow_to_answer)), "modern")

    answer = caller.call_tool("gamma_bump", {"call_id": "slow", "sleep_seconds": 1.0})
    time.sleep(0.5)  # a second send would have been logged at once: the log line comes before the sleep

    assert answer.status in (502, 504)
    assert answer.error["code"] == -32000
    assert gamma.executions_logged() == ["slow"]

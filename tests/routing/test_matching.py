"""Route matching: path kinds, methods, matchers, priority and tie-breaking."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_project.errors import MethodNotAllowed, RouteNotFound
from routing.matching import match_route
from routing.snapshot import build_snapshot

UPSTREAM = "http://127.0.0.1:9"


def match(method: str = "GET", path: str = "/", **kwargs: Any) -> str:
    route = match_route(
        build_snapshot(),
        method=method,
        path=path,
        headers=kwargs.get("headers", {}),
        query=kwargs.get("query", {}),
        content=kwargs.get("content", {}),
    )
    return route.name


@pytest.mark.parametrize(
    ("path", "matches"),
    [
        ("/api", True),
        ("/api/", True),
        ("/api/users/7", True),
        ("/apis", False),
        ("/other", False),
    ],
)
def test_prefix_route_matches_its_path_and_below_only(make_route: Any, path: str, matches: bool) -> None:
    make_route("/api", UPSTREAM, name="api")
    if matches:
        assert match(path=path) == "api"
    else:
        with pytest.raises(RouteNotFound):
            match(path=path)


def test_exact_route_does_not_match_below_its_path(make_route: Any) -> None:
    make_route("/status", UPSTREAM, name="status", path_match="exact")
    assert match(path="/status") == "status"
    with pytest.raises(RouteNotFound):
        match(path="/status/deep")


def test_higher_priority_wins_over_longer_path(make_route: Any) -> None:
    make_route("/api/users", UPSTREAM, name="specific")
    make_route("/api", UPSTREAM, name="catch", priority=10)
    assert match(path="/api/users/1") == "catch"


def test_equal_priority_prefers_exact_then_longer_path(make_route: Any) -> None:
    make_route("/api", UPSTREAM, name="short")
    make_route("/api/users", UPSTREAM, name="long")
    make_route("/api/users", UPSTREAM, name="exact", path_match="exact")
    assert match(path="/api/users") == "exact"
    assert match(path="/api/users/1") == "long"
    assert match(path="/api/other") == "short"


def test_equal_routes_tie_break_by_name(make_route: Any) -> None:
    make_route("/same", UPSTREAM, name="bravo")
    make_route("/same", UPSTREAM, name="alpha")
    assert match(path="/same") == "alpha"


def test_disabled_route_never_matches(make_route: Any) -> None:
    make_route("/api", UPSTREAM, name="off", enabled=False, priority=100)
    make_route("/api", UPSTREAM, name="on")
    assert match(path="/api") == "on"


def test_only_route_disabled_gives_not_found(make_route: Any) -> None:
    make_route("/api", UPSTREAM, name="off", enabled=False)
    with pytest.raises(RouteNotFound):
        match(path="/api")


def test_method_outside_route_methods_gets_405_with_allow(make_route: Any) -> None:
    make_route("/api", UPSTREAM, name="read-only", methods=["GET", "HEAD"])
    assert match(method="HEAD", path="/api") == "read-only"
    with pytest.raises(MethodNotAllowed) as refused:
        match(method="POST", path="/api")
    assert refused.value.status == 405
    assert refused.value.headers["Allow"] == "GET, HEAD"


def test_method_specific_route_falls_back_to_any_method_route(make_route: Any) -> None:
    make_route("/api", UPSTREAM, name="writes", methods=["POST"], priority=5)
    make_route("/api", UPSTREAM, name="everything")
    assert match(method="POST", path="/api") == "writes"
    assert match(method="GET", path="/api") == "everything"


def test_header_and_query_matchers_must_all_hold(make_route: Any) -> None:
    make_route("/api", UPSTREAM, name="tenant-a-v2", header_matchers={"X-Tenant": "a"}, query_matchers={"v": "2"})
    make_route("/api", UPSTREAM, name="default")
    assert match(path="/api", headers={"x-tenant": "a"}, query={"v": "2"}) == "tenant-a-v2"
    assert match(path="/api", headers={"x-tenant": "a"}, query={"v": "1"}) == "default"
    assert match(path="/api", headers={"x-tenant": "b"}, query={"v": "2"}) == "default"


def test_content_matcher_routes_by_jsonrpc_method_and_tool_name(make_route: Any) -> None:
    make_route("/mcp", UPSTREAM, name="add-tool", kind="mcp", content_matchers={"method": "tools/call", "name": "add"})
    make_route("/mcp", UPSTREAM, name="mcp", kind="mcp")
    assert match(method="POST", path="/mcp", content={"method": "tools/call", "name": "add"}) == "add-tool"
    assert match(method="POST", path="/mcp", content={"method": "tools/call", "name": "echo"}) == "mcp"
    assert match(method="POST", path="/mcp", content={"method": "tools/list"}) == "mcp"

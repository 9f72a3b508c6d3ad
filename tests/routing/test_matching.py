"""Route matching: path kinds, methods, matchers, priority and tie-breaking."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_project.errors import MethodNotAllowed, RouteNotFound
from routing.matching import RequestFacts, explain_match, match_route
from routing.snapshot import build_snapshot

UPSTREAM = "http://127.0.0.1:9"


def facts(method: str = "GET", path: str = "/", **kwargs: Any) -> RequestFacts:
    return RequestFacts(method=method, path=path, **kwargs)


def match(method: str = "GET", path: str = "/", **kwargs: Any) -> str:
    return match_route(build_snapshot(), facts(method, path, **kwargs)).route.name


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


@pytest.mark.parametrize(
    ("path", "parameters"),
    [
        ("/users/7/orders", {"user": "7"}),
        ("/users/ab-c/orders", {"user": "ab-c"}),
        ("/users/7/orders/9", None),
        ("/users//orders", None),
        ("/users/7", None),
    ],
)
def test_pattern_route_matches_segments_and_names_them(make_route: Any, path: str, parameters: dict[str, str] | None) -> None:
    make_route("/users/{user}/orders", UPSTREAM, name="orders", path_match="pattern")
    if parameters is None:
        with pytest.raises(RouteNotFound):
            match(path=path)
    else:
        matched = match_route(build_snapshot(), facts("GET", path))
        assert matched.route.name == "orders"
        assert matched.path_parameters == parameters


def test_pattern_rewrite_fills_in_parameters(make_route: Any) -> None:
    make_route("/v1/users/{user}/files/{rest:path}", UPSTREAM, path_match="pattern", path_rewrite="/storage/{user}/{rest}")
    matched = match_route(build_snapshot(), facts("GET", "/v1/users/42/files/a/b.txt"))
    assert matched.path_parameters == {"user": "42", "rest": "a/b.txt"}
    assert matched.upstream_path == "/storage/42/a/b.txt"


def test_pattern_route_without_rewrite_forwards_the_whole_path(make_route: Any) -> None:
    make_route("/users/{user}", UPSTREAM, path_match="pattern")
    assert match_route(build_snapshot(), facts("GET", "/users/5")).upstream_path == "/users/5"


def test_exact_beats_pattern_beats_prefix_at_equal_priority(make_route: Any) -> None:
    make_route("/users", UPSTREAM, name="prefix")
    make_route("/users/{id}", UPSTREAM, name="pattern", path_match="pattern")
    make_route("/users/me", UPSTREAM, name="exact", path_match="exact")
    assert match(path="/users/me") == "exact"
    assert match(path="/users/5") == "pattern"
    assert match(path="/users/5/avatar") == "prefix"


@pytest.mark.parametrize(
    ("spec", "value", "matches"),
    [
        ({"present": True}, "anything", True),
        ({"present": True}, None, False),
        ({"present": False}, None, True),
        ({"present": False}, "x", False),
        ({"equals": "v2"}, "v2", True),
        ({"equals": "v2"}, "v20", False),
        ({"regex": "v[23]"}, "v3", True),
        ({"regex": "v[23]"}, "v33", False),
        ("v2", "v2", True),
    ],
)
def test_query_matcher_forms(make_route: Any, spec: Any, value: str | None, matches: bool) -> None:
    make_route("/api", UPSTREAM, name="special", query_matchers={"version": spec})
    make_route("/api", UPSTREAM, name="default", priority=-1)
    query = {} if value is None else {"version": value}
    assert match(path="/api", query=query) == ("special" if matches else "default")


def test_header_matcher_regex_and_absence(make_route: Any) -> None:
    make_route("/api", UPSTREAM, name="canary", header_matchers={"X-User": {"regex": "beta-.*"}, "X-Opt-Out": {"present": False}})
    make_route("/api", UPSTREAM, name="stable", priority=-1)
    assert match(path="/api", headers={"x-user": "beta-7"}) == "canary"
    assert match(path="/api", headers={"x-user": "beta-7", "x-opt-out": "1"}) == "stable"
    assert match(path="/api", headers={"x-user": "alpha"}) == "stable"


def test_two_tools_of_one_endpoint_go_to_two_services(client: Any, make_route: Any) -> None:
    from tests.upstream_server import UpstreamServer

    search, billing = UpstreamServer().start(), UpstreamServer().start()
    try:
        make_route("/mcp/tools", search.url, kind="mcp")
        make_route("/mcp/tools", billing.url, kind="mcp", content_matchers={"method": "tools/call", "name": {"regex": "invoice_.*"}})
        for tool in ("search_docs", "invoice_create", "invoice_void"):
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
            assert client.post("/mcp/tools/echo", body, content_type="application/json").status_code == 200
        assert [r["body"] for r in search.requests] == [b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_docs", "arguments": {}}}']
        assert len(billing.requests) == 2
    finally:
        search.stop()
        billing.stop()


def test_resource_uri_content_matcher(make_route: Any) -> None:
    make_route("/mcp", UPSTREAM, name="files", kind="mcp", content_matchers={"uri": {"regex": "file://.*"}})
    make_route("/mcp", UPSTREAM, name="rest", kind="mcp", priority=-1)
    assert match(method="POST", path="/mcp", content={"method": "resources/read", "uri": "file:///etc/motd"}) == "files"
    assert match(method="POST", path="/mcp", content={"method": "resources/read", "uri": "db://x"}) == "rest"


def test_explain_match_says_why_each_route_was_passed_over(make_route: Any) -> None:
    make_route("/api", UPSTREAM, name="tenant", header_matchers={"X-Tenant": "a"}, priority=3)
    make_route("/api", UPSTREAM, name="writes", methods=["POST"], priority=2)
    make_route("/other", UPSTREAM, name="other", priority=1)
    make_route("/api", UPSTREAM, name="fallback")
    make_route("/zzz", UPSTREAM, name="never-reached", priority=-5)
    verdicts = [(route.name, reason) for route, reason in explain_match(build_snapshot(), facts("GET", "/api/x"))]
    assert verdicts == [
        ("tenant", "header x-tenant = 'a' not satisfied"),
        ("writes", "method"),
        ("other", "path does not match prefix /other"),
        ("fallback", None),
    ]

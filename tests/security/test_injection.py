"""SQL-injection and XSS detection: the rules, the corpora, and the block / log / off modes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway_project.errors import JSONRPC_INVALID_PARAMS, PROBLEM_CONTENT_TYPE
from security.injection import find_injection, scan_json
from tests.upstream_server import UpstreamServer

CORPORA = Path(__file__).resolve().parents[2] / "security" / "corpora"


def corpus(name: str, subset: str = "tuning") -> list[str]:
    lines = (json.loads(line) for line in (CORPORA / name).read_text(encoding="utf-8").splitlines() if line.strip())
    return [sample["text"] for sample in lines if sample.get("set", "tuning") == subset]


@pytest.mark.parametrize("text", corpus("malicious.jsonl"))
def test_malicious_sample_is_detected(text: str) -> None:
    assert find_injection(text) is not None


@pytest.mark.parametrize("text", corpus("benign.jsonl"))
def test_benign_sample_passes(text: str) -> None:
    assert find_injection(text) is None


def test_corpora_are_big_enough_to_mean_something() -> None:
    assert len(corpus("benign.jsonl")) >= 150 and len(corpus("malicious.jsonl")) >= 100


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("x' OR '1'='1", "sql_tautology"),
        ("1 UNION SELECT null,null--", "sql_union_select"),
        ("'; DROP TABLE users; --", "sql_stacked_query"),
        ("admin'--", "sql_comment_after_quote"),
        ("' AND SLEEP(5)--", "sql_time_based"),
        ("<script>alert(1)</script>", "xss_script_tag"),
        ("<img src=x onerror=alert(1)>", "xss_event_handler"),
        ("javascript:alert(1)", "xss_script_url"),
        ("%3Cscript%3E", "xss_script_tag"),
    ],
)
def test_each_shape_is_named_by_its_rule(text: str, rule: str) -> None:
    finding = find_injection(text)
    assert finding is not None and finding.rule == rule


def test_json_walk_reports_where_and_stops_at_the_node_cap() -> None:
    finding, truncated = scan_json({"params": {"arguments": {"q": ["ok", "<script>"]}}}, 100)
    assert finding is not None and finding.location == "body params.arguments.q[1]" and not truncated
    assert scan_json(["ok"] * 50, 10) == (None, True)


def test_a_pathological_string_is_scanned_quickly() -> None:
    import time

    started = time.perf_counter()
    find_injection("<a" * 200_000 + "'" * 100_000 + " or " * 50_000)
    assert time.perf_counter() - started < 2.0


def call(text: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "q", "arguments": {"s": text}}})


def test_block_mode_refuses_an_mcp_call_with_32602(client: Any, make_route: Any, upstream: UpstreamServer) -> None:
    make_route("/mcp", upstream.url + "/echo", kind="mcp", injection_detection="block")
    response = client.post("/mcp", call("<script>alert(1)</script>"), content_type="application/json")
    assert response.status_code == 400
    body = json.loads(response.content)
    assert body["id"] == 4 and body["error"]["code"] == JSONRPC_INVALID_PARAMS
    assert body["error"]["data"] == {"status": 400, "type": "injection_detected"}
    assert "xss_script_tag" in body["error"]["message"] and "<script" not in body["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/api?id=1%27%20OR%20%271%27%3D%271", "", "text/plain"),
        ("/api", "name=x&comment=%3Cscript%3Ealert(1)%3C/script%3E", "application/x-www-form-urlencoded"),
        ("/api", "hello <img src=x onerror=alert(1)>", "text/plain"),
        ("/api", '{"a": {"b": "1; DROP TABLE users"}}', "application/json"),
    ],
)
def test_block_mode_refuses_http_inputs_with_problem_json(
    client: Any, make_route: Any, upstream: UpstreamServer, path: str, body: str, content_type: str
) -> None:
    make_route("/api", upstream.url + "/echo", kind="http", injection_detection="block")
    response = client.generic("POST", path, body, content_type=content_type)
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert json.loads(response.content)["type"] == "urn:mcp-gateway:error:injection_detected"
    assert upstream.requests == []


def test_log_mode_forwards_and_logs_rule_and_short_escaped_excerpt(
    client: Any, make_route: Any, upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    route = make_route("/mcp", upstream.url + "/echo", kind="mcp", injection_detection="log")
    payload = "<script>" + "A" * 500 + "</script>"
    with caplog.at_level(logging.WARNING, logger="security.injection"):
        response = client.post("/mcp", call(payload), content_type="application/json")
    assert response.status_code == 200 and len(upstream.requests) == 1
    [record] = [r for r in caplog.records if r.name == "security.injection"]
    line = record.getMessage()
    assert route.name in line and "xss_script_tag" in line and "&lt;script" in line
    assert "<script" not in line and "A" * 100 not in line


def test_off_mode_forwards_without_looking(
    client: Any, make_route: Any, upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    make_route("/mcp", upstream.url + "/echo", kind="mcp", injection_detection="off")
    with caplog.at_level(logging.WARNING, logger="security.injection"):
        assert client.post("/mcp", call("' OR '1'='1"), content_type="application/json").status_code == 200
    assert len(upstream.requests) == 1
    assert not [r for r in caplog.records if r.name == "security.injection"]


def test_too_many_values_are_refused_on_block_routes(
    client: Any, make_route: Any, upstream: UpstreamServer, settings: Any
) -> None:
    settings.GATEWAY_INJECTION_MAX_NODES = 20
    make_route("/api", upstream.url + "/echo", kind="http", injection_detection="block")
    response = client.post("/api", json.dumps(["x"] * 50), content_type="application/json")
    assert response.status_code == 400
    assert json.loads(response.content)["type"] == "urn:mcp-gateway:error:too_many_values"
    assert upstream.requests == []


def test_a_finding_deep_in_the_body_names_its_full_path() -> None:
    finding, _ = scan_json({"params": {"arguments": {"rows": [{"q": "x"}, {"q": "1' OR '1'='1"}]}}}, 100)
    assert finding is not None and finding.location == "body params.arguments.rows[1].q"


def test_a_key_is_named_as_a_key() -> None:
    finding, _ = scan_json({"params": {"<script>alert(1)</script>": 1}}, 100)
    assert finding is not None and finding.location.startswith("body key params.")


@pytest.mark.parametrize("value", ["tools/call", "io.modelcontextprotocol/protocolVersion", "2026-07-28", "a_b-c.d"])
def test_plain_tokens_are_never_findings(value: str) -> None:
    assert find_injection(value) is None


@pytest.mark.parametrize("value", ["javascript://%0aalert(1)", "1/**/union/**/select/**/1", "<script>"])
def test_a_slash_does_not_make_an_attack_plain(value: str) -> None:
    assert find_injection(value) is not None

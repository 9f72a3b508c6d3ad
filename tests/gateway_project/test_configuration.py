"""Configuration as a document: export, import (a declarative sync, validated first, in one
transaction), prune and dry run, secrets never exported (webhook URLs are configuration), YAML,
the management commands and GET/POST /api/v1/config/."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from gateway_project.config_document import NOT_A_SINGLE_VALUE, NOT_NULL, SECTIONS, dump_document, parse_document
from gateway_project.configuration import ConfigImportError, export_document, import_document
from monitoring.models import WINDOW_RANGE_MESSAGE, AlertEvent, AlertRule
from performance.models import TTL_RANGE_MESSAGE, ResponseCachePolicy
from routing.models import ConfigRevision, Route, Service, Target
from routing.snapshot import get_snapshot
from security.models import RateLimitPolicy
from tests.api_client import API, ApiClient
from tests.error_assertions import assert_problem

pytest_plugins = ["tests.api_personas"]

CONFIG = f"{API}/config/"
SECRET = "upstream-secret-value"
WEBHOOK = "https://hooks.example/alerts?channel=ops"


@pytest.fixture
def configured(db: Any) -> None:
    """A small but complete setup: two services, three targets, two routes (one cached, one
    fanning out), one rate-limit policy, two alert rules (one on a route, with a webhook)."""
    search = Service.objects.create(name="search", kind="mcp", lb_policy="least_connections", max_retries=4)
    search_eu = Service.objects.create(name="search-eu", kind="mcp")
    Target.objects.create(service=search, url="http://10.0.0.2:9100/mcp", weight=3)
    Target.objects.create(service=search, url="http://10.0.0.1:9100/mcp", enabled=False)
    Target.objects.create(service=search_eu, url="http://10.1.0.1:9100/mcp", upstream_auth_header="X-Token")
    cached = Route.objects.create(
        name="search",
        path="/mcp/search",
        service=search,
        methods=["POST"],
        header_matchers={"X-Tenant": {"regex": "a.*"}},
        required_permissions=["route:search"],
        priority=5,
    )
    Route.objects.create(name="search-all", path="/mcp/all", service=search, fanout="merge", fanout_services=["search-eu"])
    ResponseCachePolicy.objects.create(route=cached, ttl_seconds=900, cacheable_tools=["lookup"])
    RateLimitPolicy.objects.create(name="per-ip", scope="ip", limit=100, window_seconds=60).routes.set([cached])
    AlertRule.objects.create(
        name="slow-search", metric="p95_latency_ms", threshold=800, window_seconds=600, dimension="route", key="search", webhook_url=WEBHOOK
    )
    AlertRule.objects.create(name="errors", metric="error_rate", threshold=5, enabled=False)


def wipe() -> None:
    """An empty database, as on a new gateway."""
    AlertRule.objects.all().delete()
    RateLimitPolicy.objects.all().delete()
    Route.objects.all().delete()
    Service.objects.all().delete()


def config_revision() -> int:
    return ConfigRevision.objects.get(pk=1).revision


# --- export ----------------------------------------------------------------------------------------


def test_export_names_objects_by_name_and_holds_no_ids(configured: None) -> None:
    document = export_document()
    assert document["version"] == 1
    assert [s["name"] for s in document["services"]] == ["search", "search-eu"]
    assert [t["url"] for t in document["services"][0]["targets"]] == ["http://10.0.0.1:9100/mcp", "http://10.0.0.2:9100/mcp"]
    route = document["routes"][0]
    assert (route["service"], route["path"], route["priority"]) == ("search", "/mcp/search", 5)
    assert route["cache_policy"] == {"enabled": True, "ttl_seconds": 900, "cacheable_tools": ["lookup"]}
    assert document["routes"][1]["cache_policy"] is None
    assert document["rate_limit_policies"][0]["routes"] == ["search"]
    assert [rule["name"] for rule in document["alert_rules"]] == ["errors", "slow-search"]
    text = json.dumps(document)
    assert '"id"' not in text and "created_at" not in text and "route_id" not in text


def test_an_alert_rule_is_exported_with_every_setting_and_its_webhook_url_as_it_is(configured: None) -> None:
    assert export_document()["alert_rules"][1] == {
        "name": "slow-search",
        "enabled": True,
        "metric": "p95_latency_ms",
        "threshold": 800.0,
        "window_seconds": 600,
        "dimension": "route",
        "key": "search",
        "webhook_url": WEBHOOK,
    }


def test_export_leaves_out_health_state(configured: None) -> None:
    target = export_document()["services"][0]["targets"][0]
    assert not {"healthy", "last_health_check", "response_time_ms", "active_connections"} & set(target)


def test_a_target_credential_is_exported_as_its_presence_only(configured: None) -> None:
    Target.objects.filter(service__name="search-eu").update(upstream_auth_value=SECRET)
    document = export_document()
    assert SECRET not in json.dumps(document)
    assert document["services"][1]["targets"][0]["upstream_auth_value_set"] is True
    assert document["services"][0]["targets"][0]["upstream_auth_value_set"] is False


# --- import ----------------------------------------------------------------------------------------


def test_export_then_import_into_an_empty_database_then_export_gives_the_same_document(configured: None) -> None:
    exported = export_document()
    wipe()
    summary = import_document(exported)
    assert dict(summary.created) == {"services": 2, "targets": 3, "routes": 2, "cache_policies": 1, "rate_limit_policies": 1, "alert_rules": 2}
    assert export_document() == exported


def test_yaml_round_trip_gives_the_same_document(configured: None) -> None:
    exported = export_document()
    text = dump_document(exported, "yaml")
    assert parse_document(text, "yaml") == exported
    wipe()
    import_document(parse_document(text, "yaml"))
    assert dump_document(export_document(), "yaml") == text


def test_importing_what_is_there_writes_nothing(configured: None) -> None:
    before = config_revision()
    summary = import_document(export_document())
    assert sum(summary.created.values()) == sum(summary.updated.values()) == 0
    assert dict(summary.unchanged) == {"services": 2, "targets": 3, "routes": 2, "cache_policies": 1, "rate_limit_policies": 1, "alert_rules": 2}
    assert config_revision() == before  # no bump: running gateways keep their snapshot


def test_an_imported_change_is_in_the_snapshot_at_once(configured: None) -> None:
    document = export_document()
    document["routes"][0]["path"] = "/mcp/find"
    summary = import_document(document)
    assert summary.updated["routes"] == 1
    assert {route.path for route in get_snapshot().routes} == {"/mcp/find", "/mcp/all"}


def test_a_route_moved_to_another_service_is_updated(configured: None) -> None:
    document = export_document()
    document["routes"][0]["service"] = "search-eu"
    assert import_document(document).updated["routes"] == 1
    assert Route.objects.get(name="search").service.name == "search-eu"


def test_a_field_left_out_takes_its_default(configured: None) -> None:
    document = export_document()
    del document["routes"][0]["priority"]
    del document["services"][0]["max_retries"]
    import_document(document)
    assert Route.objects.get(name="search").priority == 0
    assert Service.objects.get(name="search").max_retries == 2


BAD_DOCUMENTS = [
    # (change to an exported document, the place of the error, a part of its message)
    (lambda d: d["routes"][1].update(path="mcp/all"), "routes[1].path", "The path must start with /."),
    (lambda d: d["services"][0]["targets"][0].update(url="not a url"), "services[0].targets[0].url", "Enter a valid URL."),
    (lambda d: d["routes"][0]["cache_policy"].update(ttl_seconds=299), "routes[0].cache_policy.ttl_seconds", TTL_RANGE_MESSAGE),
    (lambda d: d["routes"][0].update(service="nowhere"), "routes[0].service", "No service is named 'nowhere'."),
    (lambda d: d["rate_limit_policies"][0].update(routes=["nowhere"]), "rate_limit_policies[0].routes", "No route is named nowhere."),
    (lambda d: d["rate_limit_policies"][0].update(window_seconds=None), "rate_limit_policies[0].window_seconds", "A sliding window needs"),
    (lambda d: d["routes"][0].update(pathh="/x"), "routes[0]", "Unknown field(s): pathh."),
    (lambda d: d["services"].append(dict(d["services"][0])), "services", "Each name may appear once; repeated: search."),
    (lambda d: d.update(version=2), "version", "Give version: 1."),
    (lambda d: d.update(api_keys=[]), "api_keys", "Unknown section"),
    (lambda d: d["alert_rules"][1].update(window_seconds=30), "alert_rules[1].window_seconds", WINDOW_RANGE_MESSAGE),
    (lambda d: d["alert_rules"][1].update(key=""), "alert_rules[1].key", "Name the route this rule watches"),
    (lambda d: d["alert_rules"][0].update(metric="latency"), "alert_rules[0].metric", "Value 'latency' is not a valid choice."),
    (lambda d: d["alert_rules"][0].update(threshold="high"), "alert_rules[0].threshold", "value must be a float."),
    (lambda d: d["alert_rules"][0].update(threshold={"max": 5}), "alert_rules[0].threshold", NOT_A_SINGLE_VALUE),
    (lambda d: d["alert_rules"][0].update(metric=["error_rate"]), "alert_rules[0].metric", NOT_A_SINGLE_VALUE),
    (lambda d: d["alert_rules"][1].update(webhook_url=None), "alert_rules[1].webhook_url", NOT_NULL),
    (lambda d: d["routes"][0].update(path_rewrite=None), "routes[0].path_rewrite", NOT_NULL),
    (lambda d: d["rate_limit_policies"][0].update(limit=[100]), "rate_limit_policies[0].limit", NOT_A_SINGLE_VALUE),
    (lambda d: d["alert_rules"][0].update(webhook="https://x"), "alert_rules[0]", "Unknown field(s): webhook."),
    (lambda d: d["alert_rules"].append({"metric": "cpu_percent"}), "alert_rules[2].name", "Every entry needs a name."),
    (lambda d: d["routes"][0].update(cache_policy="yes"), "routes[0].cache_policy", "Give an object."),
    (lambda d: d["services"][0]["targets"][0].update(upstream_auth_value=5), "services[0].targets[0].upstream_auth_value", "string"),
]


@pytest.mark.parametrize(("spoil", "place", "message"), BAD_DOCUMENTS)
def test_a_bad_document_changes_nothing_and_says_where(configured: None, spoil: Any, place: str, message: str) -> None:
    before, revision = export_document(), config_revision()
    document = export_document()
    document["services"][0]["max_retries"] = 7  # a good change beside the bad one, not applied either
    spoil(document)
    with pytest.raises(ConfigImportError) as refusal:
        import_document(document)
    assert message in " ".join(refusal.value.errors[place])
    assert export_document() == before
    assert config_revision() == revision


def test_yaml_that_is_not_plain_data_is_refused(configured: None) -> None:
    text = dump_document(export_document(), "yaml").replace("max_retries: 4", "max_retries: 2026-01-01")
    with pytest.raises(ConfigImportError) as refusal:
        import_document(parse_document(text, "yaml"))
    assert "holds a date" in refusal.value.errors["document"][0]


@pytest.mark.parametrize("text", ['"\\0"', '"\\ud800"'])
def test_text_no_database_can_store_is_refused(configured: None, text: str) -> None:
    document = parse_document(dump_document(export_document(), "yaml").replace("health_check_path: ''", f"health_check_path: {text}", 1), "yaml")
    with pytest.raises(ConfigImportError) as refusal:
        import_document(document)
    assert refusal.value.errors["document"] == ["document.services[0].health_check_path holds a NUL character or a lone UTF-16 surrogate."]


def test_yaml_aliases_are_refused() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(ValueError, match="aliases"):
        parse_document(bomb, "yaml")


def test_without_prune_objects_missing_from_the_document_stay(configured: None) -> None:
    document = export_document()
    document["routes"] = [r for r in document["routes"] if r["name"] != "search-all"]
    document["services"][0]["targets"] = document["services"][0]["targets"][:1]
    summary = import_document(document)
    assert sum(summary.deleted.values()) == 0
    assert Route.objects.filter(name="search-all").exists()
    assert Target.objects.filter(service__name="search").count() == 2


def test_with_prune_objects_missing_from_the_document_are_deleted(configured: None) -> None:
    document = export_document()
    document["routes"] = [r for r in document["routes"] if r["name"] != "search-all"]
    document["routes"][0]["cache_policy"] = None
    document["services"][0]["targets"] = document["services"][0]["targets"][:1]
    document["rate_limit_policies"] = []
    document["alert_rules"] = [r for r in document["alert_rules"] if r["name"] != "slow-search"]
    AlertEvent.objects.create(rule=AlertRule.objects.get(name="slow-search"), state="firing", value=900, threshold=800)
    summary = import_document(document, prune=True)
    assert dict(summary.deleted) == {"routes": 1, "targets": 1, "cache_policies": 1, "rate_limit_policies": 1, "alert_rules": 1}
    assert export_document() == document
    assert not AlertEvent.objects.exists()  # a pruned rule's history goes with it


def test_prune_refuses_references_to_what_it_would_delete(configured: None) -> None:
    document = export_document()
    document["services"] = [s for s in document["services"] if s["name"] != "search-eu"]
    with pytest.raises(ConfigImportError) as refusal:
        import_document(document, prune=True)
    assert refusal.value.errors == {"routes[1]": ["Names services the document does not have: search-eu."]}
    assert Service.objects.filter(name="search-eu").exists()


@pytest.mark.parametrize("section", SECTIONS)
def test_prune_needs_every_section(configured: None, section: str) -> None:
    before = export_document()
    document = export_document()
    del document[section]
    with pytest.raises(ConfigImportError) as refusal:
        import_document(document, prune=True)
    assert "every section must be present" in refusal.value.errors[section][0]
    assert export_document() == before


def test_a_document_without_alert_rules_leaves_the_rules_alone(configured: None) -> None:
    document = export_document()
    del document["alert_rules"]  # as written before alert rules were part of the document
    document["routes"][0]["priority"] = 9
    assert import_document(document).updated["routes"] == 1
    assert AlertRule.objects.count() == 2


def test_a_dry_run_counts_but_changes_nothing(configured: None) -> None:
    document = export_document()
    wipe()
    summary = import_document(document, dry_run=True)
    assert summary.dry_run is True
    assert summary.created["routes"] == 2
    assert not Service.objects.exists() and not Route.objects.exists()


def test_an_import_keeps_a_target_credential_the_document_does_not_carry(configured: None) -> None:
    Target.objects.filter(service__name="search-eu").update(upstream_auth_value=SECRET)
    document = export_document()
    document["services"][1]["targets"][0]["weight"] = 5
    import_document(document)
    target = Target.objects.get(service__name="search-eu")
    assert (target.weight, target.upstream_auth_value) == (5, SECRET)


def test_a_document_may_carry_a_target_credential(configured: None) -> None:
    document = export_document()
    document["services"][1]["targets"][0]["upstream_auth_value"] = SECRET
    assert import_document(document).updated["targets"] == 1
    assert Target.objects.get(service__name="search-eu").upstream_auth_value == SECRET


def test_a_credential_the_document_says_is_set_but_lacks_is_warned_about(configured: None) -> None:
    Target.objects.filter(service__name="search-eu").update(upstream_auth_value=SECRET)
    document = export_document()
    wipe()
    summary = import_document(document)
    assert summary.warnings == ["services[1].targets[0]: the document says an upstream credential is set, but carries none "
                                "and this target has none: set it in the admin or the API"]


# --- management commands ---------------------------------------------------------------------------


def test_export_and_import_commands_round_trip_through_a_yaml_file(configured: None, tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    call_command("export_config", "--output", str(path))
    exported = export_document()
    assert yaml.safe_load(path.read_text()) == exported
    wipe()
    out = io.StringIO()
    call_command("import_config", str(path), stdout=out)
    assert "created: 2 services, 3 targets, 2 routes, 1 cache policies, 1 rate limit policies, 2 alert rules" in out.getvalue()
    assert export_document() == exported


def test_the_commands_use_stdout_and_stdin(configured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    call_command("export_config", "--format", "json", stdout=out)
    assert json.loads(out.getvalue()) == export_document()
    wipe()
    monkeypatch.setattr("sys.stdin", io.StringIO(out.getvalue()))
    call_command("import_config", "-", "--dry-run", stdout=io.StringIO())
    assert not Service.objects.exists()


def test_the_import_command_lists_the_errors_and_changes_nothing(configured: None, tmp_path: Path) -> None:
    document = export_document()
    document["routes"][0]["path"] = "nope"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CommandError, match=r"Nothing was changed(.|\n)*routes\[0\]\.path: The path must start with /\."):
        call_command("import_config", str(path))
    assert Route.objects.get(name="search").path == "/mcp/search"


# --- /api/v1/config/ -------------------------------------------------------------------------------


def test_get_config_answers_the_document_as_json_or_yaml(staff_api: ApiClient, configured: None) -> None:
    assert staff_api.get_json(CONFIG) == export_document()
    response = staff_api.get(CONFIG, {"format": "yaml"})
    assert response["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(response.content) == export_document()


def test_post_config_imports_json_and_yaml(staff_api: ApiClient, configured: None) -> None:
    document = export_document()
    wipe()
    answer = staff_api.send("post", CONFIG, document)
    assert answer.status_code == 200, answer.content
    assert answer.json()["created"]["routes"] == 2
    assert export_document() == document
    document["routes"][0]["priority"] = 9
    response = staff_api.generic("POST", CONFIG, dump_document(document, "yaml"), content_type="application/yaml")
    assert response.json()["updated"] == {"services": 0, "targets": 0, "routes": 1, "cache_policies": 0, "rate_limit_policies": 0, "alert_rules": 0}
    assert get_snapshot().routes[0].priority == 9


def test_post_config_with_prune_and_dry_run(staff_api: ApiClient, configured: None) -> None:
    document = {"version": 1, "services": [], "routes": [], "rate_limit_policies": [], "alert_rules": []}
    answer = staff_api.send("post", f"{CONFIG}?prune=true&dry_run=true", document).json()
    assert (answer["dry_run"], answer["prune"], answer["deleted"]["services"], answer["deleted"]["alert_rules"]) == (True, True, 2, 2)
    assert Service.objects.count() == 2 and AlertRule.objects.count() == 2


def test_a_bad_document_posted_is_a_400_with_its_errors(staff_api: ApiClient, configured: None) -> None:
    document = export_document()
    document["routes"][0]["path"] = "nope"
    problem = assert_problem(staff_api.send("post", CONFIG, document), 400, "validation_failed")
    assert problem["errors"] == {"routes[0].path": ["The path must start with /."]}
    assert Route.objects.get(name="search").path == "/mcp/search"


def test_yaml_that_does_not_parse_is_a_400(staff_api: ApiClient, db: Any) -> None:
    response = staff_api.generic("POST", CONFIG, "version: [1", content_type="application/yaml")
    assert_problem(response, 400, "malformed_body")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("[" * 100_000, "application/json"), ("version: " + "[" * 100_000, "application/yaml")],
)
def test_a_document_nested_too_deeply_is_a_400(staff_api: ApiClient, db: Any, body: str, content_type: str) -> None:
    assert_problem(staff_api.generic("POST", CONFIG, body, content_type=content_type), 400, "malformed_body")


def test_a_bad_flag_is_a_400(staff_api: ApiClient, db: Any) -> None:
    problem = assert_problem(staff_api.send("post", f"{CONFIG}?prune=maybe", {}), 400, "validation_failed")
    assert problem["errors"] == {"prune": ["Give true or false."]}


def test_a_read_only_key_exports_but_cannot_import(key_api: Any, configured: None) -> None:
    reader = key_api(["api:read"])
    assert reader.get_json(CONFIG) == export_document()
    assert_problem(reader.send("post", CONFIG, export_document()), 403, "forbidden")

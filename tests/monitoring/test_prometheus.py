"""GET /metrics: Prometheus text that parses, with the sums of every process, for staff or the
scrape token only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway_project.errors import PROBLEM_CONTENT_TYPE
from monitoring.flush import flush_metrics
from monitoring.process import process_name
from monitoring.queries import totals
from monitoring.recorder import Recorder
from monitoring.views import CHALLENGE, WWW_AUTHENTICATE_HEADER
from tests.gateway_project.conftest import CLOSED_REDIS_URL, redis_url_setting
from tests.monitoring.conftest import T0

TOKEN = "scrape-token-0123456789abcdef"
AS_PROMETHEUS = {"Authorization": f"Bearer {TOKEN}"}


def scrape(client: Any, **headers: str) -> dict[str, list[Sample]]:
    """GET /metrics as Prometheus would; the samples of each family, by family name."""
    response = client.get("/metrics", headers={**AS_PROMETHEUS, **headers})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {family.name: family.samples for family in text_string_to_metric_families(response.content.decode())}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    [found] = [sample.value for sample in samples if sample.name == name and sample.labels == labels]
    return found


@pytest.fixture(autouse=True)
def scrape_token() -> Any:
    with override_settings(GATEWAY_METRICS_TOKEN=TOKEN):
        yield


@pytest.fixture
def two_processes_flushed() -> None:
    """Two processes' recorders, flushed into the one store like two gateway workers."""
    first, second = Recorder(), Recorder()
    first.add([("gateway", "all"), ("route", "api")], 1.5, is_error=False)  # bucket le=0.002
    first.add([("gateway", "all"), ("route", "api")], 3.0, is_error=True)  # le=0.004
    second.add([("gateway", "all"), ("route", "api"), ("tool", "tools:add")], 100.0, is_error=False)  # le=0.128
    assert flush_metrics(now=T0, source=first)
    assert flush_metrics(now=T0 + 0.5, source=second)


def test_counters_are_the_sums_of_every_process(client: Any, two_processes_flushed: None) -> None:
    families = scrape(client)
    requests = families["gateway_requests"]
    assert value(requests, "gateway_requests_total", dimension="route", key="api") == 3
    assert value(requests, "gateway_requests_total", dimension="gateway", key="all") == 3
    assert value(requests, "gateway_requests_total", dimension="tool", key="tools:add") == 1
    assert value(families["gateway_request_errors"], "gateway_request_errors_total", dimension="route", key="api") == 1


def test_the_duration_histogram_has_cumulative_power_of_two_buckets(client: Any, two_processes_flushed: None) -> None:
    durations = scrape(client)["gateway_request_duration_seconds"]
    api = {"dimension": "route", "key": "api"}
    buckets = {s.labels["le"]: s.value for s in durations if s.name.endswith("_bucket") and s.labels["key"] == "api"}
    assert list(buckets) == [f"{2**power / 1000}" for power in range(17)] + ["+Inf"]
    assert (buckets["0.001"], buckets["0.002"], buckets["0.004"], buckets["0.064"], buckets["0.128"]) == (0, 1, 2, 2, 3)
    assert buckets["+Inf"] == value(durations, "gateway_request_duration_seconds_count", **api) == 3
    assert value(durations, "gateway_request_duration_seconds_sum", **api) == pytest.approx(0.1045)


def test_process_gauges_are_labelled_by_process(client: Any) -> None:
    assert flush_metrics()  # now: a scrape lists the processes that flushed lately
    families = scrape(client)
    me = {"process": process_name()}
    assert value(families["gateway_process_resident_memory_bytes"], "gateway_process_resident_memory_bytes", **me) > 0
    assert value(families["gateway_process_cpu_percent"], "gateway_process_cpu_percent", **me) >= 0
    assert value(families["gateway_in_flight_requests"], "gateway_in_flight_requests", **me) == 0


def test_an_empty_store_gives_valid_text_with_no_samples(client: Any) -> None:
    families = scrape(client)
    assert families["gateway_requests"] == [] and families["gateway_process_cpu_percent"] == []


def test_openmetrics_is_answered_when_asked_for(client: Any, two_processes_flushed: None) -> None:
    response = client.get(
        "/metrics", headers={**AS_PROMETHEUS, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


def test_scrapes_are_not_counted_as_exchanges(client: Any) -> None:
    for _ in range(3):
        scrape(client)
    assert flush_metrics(now=T0)
    assert totals()["gateway"] == {}


def test_labels_with_quotes_and_newlines_are_escaped(client: Any) -> None:
    awkward = 'say "hi"\nand\\leave'
    source = Recorder()
    source.add([("tool", f"svc:{awkward}")], 2.0, is_error=False)
    assert flush_metrics(now=T0, source=source)
    requests = scrape(client)["gateway_requests"]
    assert value(requests, "gateway_requests_total", dimension="tool", key=f"svc:{awkward}") == 1


# --- who may read it ----------------------------------------------------------------------------


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = json.loads(response.content)
    assert body["status"] == status and body["type"] == f"urn:mcp-gateway:error:{code}"
    assert body["instance"] == "/metrics"
    return body


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}, {"X-API-Key": TOKEN}],
    ids=["nothing", "wrong token", "not bearer", "api key header"],
)
def test_without_staff_session_or_token_the_answer_is_401_with_a_challenge(
    client: Any, headers: dict[str, str]
) -> None:
    response = client.get("/metrics", headers=headers)
    assert_problem(response, 401, "metrics_credential_required")
    assert response[WWW_AUTHENTICATE_HEADER] == CHALLENGE


def test_without_a_configured_token_no_bearer_is_accepted(client: Any) -> None:
    with override_settings(GATEWAY_METRICS_TOKEN=""):
        assert_problem(client.get("/metrics", headers={"Authorization": "Bearer "}), 401, "metrics_credential_required")


def test_a_staff_session_may_read_the_metrics(client: Any, db: None) -> None:
    client.force_login(User.objects.create_user("operator", password="x", is_staff=True))
    response = client.get("/metrics")
    assert response.status_code == 200
    families = text_string_to_metric_families(response.content.decode())
    assert "gateway_requests" in {family.name for family in families}


def test_a_logged_in_user_who_is_not_staff_gets_403(client: Any, db: None) -> None:
    client.force_login(User.objects.create_user("visitor", password="x"))
    assert_problem(client.get("/metrics"), 403, "forbidden")


def test_other_methods_get_405_naming_the_allowed_ones(client: Any) -> None:
    response = client.post("/metrics", headers=AS_PROMETHEUS)
    assert_problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"


def test_an_unreachable_store_gives_503_with_retry_after(client: Any) -> None:
    with redis_url_setting(CLOSED_REDIS_URL):
        response = client.get("/metrics", headers=AS_PROMETHEUS)
    assert_problem(response, 503, "metrics_unavailable")
    assert response["Retry-After"] == "10"

"""Liveness and readiness probes: /healthz always answers, /readyz names the part that is down."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_project.state import reset_state_store
from tests.gateway_project.conftest import CLOSED_REDIS_URL, REDIS_TEST_URL, redis_url_setting


def test_healthz_answers_ok(client: Any) -> None:
    """/healthz says the process is alive."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok"}


@pytest.mark.parametrize("url", ["", REDIS_TEST_URL], ids=["memory", "redis"])
def test_readyz_is_ready_when_database_and_state_store_answer(client: Any, db: Any, url: str) -> None:
    """/readyz is 200 with every check ok, for the memory and the Redis backend alike."""
    with redis_url_setting(url):
        response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert json.loads(response.content) == {
        "status": "ready",
        "failing": [],
        "checks": {"database": "ok", "state_store": "ok"},
    }


def test_readyz_names_the_state_store_when_redis_is_unreachable(client: Any, db: Any) -> None:
    """With Redis on a closed port /readyz is 503 and lists only state_store as failing."""
    with redis_url_setting(CLOSED_REDIS_URL):
        response = client.get("/readyz")
    assert response.status_code == 503, response.content
    body = json.loads(response.content)
    assert body["status"] == "unavailable"
    assert body["failing"] == ["state_store"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["state_store"].startswith("unavailable: ")


def test_readyz_recovers_once_the_state_store_answers_again(client: Any, db: Any) -> None:
    """After Redis becomes reachable again (settings restored, store rebuilt) /readyz is 200 again."""
    with redis_url_setting(CLOSED_REDIS_URL):
        assert client.get("/readyz").status_code == 503
    reset_state_store()
    assert client.get("/readyz").status_code == 200


def test_readyz_names_the_database_when_it_cannot_be_queried(client: Any) -> None:
    """Without database access (no ``db`` fixture, so pytest-django refuses queries) /readyz is 503 naming the database."""
    with redis_url_setting(""):
        response = client.get("/readyz")
    assert response.status_code == 503, response.content
    body = json.loads(response.content)
    assert body["failing"] == ["database"]
    assert body["checks"]["state_store"] == "ok"

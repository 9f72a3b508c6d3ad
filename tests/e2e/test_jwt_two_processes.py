"""JWT login, use and logout across two gateway processes sharing a database and Redis: a
session ended through one process stops its tokens in the other at once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from tests.live_servers import LiveGateway
from tests.upstream_server import UpstreamServer

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "a long password for carol"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, demo_server_port: int) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    workdir = Path(tmp_path_factory.mktemp("jwtpair"))
    first = LiveGateway(workdir=workdir, demo_port=demo_server_port, redis_url=REDIS_URL).start()
    second = LiveGateway(workdir=workdir, demo_port=demo_server_port, redis_url=REDIS_URL, sibling=first).start()
    first.manage(
        "shell", "-c", f"from django.contrib.auth.models import User; User.objects.create_user('carol', password='{PASSWORD}')"
    )
    yield first, second
    second.stop()
    first.stop()


@pytest.fixture
def protected_path(pair: tuple[LiveGateway, LiveGateway]) -> Iterator[tuple[str, UpstreamServer]]:
    upstream = UpstreamServer().start()
    path = f"/jwt/{uuid.uuid4().hex[:8]}"
    pair[0].manage("add_route", path, upstream.url, "--kind", "http")
    for gateway in pair:  # a protected route answers 401 (not 404) once a process knows it
        deadline = time.monotonic() + 10
        while urllib3.request("GET", f"{gateway.url}{path}/echo", retries=False).status == 404:
            assert time.monotonic() < deadline, f"{gateway.url} never picked up {path}"
            time.sleep(0.05)
    yield path, upstream
    upstream.stop()


def post_json(url: str, body: dict[str, str], headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return urllib3.request(
        "POST", url, body=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


def get(url: str, token: str) -> int:
    return urllib3.request("GET", url, headers={"Authorization": f"Bearer {token}"}, retries=False).status


def test_logout_through_one_process_kills_the_tokens_in_the_other(
    pair: tuple[LiveGateway, LiveGateway], protected_path: tuple[str, UpstreamServer]
) -> None:
    first, second = pair
    path, upstream = protected_path
    login = post_json(f"{first.url}/api/v1/auth/token/", {"username": "carol", "password": PASSWORD})
    assert login.status == 200
    tokens = json.loads(login.data)
    assert get(f"{second.url}{path}/echo", tokens["access"]) == 200
    assert get(f"{first.url}{path}/echo", tokens["access"]) == 200
    refreshed = post_json(f"{second.url}/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
    assert refreshed.status == 200
    new_access = json.loads(refreshed.data)["access"]
    logout = post_json(f"{first.url}/api/v1/auth/logout/", {}, {"Authorization": f"Bearer {new_access}"})
    assert logout.status == 204
    assert get(f"{second.url}{path}/echo", tokens["access"]) == 401
    assert get(f"{second.url}{path}/echo", new_access) == 401
    assert sum(1 for request in upstream.requests if str(request["path"]).endswith("/echo")) == 2

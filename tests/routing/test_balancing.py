"""The five load-balancing policies, their shared counters, and skipping unavailable targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from gateway_project.errors import NoTargetAvailable
from gateway_project.state import get_state_store, reset_state_store
from routing.balancing import (
    checked_ok_at_key,
    choose_target,
    in_flight_key,
    latencies,
    smooth_weighted_sequence,
)
from routing.models import LoadBalancingPolicy
from routing.target_status import circuit_open_key, down_key, ejected_key
from tests.routing.factories import make_service, make_target

REDIS_TEST_URL = "redis://127.0.0.1:6379/0"
PROJECT_DIR = Path(__file__).resolve().parents[2]
THREE = (make_target(1), make_target(2), make_target(3))


def picks(service: Any, count: int) -> Counter[int]:
    return Counter(choose_target(service).id for _ in range(count))


def test_round_robin_spreads_exactly_evenly() -> None:
    service = make_service(THREE)
    assert picks(service, 300) == {1: 100, 2: 100, 3: 100}


def test_smooth_weighted_sequence_interleaves_heavy_targets() -> None:
    assert smooth_weighted_sequence((5, 1, 1)) == (0, 0, 1, 0, 2, 0, 0)
    assert smooth_weighted_sequence((2, 2)) == (0, 1)


def test_weighted_round_robin_follows_weights() -> None:
    service = make_service((make_target(1, weight=5), make_target(2, weight=1), make_target(3, weight=1)), lb_policy="weighted_round_robin")
    assert picks(service, 70) == {1: 50, 2: 10, 3: 10}


def test_least_connections_picks_the_least_loaded_target() -> None:
    service = make_service(THREE, lb_policy="least_connections")
    store = get_state_store()
    store.incr(in_flight_key(1), 4)
    store.incr(in_flight_key(2), 1)
    store.incr(in_flight_key(3), 2)
    assert picks(service, 20) == {2: 20}


def test_least_connections_shares_ties() -> None:
    service = make_service(THREE, lb_policy="least_connections")
    assert set(picks(service, 60)) == {1, 2, 3}


def test_response_time_prefers_the_fast_target_but_still_explores() -> None:
    service = make_service(THREE, lb_policy="response_time")
    latencies.record(1, 200.0)
    latencies.record(2, 5.0)
    latencies.record(3, 150.0)
    chosen = picks(service, 1000)
    assert chosen[2] > 900
    assert chosen[1] > 0 and chosen[3] > 0  # exploration keeps measuring the others


def test_response_time_tries_unmeasured_targets_first() -> None:
    service = make_service(THREE, lb_policy="response_time")
    latencies.record(1, 1.0)
    latencies.record(2, 1.0)
    assert choose_target(service).id == 3


def test_health_based_prefers_recently_checked_targets() -> None:
    service = make_service(THREE, lb_policy="health_based")
    store = get_state_store()
    store.set(checked_ok_at_key(1), str(time.time()))
    store.set(checked_ok_at_key(2), str(time.time() - 3600))  # checked long ago
    store.set(checked_ok_at_key(3), str(time.time()))
    assert picks(service, 40) == {1: 20, 3: 20}


@pytest.mark.parametrize("policy", LoadBalancingPolicy.values)
@pytest.mark.parametrize("verdict_key", [down_key, ejected_key, circuit_open_key])
def test_every_policy_skips_down_ejected_and_open_targets(policy: str, verdict_key: Any) -> None:
    service = make_service(THREE, lb_policy=policy)
    get_state_store().set(verdict_key(2), "1")
    assert 2 not in picks(service, 60)


def test_no_available_target_gives_503() -> None:
    service = make_service(THREE)
    for target in THREE:
        get_state_store().set(down_key(target.id), "1")
    with pytest.raises(NoTargetAvailable) as refused:
        choose_target(service)
    assert refused.value.status == 503


def test_excluded_targets_are_not_chosen() -> None:
    service = make_service(THREE)
    assert set(Counter(choose_target(service, exclude={1, 3}).id for _ in range(10))) == {2}


PICKER_SCRIPT = textwrap.dedent(
    """
    import json, sys, django
    django.setup()
    from routing.balancing import choose_target
    from tests.routing.factories import make_service, make_target
    service = make_service((make_target(1), make_target(2), make_target(3)))
    print(json.dumps([choose_target(service).id for _ in range(int(sys.argv[1]))]))
    """
)


def test_round_robin_stays_even_across_two_processes_sharing_redis() -> None:
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "gateway_project.settings", "REDIS_URL": REDIS_TEST_URL, "GATEWAY_STATE_PREFIX": prefix}
    with override_settings(REDIS_URL=REDIS_TEST_URL, GATEWAY_STATE_PREFIX=prefix):
        reset_state_store()
        other = subprocess.Popen([sys.executable, "-c", PICKER_SCRIPT, "150"], cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, text=True)
        service = make_service(THREE)
        mine = [choose_target(service).id for _ in range(150)]
        theirs = json.loads(other.communicate(timeout=60)[0])
        reset_state_store()
    assert Counter(mine + theirs) == {1: 100, 2: 100, 3: 100}


def test_least_connections_steers_away_from_targets_holding_streams(client: Any, make_route: Any) -> None:
    from tests.upstream_server import UpstreamServer

    servers = [UpstreamServer().start() for _ in range(3)]
    streams: list[Any] = []
    try:
        route = make_route("/mcp", [server.url for server in servers], kind="mcp")
        route.service.lb_policy = "least_connections"
        route.service.save()
        owners = []
        for _ in range(3):
            before = [len(server.requests) for server in servers]
            streams.append(client.get("/mcp/sse?events=50&delay=0.2"))
            owners.append(next(s for s, count in zip(servers, before) if len(s.requests) > count))
        assert len({id(owner) for owner in owners}) == 3  # each new stream went to an idle target
        streams[0].close()  # its target is the only one without an open stream now
        for _ in range(3):
            assert client.get("/mcp/echo").status_code == 200
        echoes = [sum(1 for r in server.requests if str(r["path"]).endswith("/echo")) for server in owners]
        assert echoes == [3, 0, 0]
    finally:
        for stream in streams:
            stream.close()
        for server in servers:
            server.stop()

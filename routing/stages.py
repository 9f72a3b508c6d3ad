"""Routing's pipeline stages: pick the route, then forward to one of its targets.

``forward`` is the terminal stage. Per attempt: a target (the session's own, or one from the
load balancer), its circuit breaker's admission, the call through the pooled connection, and
the verdict fed back to the breaker, the passive health check and the latency averages. A
failed attempt is retried on another target when that is safe and the retry budget allows.
"""

from __future__ import annotations

import time

import urllib3
from django.http import HttpResponse, StreamingHttpResponse

from gateway_project.errors import (
    GatewayError,
    NoTargetAvailable,
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway_project.exchange import Exchange
from gateway_project.state import StateStoreUnavailable
from gateway_project.state.degraded import note_state_store_down
from federation import serving as virtual_servers
from performance import fanout, microbatch
from performance.pools import discard
from routing import circuit, health
from routing.affinity import SESSION_HEADER, bound_target, remember_session
from routing.balancing import choose_target, latencies, start_in_flight, tracks_in_flight
from routing.forwarding import open_upstream, relay_response
from routing.matching import RequestFacts, match_route
from routing.retries import RETRYABLE_STATUSES, backoff_seconds, is_safe_to_repeat, retry_budget
from routing.snapshot import RouteConfig, ServiceConfig, TargetConfig, get_snapshot

# Failures that prove nothing reached the upstream: safe to try elsewhere whatever the request.
NOTHING_SENT_ERRORS = (UpstreamConnectFailed, UpstreamConnectTimeout)
# An upstream status at or above this counts against the target's breaker and health.
FAILURE_STATUS = 500


def _lower_header_map(meta: dict[str, str]) -> dict[str, str]:
    return {key[5:].replace("_", "-").lower(): value for key, value in meta.items() if key.startswith("HTTP_")}


def find_route(exchange: Exchange) -> HttpResponse | None:
    """Match path, method, headers, query and JSON-RPC content against the snapshot."""
    request = exchange.request
    snapshot = get_snapshot()
    facts = RequestFacts(
        method=request.method or "GET",
        path=request.path,
        headers=_lower_header_map(request.META) if snapshot.uses_header_matchers else {},
        query=request.GET.dict() if request.META.get("QUERY_STRING") else {},
        content=exchange.rpc.content_fields() if exchange.rpc else {},
    )
    matched = match_route(snapshot, facts)
    exchange.route = matched.route
    exchange.upstream_path = matched.upstream_path
    return None


class _AttemptFailed(Exception):
    """One attempt failed in a way that may be retried; carries what to answer otherwise."""

    def __init__(self, error: GatewayError, *, request_sent: bool) -> None:
        self.error = error
        self.request_sent = request_sent


class _RetryDecided(Exception):
    """An upstream answered with a retryable status and a retry is already granted."""


def forward(exchange: Exchange) -> HttpResponse | StreamingHttpResponse:
    """The terminal stage: attempt, and retry where safe, until an answer can be relayed."""
    route = exchange.route
    assert route is not None
    if route.service.kind == "virtual":  # no targets: the gateway itself serves it (federation app)
        return virtual_servers.serve(exchange)
    if route.fanout:  # several services asked at once, one answer (performance/fanout.py)
        return fanout.forward_to_all(exchange, forward)
    session_target = bound_target(exchange)  # legacy sessions stay on their target
    retry_budget.record_request(route.service.id)
    tried: set[int] = set()
    while True:
        target = session_target or _next_target(route, tried)
        exchange.target = target
        exchange.attempts += 1
        try:
            return _attempt(exchange, route, target, can_fail_over=session_target is None)
        except _AttemptFailed as failed:
            tried.add(target.id)
            if session_target is not None or not _may_retry(exchange, route, request_sent=failed.request_sent):
                raise failed.error from None
        except _RetryDecided:
            tried.add(target.id)
        time.sleep(backoff_seconds(route.service, exchange.attempts - 1))


def _next_target(route: RouteConfig, tried: set[int]) -> TargetConfig:
    """Prefer a target this request has not tried; with none left, any available one.

    When every target's breaker is open, say so (503 with Retry-After) rather than "no target".
    """
    try:
        return choose_target(route.service, exclude=tried)
    except NoTargetAvailable as none_untried:
        try:
            if not tried:
                raise none_untried
            return choose_target(route.service)
        except NoTargetAvailable as none_at_all:
            raise circuit.refusal_if_all_open(route.service) or none_at_all from None


def _may_retry(exchange: Exchange, route: RouteConfig, *, request_sent: bool) -> bool:
    """Retries left, repeating is harmless, and the budget grants one (spends it)."""
    if exchange.attempts > route.service.max_retries:
        return False
    if request_sent and not is_safe_to_repeat(exchange):
        return False
    return retry_budget.try_spend(route.service)


def _attempt(
    exchange: Exchange, route: RouteConfig, target: TargetConfig, *, can_fail_over: bool
) -> HttpResponse | StreamingHttpResponse:
    """One call to one target, counted in flight (for least_connections) until it is over."""
    release_slot = start_in_flight(target) if tracks_in_flight(route.service) else None
    try:
        response = _call_target(exchange, route, target, can_fail_over=can_fail_over)
    except BaseException:
        if release_slot is not None:
            release_slot()
        raise
    if release_slot is not None:
        exchange.on_finish.append(release_slot)  # a stream stays in flight until it closes
    return response


def _call_target(
    exchange: Exchange, route: RouteConfig, target: TargetConfig, *, can_fail_over: bool
) -> HttpResponse | StreamingHttpResponse:
    """Breaker admission, the call, and the verdict fed back to breaker and health."""
    service = route.service
    try:
        admission = circuit.before_call(service, target)
    except circuit.CircuitOpen as refused:  # answered without touching the network
        raise _AttemptFailed(refused, request_sent=False) from None
    except StateStoreUnavailable as error:
        note_state_store_down("circuit breakers", error)
        admission = circuit.ADMITTED_CLOSED
    started = time.perf_counter()
    try:
        upstream = _open_upstream(exchange, route, target)
    except (UpstreamUnavailable, UpstreamTimeout) as error:
        _count_failure(service, target, admission)
        raise _AttemptFailed(error, request_sent=not isinstance(error, NOTHING_SENT_ERRORS)) from None
    latencies.record(target.id, (time.perf_counter() - started) * 1000.0)
    if upstream.status >= FAILURE_STATUS:
        _count_failure(service, target, admission)
    else:
        _count_success(service, target, admission)
    if (
        upstream.status in RETRYABLE_STATUSES
        and can_fail_over
        and _may_retry(exchange, route, request_sent=True)
    ):
        discard(upstream)
        raise _RetryDecided
    remember_session(exchange, target, upstream.headers.get(SESSION_HEADER))
    try:
        return relay_response(exchange, upstream, route.response_timeout)
    except (UpstreamUnavailable, UpstreamTimeout) as error:  # a complete answer broke off unrelayed
        _count_failure(service, target, admission)
        raise _AttemptFailed(error, request_sent=True) from None


def _open_upstream(exchange: Exchange, route: RouteConfig, target: TargetConfig) -> urllib3.BaseHTTPResponse:
    """The call alone, or sent together with other callers' in one upstream JSON-RPC batch on a
    route that opted in (performance/microbatch.py); either way, this call's own answer."""
    if microbatch.joins_micro_batch(exchange, route):
        return microbatch.open_in_micro_batch(exchange, route, target)
    return open_upstream(exchange, route, target)


def _count_failure(service: ServiceConfig, target: TargetConfig, admission: circuit.Admission) -> None:
    try:
        circuit.record_failure(service, target, admission)
        health.record_passive_failure(service, target)
    except StateStoreUnavailable as error:
        note_state_store_down("failure accounting", error)


def _count_success(service: ServiceConfig, target: TargetConfig, admission: circuit.Admission) -> None:
    try:
        circuit.record_success(service, target, admission)
    except StateStoreUnavailable as error:
        note_state_store_down("circuit breakers", error)

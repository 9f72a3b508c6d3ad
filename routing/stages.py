"""Routing's pipeline stages: pick the route, then forward to one of its targets."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse

from gateway_project.exchange import Exchange
from routing.balancing import choose_target
from routing.forwarding import open_upstream, relay_response
from routing.matching import RequestFacts, match_route
from routing.snapshot import get_snapshot


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


def forward(exchange: Exchange) -> HttpResponse | StreamingHttpResponse:
    """The terminal stage: choose a target, send, relay the answer."""
    assert exchange.route is not None
    service = exchange.route.service
    exchange.target = choose_target(service)
    upstream = open_upstream(exchange, service, exchange.target)
    return relay_response(exchange, upstream)

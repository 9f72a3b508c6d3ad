"""Route matching: which route, if any, serves this request, and why.

Routes are tried in precedence order (``RouteConfig.precedence``): highest ``priority`` first;
among equals an exact path before a pattern before a prefix, a longer path before a shorter
one, more matchers before fewer, then by name. The first route whose path, headers, query,
JSON-RPC content and method all match wins. When some route matched everything but the
method, the answer is 405 with the methods that would have matched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway_project.errors import MethodNotAllowed, RouteNotFound
from routing.matchers import ValueMatcher, fill_path_parameters
from routing.models import PathMatch
from routing.snapshot import RouteConfig, Snapshot

METHOD_MISMATCH = "method"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What matching looks at. Header names are lower-case; content holds method/name/uri."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    content: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: RouteConfig
    path_parameters: dict[str, str]
    upstream_path: str  # appended to the target's base path


def path_parameters(route: RouteConfig, path: str) -> dict[str, str] | None:
    """The named parameters when ``path`` matches the route's path, else None."""
    if route.path_match == PathMatch.EXACT:
        return {} if path == route.path else None
    if route.path_match == PathMatch.PATTERN:
        assert route.path_regex is not None
        found = route.path_regex.fullmatch(path)
        return found.groupdict() if found else None
    prefix = route.path.rstrip("/")
    return {} if path == route.path or path == prefix or path.startswith(prefix + "/") else None


def path_matches(route: RouteConfig, path: str) -> bool:
    return path_parameters(route, path) is not None


def upstream_path(route: RouteConfig, path: str, parameters: dict[str, str]) -> str:
    """Where the request goes below the target's base URL.

    Prefix routes strip their own path (``/api`` + ``/users/7`` -> ``/users/7``); exact routes
    send nothing below the base; pattern routes forward the whole path. A rewrite replaces the
    matched part, with ``{name}`` parameters filled in.
    """
    if route.path_match == PathMatch.PATTERN:
        return fill_path_parameters(route.path_rewrite, parameters) if route.path_rewrite else path
    below = "" if route.path_match == PathMatch.EXACT else path[len(route.path.rstrip("/")) :]
    return route.path_rewrite.rstrip("/") + below if route.path_rewrite else below


def _first_failing(matchers: tuple[ValueMatcher, ...], values: Mapping[str, str], kind: str) -> str | None:
    for matcher in matchers:
        if not matcher.matches(values.get(matcher.name)):
            return f"{kind} {matcher.describe()} not satisfied"
    return None


def mismatch_reason(route: RouteConfig, facts: RequestFacts) -> str | None:
    """None when the route matches; otherwise the first reason it does not (for the tester)."""
    if not path_matches(route, facts.path):
        return f"path does not match {route.path_match} {route.path}"
    reason = (
        _first_failing(route.header_matchers, facts.headers, "header")
        or _first_failing(route.query_matchers, facts.query, "query")
        or _first_failing(route.content_matchers, facts.content, "content")
    )
    if reason:
        return reason
    if route.methods and facts.method not in route.methods:
        return METHOD_MISMATCH
    return None


def match_route(snapshot: Snapshot, facts: RequestFacts) -> RouteMatch:
    """The winning route; raise RouteNotFound or MethodNotAllowed."""
    allowed_elsewhere: set[str] = set()
    for route in snapshot.routes:
        reason = mismatch_reason(route, facts)
        if reason is None:
            parameters = path_parameters(route, facts.path) or {}
            return RouteMatch(route, parameters, upstream_path(route, facts.path, parameters))
        if reason == METHOD_MISMATCH:
            allowed_elsewhere.update(route.methods)
    if allowed_elsewhere:
        raise MethodNotAllowed(
            f"{facts.method} is not allowed here", headers={"Allow": ", ".join(sorted(allowed_elsewhere))}
        )
    raise RouteNotFound(f"No route matches {facts.method} {facts.path}")


def explain_match(snapshot: Snapshot, facts: RequestFacts) -> list[tuple[RouteConfig, str | None]]:
    """Every route in the order tried, with why it did not match (None for the winner).

    Stops at the winner, since later routes are never looked at.
    """
    verdicts: list[tuple[RouteConfig, str | None]] = []
    for route in snapshot.routes:
        reason = mismatch_reason(route, facts)
        verdicts.append((route, reason))
        if reason is None:
            break
    return verdicts

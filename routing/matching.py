"""Route matching: which route, if any, serves this request.

Routes are tried in precedence order (``RouteConfig.precedence``): highest ``priority`` first;
among equals an exact path before a prefix, a longer path before a shorter one, more matchers
before fewer, then by name. The first route whose path, method, headers, query and JSON-RPC
content all match wins. When some route matched everything but the method, the answer is 405.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway_project.errors import MethodNotAllowed, RouteNotFound
from routing.models import PathMatch
from routing.snapshot import RouteConfig, Snapshot


def path_matches(route: RouteConfig, path: str) -> bool:
    if route.path_match == PathMatch.EXACT:
        return path == route.path
    prefix = route.path.rstrip("/")
    return path == route.path or path == prefix or path.startswith(prefix + "/")


def remaining_path(route: RouteConfig, path: str) -> str:
    """The part of ``path`` below the route's own path ('' for an exact match)."""
    if route.path_match == PathMatch.EXACT:
        return ""
    return path[len(route.path.rstrip("/")) :]


def _pairs_match(required: tuple[tuple[str, str], ...], actual: Mapping[str, str]) -> bool:
    return all(actual.get(name) == value for name, value in required)


def match_route(
    snapshot: Snapshot,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    content: Mapping[str, str],
) -> RouteConfig:
    """The winning route; raise RouteNotFound or MethodNotAllowed.

    ``headers`` keys are lower-case; ``content`` holds the JSON-RPC ``method`` and ``name``.
    """
    allowed_elsewhere: set[str] = set()
    for route in snapshot.routes:
        if not path_matches(route, path):
            continue
        if not (
            _pairs_match(route.header_matchers, headers)
            and _pairs_match(route.query_matchers, query)
            and _pairs_match(route.content_matchers, content)
        ):
            continue
        if route.methods and method not in route.methods:
            allowed_elsewhere.update(route.methods)
            continue
        return route
    if allowed_elsewhere:
        raise MethodNotAllowed(
            f"{method} is not allowed here", headers={"Allow": ", ".join(sorted(allowed_elsewhere))}
        )
    raise RouteNotFound(f"No route matches {method} {path}")

"""Overlapping routes: two enabled routes of the same priority that can take the same request.

Such routes are legal (the precedence rules in ``routing/matching.py`` decide between them), but
often a mistake: an operator who adds ``/api`` beside an existing ``/api/orders`` at the same
priority may not expect the longer path to win. The admin saves the route and warns, naming the
other route and the one tried first.

Paths are compared segment by segment, without enumerating requests:

    >>> paths_overlap("/api", "prefix", "/api/orders/{id}", "pattern")
    True
    >>> paths_overlap("/users/{id}", "pattern", "/orders/7", "exact")
    False

Two segments that both hold parameters (``{id}``, ``v{n}``) are taken to overlap: a warning too
many is cheaper than a missed one. Header, query and content matchers are not compared: they
narrow a route, but two routes that differ only there still compete for the same paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.matchers import PATH_PARAMETER, compile_path_pattern
from routing.models import PathMatch, Route
from routing.snapshot import route_config, service_config

# Why the first of two routes is tried first, by the position where their precedence keys differ.
PRECEDENCE_REASONS = (
    "higher priority",
    "an exact path before a pattern before a prefix",
    "the longer path",
    "more header, query or content matchers",
    "name order",
)

OVERLAP_WARNING = (
    'Route "{route}" overlaps the enabled route "{other}" at the same priority ({priority}): both take '
    '{methods} on some of the same paths, and "{first}" is tried first ({reason}). If that is not what you '
    "meant, give one of them a higher priority; the route tester shows where a given request goes."
)


@dataclass(frozen=True, slots=True)
class _Segment:
    text: str  # as written
    parametrised: bool  # holds {parameters}, so it takes many values


@dataclass(frozen=True, slots=True)
class _PathShape:
    segments: tuple[_Segment, ...]
    open_tail: bool  # any further segments may follow (prefix routes, {rest:path})


def _shape(path: str, path_match: str) -> _PathShape:
    if path_match == PathMatch.PREFIX:
        # "/api" and "/api/" both take "/api", "/api/" and everything below.
        below = path.rstrip("/").split("/")[1:]
        return _PathShape(tuple(_Segment(text, False) for text in below), open_tail=True)
    texts = path.split("/")[1:]
    if path_match == PathMatch.EXACT:
        return _PathShape(tuple(_Segment(text, False) for text in texts), open_tail=False)
    segments: list[_Segment] = []
    for text in texts:
        parameters = list(PATH_PARAMETER.finditer(text))
        segments.append(_Segment(text, bool(parameters)))
        if any(parameter.group(2) for parameter in parameters):  # {rest:path} takes slashes too
            return _PathShape(tuple(segments), open_tail=True)
    return _PathShape(tuple(segments), open_tail=False)


def _segments_overlap(first: _Segment, second: _Segment) -> bool:
    if not first.parametrised and not second.parametrised:
        return first.text == second.text
    if first.parametrised and second.parametrised:
        return True
    literal, pattern = (first, second) if second.parametrised else (second, first)
    return compile_path_pattern("/" + pattern.text).fullmatch("/" + literal.text) is not None


def paths_overlap(first_path: str, first_match: str, second_path: str, second_match: str) -> bool:
    """True when some request path matches both path specs."""
    first, second = _shape(first_path, first_match), _shape(second_path, second_match)
    if not all(_segments_overlap(a, b) for a, b in zip(first.segments, second.segments)):
        return False
    if len(first.segments) == len(second.segments):
        return True
    shorter = first if len(first.segments) < len(second.segments) else second
    return shorter.open_tail


def methods_overlap(first: list[str], second: list[str]) -> str | None:
    """What both method lists take, in words ("any method", "GET, POST"), or None if nothing.
    An empty list means any method."""
    if not first and not second:
        return "any method"
    if not first or not second:
        return ", ".join(sorted(first or second))
    shared = sorted(set(first) & set(second))
    return ", ".join(shared) if shared else None


def overlapping_routes(route: Route) -> list[Route]:
    """The enabled routes of ``route``'s priority whose path and methods overlap its own."""
    if not route.enabled:
        return []
    others = Route.objects.filter(enabled=True, priority=route.priority).exclude(pk=route.pk).select_related("service")
    return [
        other
        for other in others
        if methods_overlap(route.methods, other.methods) is not None
        and paths_overlap(route.path, route.path_match, other.path, other.path_match)
    ]


def overlap_warnings(route: Route) -> list[str]:
    """One sentence per overlapping route: which it is, which is tried first, and why."""
    warnings = []
    for other in overlapping_routes(route):
        first, reason = tried_first(route, other)
        methods = methods_overlap(route.methods, other.methods)
        warnings.append(
            OVERLAP_WARNING.format(
                route=route.name, other=other.name, priority=route.priority, methods=methods, first=first.name, reason=reason
            )
        )
    return warnings


def tried_first(first: Route, second: Route) -> tuple[Route, str]:
    """Which of two routes is tried first, and the precedence rule that decides it."""
    # The snapshot's own sort key, so the warning cannot disagree with matching.
    first_key = route_config(first, service_config(first.service)).precedence
    second_key = route_config(second, service_config(second.service)).precedence
    position = next(index for index, (a, b) in enumerate(zip(first_key, second_key)) if a != b)
    return (first if first_key < second_key else second), PRECEDENCE_REASONS[position]

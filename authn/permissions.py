"""Permission names and the grants that match them.

A permission names one thing a principal may use, ``kind:service:item`` or ``kind:name``:

    route:<route name>              use a route at all (when the route asks for it)
    tool:<service>:<tool>           call one MCP tool (and see it in tools/list)
    prompt:<service>:<prompt>       get one prompt (and see it in prompts/list)
    resource:<service>:<uri>        read one resource (and see it in resources/list)
    api:read, api:write             an API key's use of the REST API (/api/v1/): reading, and
                                    writing when the key's owner is staff (gateway_project/api.py)

A grant is a permission or a pattern over one: ``*`` as a whole part matches that part, a
``*`` inside a part is a glob (``search_*``), and a ``*`` as the last part matches everything
after it (``tool:*`` is every tool of every service; ``*`` alone is everything). A resource URI
contains ``:`` itself, so names are split into at most three parts.

    >>> grants = Grants.of(["tool:demo:*", "route:billing"])
    >>> grants.allows("tool:demo:add"), grants.allows("tool:other:add"), grants.allows("route:billing")
    (True, False, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from collections.abc import Iterable

MAX_PARTS = 3
WILDCARD = "*"
KINDS = ("route", "tool", "prompt", "resource", "api")


def route_permission(route_name: str) -> str:
    return f"route:{route_name}"


def tool_permission(service_name: str, tool: str) -> str:
    return f"tool:{service_name}:{tool}"


def prompt_permission(service_name: str, prompt: str) -> str:
    return f"prompt:{service_name}:{prompt}"


def resource_permission(service_name: str, uri: str) -> str:
    return f"resource:{service_name}:{uri}"


def _split(name: str) -> tuple[str, ...]:
    return tuple(name.split(":", MAX_PARTS - 1))


def pattern_problem(grant: str) -> str | None:
    """Why ``grant`` is not a usable grant, or None; for the admin's validation messages."""
    if not grant or grant != grant.strip():
        return "a grant may not be empty or start or end with spaces"
    if grant == WILDCARD:
        return None
    kind = _split(grant)[0]
    if kind != WILDCARD and not any(fnmatchcase(known, kind) for known in KINDS):
        return f"{grant!r} starts with {kind!r}; use one of {', '.join(KINDS)} (or *)"
    return None


def _part_matches(pattern: str, part: str) -> bool:
    return pattern == part or (WILDCARD in pattern and fnmatchcase(part, pattern))


def _matches(pattern: tuple[str, ...], name: tuple[str, ...]) -> bool:
    for index, pattern_part in enumerate(pattern):
        if index == len(pattern) - 1 and pattern_part == WILDCARD:
            return index < len(name)  # a trailing * matches the rest, but not nothing
        if index >= len(name) or not _part_matches(pattern_part, name[index]):
            return False
    return len(pattern) == len(name)


@dataclass(frozen=True, slots=True)
class Grants:
    """What a principal holds: exact names in a set (the common case, one lookup) and patterns."""

    exact: frozenset[str]
    patterns: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, grants: Iterable[str]) -> Grants:
        exact = set()
        patterns = []
        for grant in grants:
            if WILDCARD in grant:
                patterns.append(_split(grant))
            elif grant:
                exact.add(grant)
        return cls(frozenset(exact), tuple(patterns))

    def allows(self, permission: str) -> bool:
        if permission in self.exact:
            return True
        if not self.patterns:
            return False
        name = _split(permission)
        return any(_matches(pattern, name) for pattern in self.patterns)

    def covers_everything(self, kind: str, service: str) -> bool:
        """Whether one grant allows ``kind:service:<item>`` whatever the item is (``*``,
        ``tool:*``, ``tool:*:*``, ``tool:<service>:*``), so a list of that kind needs no filtering.

        Only a trailing ``*`` counts as "every item": a grant that happens to match everything
        through a glob inside a part (``tool:demo:**``) is not recognised, and the list is then
        checked item by item, which is slower but never wrong.
        """
        # The parts every such permission shares; the item lands in (or after) the last one.
        shared = _split(f"{kind}:{service}:")
        return any(
            pattern[-1] == WILDCARD
            and len(pattern) <= len(shared)
            and all(_part_matches(part, fixed) for part, fixed in zip(pattern[:-1], shared))
            for pattern in self.patterns
        )

    def names(self) -> tuple[str, ...]:
        """Every grant, sorted: what a token's ``permissions`` claim carries."""
        return tuple(sorted(self.exact | {":".join(p) for p in self.patterns}))

    @property
    def scope_key(self) -> str:
        """A stable string naming exactly this set of grants (for cache keys: two principals
        with the same grants may share a filtered answer, any others may not)."""
        return "\n".join(self.names())


NO_GRANTS = Grants(frozenset(), ())
ALL_GRANTS = Grants.of([WILDCARD])

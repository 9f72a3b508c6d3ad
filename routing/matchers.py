"""Matchers a route is made of: value matchers for headers, query and JSON-RPC content, and
path patterns with named parameters. Compiled once when the snapshot is built, never per request.

A value matcher is written in the admin as JSON, per name, one of:
    "v2"                      equals "v2" (shorthand)
    {"equals": "v2"}          equals "v2"
    {"present": true}         present with any value ({"present": false}: must be absent)
    {"regex": "^v[23]$"}      the whole value matches the regular expression

A path pattern names its parameters in braces: ``/users/{id}/orders`` (``{id}`` is one path
segment) or ``/files/{rest:path}`` (the rest of the path, slashes included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_REGEX_LENGTH = 500
PATH_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


@dataclass(frozen=True, slots=True)
class ValueMatcher:
    name: str
    kind: str  # equals | present | absent | regex
    value: str = ""
    pattern: re.Pattern[str] | None = None

    def matches(self, actual: str | None) -> bool:
        if self.kind == "absent":
            return actual is None
        if actual is None:
            return False
        if self.kind == "equals":
            return actual == self.value
        if self.kind == "regex":
            assert self.pattern is not None
            return self.pattern.fullmatch(actual) is not None
        return True  # present

    def describe(self) -> str:
        if self.kind == "equals":
            return f"{self.name} = {self.value!r}"
        if self.kind == "regex":
            return f"{self.name} ~ /{self.value}/"
        return f"{self.name} {self.kind}"


def parse_value_matcher(name: str, spec: Any) -> ValueMatcher:
    """Turn one admin-written spec into a matcher; ValueError says what is wrong."""
    if isinstance(spec, str):
        return ValueMatcher(name, "equals", spec)
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"{name}: give a string or one of {{\"equals\": ...}}, {{\"present\": true|false}}, {{\"regex\": ...}}")
    (kind, value), = spec.items()
    if kind == "equals" and isinstance(value, str):
        return ValueMatcher(name, "equals", value)
    if kind == "present" and isinstance(value, bool):
        return ValueMatcher(name, "present" if value else "absent")
    if kind == "regex" and isinstance(value, str):
        if len(value) > MAX_REGEX_LENGTH:
            raise ValueError(f"{name}: the regular expression is longer than {MAX_REGEX_LENGTH} characters")
        try:
            return ValueMatcher(name, "regex", value, re.compile(value))
        except re.error as exc:
            raise ValueError(f"{name}: invalid regular expression ({exc})") from None
    raise ValueError(f"{name}: {kind!r} needs {'true or false' if kind == 'present' else 'a string'}")


def compile_value_matchers(specs: Any, *, lower_names: bool = False) -> tuple[ValueMatcher, ...]:
    """All matchers of one kind, sorted by name so precedence and display are deterministic."""
    if not isinstance(specs, dict):
        raise ValueError("give a JSON object mapping names to matchers")
    return tuple(
        parse_value_matcher(name.lower() if lower_names else name, spec) for name, spec in sorted(specs.items())
    )


def compile_path_pattern(pattern: str) -> re.Pattern[str]:
    """``/users/{id}`` -> a regex with named groups matching the whole path."""
    if not pattern.startswith("/"):
        raise ValueError("a path pattern must start with /")
    leftover = PATH_PARAMETER.sub("", pattern)
    if "{" in leftover or "}" in leftover:
        raise ValueError("braces must enclose a parameter name, e.g. {id} or {rest:path}")
    parts: list[str] = []
    position = 0
    seen: set[str] = set()
    for parameter in PATH_PARAMETER.finditer(pattern):
        name = parameter.group(1)
        if name in seen:
            raise ValueError(f"the parameter {{{name}}} appears twice")
        seen.add(name)
        parts.append(re.escape(pattern[position : parameter.start()]))
        parts.append(f"(?P<{name}>.+)" if parameter.group(2) else f"(?P<{name}>[^/]+)")
        position = parameter.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("".join(parts))


def fill_path_parameters(template: str, parameters: dict[str, str]) -> str:
    """Substitute ``{name}`` in a rewrite template with the matched parameters."""
    return PATH_PARAMETER.sub(lambda m: parameters.get(m.group(1), m.group(0)), template)

"""What an upstream's answer says about caching it: may a shared cache keep it, for how long, and
for whom.

MCP 2026-07-28 ("Caching", SEP-2549) puts two fields on the cacheable results themselves:
``result.ttlMs``, how many milliseconds the result may be considered fresh (absent or 0: stale at
once), and ``result.cacheScope``: ``"public"`` may be served across authorization contexts,
``"private"`` only within the same one. Interim results (``resultType: "input_required"``) are
not cacheable. HTTP answers speak RFC 9111: this gateway is a shared cache, so ``no-store``,
``no-cache`` and ``private`` keep an answer out, ``s-maxage`` (else ``max-age``) is its hint, and
neither a ``Set-Cookie`` nor a ``Vary`` on headers outside the key may be repeated to others.

    >>> entry_ttl(3600, [600.0])
    600.0
    >>> entry_ttl(3600, [60.0]) is None  # under the 5-minute minimum: not cached at all
    True
"""

from __future__ import annotations

import math
from typing import Any

from django.http import HttpResponse

from performance.models import MIN_TTL_SECONDS

# Request headers the cache key holds; an answer that varies on any other header is not kept.
KEYED_VARY_HEADERS = frozenset({"accept", "accept-encoding", "mcp-protocol-version", "mcp-session-id"})
UNCACHEABLE_DIRECTIVES = frozenset({"no-store", "no-cache", "private"})
PUBLIC_SCOPE = "public"


def entry_ttl(policy_ttl: float, hints: list[float]) -> float | None:
    """The policy's TTL shortened to the upstream's hints; None when a hint is under the minimum
    (the cache keeps nothing for less than 5 minutes, and never longer than a hint)."""
    ttl = float(policy_ttl)
    for hint in hints:
        if hint < MIN_TTL_SECONDS:
            return None
        ttl = min(ttl, hint)
    return ttl


def is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def http_ttl_hints(response: HttpResponse) -> list[float] | None:
    """The TTL hints (seconds) in the answer's HTTP headers; None when they forbid keeping it."""
    if response.has_header("Set-Cookie") or response.cookies:
        return None
    if response.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        return None
    vary = {token.strip().lower() for token in response.get("Vary", "").split(",") if token.strip()}
    if not vary <= KEYED_VARY_HEADERS:
        return None
    directives = cache_control_directives(response.get("Cache-Control", ""))
    if not UNCACHEABLE_DIRECTIVES.isdisjoint(directives):
        return None
    max_age = directives.get("s-maxage", directives.get("max-age"))
    if max_age is None:
        return []
    return [float(max_age)] if max_age.isdigit() else [0.0]  # unreadable: stale, like a 0


def cache_control_directives(value: str) -> dict[str, str]:
    """``"public, max-age=600"`` -> ``{"public": "", "max-age": "600"}`` (names lowercased)."""
    directives = {}
    for part in value.split(","):
        name, _, argument = part.partition("=")
        if name.strip():
            directives[name.strip().lower()] = argument.strip().strip('"')
    return directives


def successful_result(document: Any) -> dict[str, Any] | None:
    """A JSON-RPC answer's final result object; None for errors and interim results."""
    if not isinstance(document, dict) or "error" in document:
        return None
    result = document.get("result")
    if not isinstance(result, dict) or result.get("resultType", "complete") != "complete":
        return None
    return result


def ttl_ms_hint(result: dict[str, Any]) -> int | None:
    """``ttlMs`` in milliseconds; None when absent. A negative or unreadable value is 0: stale."""
    if "ttlMs" not in result:
        return None
    value = result["ttlMs"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0
    return int(value)


def is_private(result: dict[str, Any]) -> bool:
    """Absent means public (the schema's default); anything but "public" is treated as private,
    the one reading that can never leak an answer to another principal."""
    return result.get("cacheScope", PUBLIC_SCOPE) != PUBLIC_SCOPE

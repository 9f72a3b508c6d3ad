"""The response cache: answers that are safe to repeat, served again without asking the upstream.

What may be cached, and nothing else:
- a route opts in with an enabled ``ResponseCachePolicy``; then GET and HEAD on HTTP routes, and
  on MCP routes the read-only methods (``tools/list``, ``resources/list``, ``resources/read``,
  ``prompts/list``, ``prompts/get``) plus ``tools/call`` for the tools the operator marked
  cacheable (only the operator knows which tools have no side effects);
- only a complete JSON answer (never an event stream) with a 2xx status; on MCP a result (never
  an error, never an interim ``input_required`` result, never the answer to a retried
  multi-round-trip request: it depends on inputs outside the key, says the spec).

The key is everything that can change the answer: route and service, HTTP method, path, query,
``Accept``, the body without its JSON-RPC id (a hit is served with the current request's id),
``MCP-Protocol-Version`` and ``Mcp-Session-Id``, and who is asking: the principal's grants on
MCP routes and on routes that need a credential, because lists are filtered per principal and
one user's tool list must never reach another; plus the principal's own id for an answer the
upstream marked private.

Upstream hints are honoured (``cache_hints.py``: MCP ``result.ttlMs`` and ``result.cacheScope``,
HTTP ``Cache-Control``). An entry lives for the policy's TTL shortened to the hint; a hint under
the 5-minute minimum means the answer is not cached at all. A result without ``ttlMs`` (servers
before 2026-07-28, tool calls) is kept for the policy's TTL: the operator opted in. A private
answer is served only to the same authenticated principal. A hit's ``ttlMs`` is reduced by the
entry's age (and HTTP hits carry ``Age``), so no client keeps an answer past its hint.

Answers carry ``X-Cache: HIT`` or ``MISS`` (on every answer to a cacheable request that missed).
The store is shared (``cache_store.py``: memory embedded, Redis when ``REDIS_URL`` is set); when
Redis is unreachable the cache is skipped, never the request. Hits, misses and evictions are
counted in the state store, so ``cache_stats()`` is right across processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from gateway_project.exchange import Exchange
from gateway_project.state import StateStoreUnavailable, get_state_store
from gateway_project.state.degraded import note_state_store_down
from gateway_project.state.process_wide import ProcessWide
from performance.cache_store import MemoryCacheStore, RedisCacheStore, ResponseCacheStore, StoredAnswer
from performance.cache_hints import entry_ttl, http_ttl_hints, is_json, is_private, successful_result, ttl_ms_hint
from performance.models import ResponseCachePolicy
from routing.config_version import ConfigCache

logger = logging.getLogger(__name__)

X_CACHE_HEADER = "X-Cache"
HIT = "HIT"
MISS = "MISS"
AGE_HEADER = "Age"

DEFAULT_MAX_ENTRIES = 10_000
# Larger answers are not cached: max entries times this must fit in memory (or Redis).
MAX_CACHED_BODY_BYTES = 512 * 1024
# Part of every key: changing how entries are written makes old entries unreachable, not wrong.
ENTRY_FORMAT = 1
# How often the worker removes expired entries.
CACHE_CLEANUP_EVERY_SECONDS = 60.0

CACHEABLE_HTTP_METHODS = frozenset({"GET", "HEAD"})
READ_ONLY_MCP_METHODS = frozenset({"tools/list", "resources/list", "resources/read", "prompts/list", "prompts/get"})
TOOLS_CALL = "tools/call"
# A multi-round-trip retry (2026-07-28) depends on inputs outside the cache key.
ROUND_TRIP_PARAMS = frozenset({"inputResponses", "requestState"})

PROTOCOL_VERSION_META = "HTTP_MCP_PROTOCOL_VERSION"
SESSION_ID_META = "HTTP_MCP_SESSION_ID"
# Headers a hit must not repeat from the stored answer.
UNSTORED_HEADERS = frozenset({"x-cache", "age"})

STATS_KEY = "rcache:stats:"
HITS, MISSES, EVICTIONS = "hits", "misses", "evictions"


# --- policies: from the database once per config version, never per request --------------------


@dataclass(frozen=True, slots=True)
class CachePolicy:
    ttl_seconds: int
    cacheable_tools: frozenset[str]


def build_policies() -> dict[int, CachePolicy]:
    """Every enabled policy by route id (one query)."""
    rows = ResponseCachePolicy.objects.filter(enabled=True).values_list("route_id", "ttl_seconds", "cacheable_tools")
    return {route_id: CachePolicy(ttl, _tool_names(tools)) for route_id, ttl, tools in rows}


def _tool_names(tools: Any) -> frozenset[str]:
    """The tool names of a policy row (one saved around validation cannot break the hot path)."""
    return frozenset(t for t in tools if isinstance(t, str)) if isinstance(tools, list) else frozenset()


_policies: ConfigCache[dict[int, CachePolicy]] = ConfigCache(build_policies)


def policy_for(route_id: int) -> CachePolicy | None:
    return _policies.get().get(route_id)


# --- the store: built once, rebuilt only when its settings change (tests) -------------------------

def build_cache_store() -> ResponseCacheStore:
    """Redis when the gateway shares state through it, else this process's memory."""
    max_entries = int(getattr(settings, "GATEWAY_CACHE_MAX_ENTRIES", DEFAULT_MAX_ENTRIES))
    if settings.REDIS_URL:
        return RedisCacheStore(settings.REDIS_URL, prefix=settings.GATEWAY_STATE_PREFIX, max_entries=max_entries)
    return MemoryCacheStore(max_entries)


_store: ProcessWide[ResponseCacheStore] = ProcessWide(
    build_cache_store, {"REDIS_URL", "GATEWAY_STATE_PREFIX", "GATEWAY_CACHE_MAX_ENTRIES"}
)


def get_cache_store() -> ResponseCacheStore:
    return _store.get()


def use_cache_store(store: ResponseCacheStore | None) -> None:
    """Replace the process's store (tests inject one with a fake clock); None rebuilds on next use."""
    _store.replace(store)


# --- the request side: may this request be answered from the cache, and under which keys ---------


@dataclass(frozen=True, slots=True)
class Lookup:
    route_id: int
    policy: CachePolicy
    shared_digest: str  # answers the same for everyone holding these grants
    private_digest: str | None  # answers for this principal only; None for anonymous callers

    @property
    def digests(self) -> list[str]:
        return [self.private_digest, self.shared_digest] if self.private_digest else [self.shared_digest]


def plan_lookup(exchange: Exchange) -> Lookup | None:
    """The keys this request's answer is cached under, or None when it must not be cached."""
    route = exchange.route
    if route is None:
        return None
    policy = policy_for(route.id)
    if policy is None or not _is_cacheable_request(exchange, policy):
        return None
    parts = _key_parts(exchange)
    principal = exchange.principal
    return Lookup(
        route_id=route.id,
        policy=policy,
        shared_digest=_digest(parts),
        private_digest=_digest([*parts, principal.id]) if principal.is_authenticated else None,
    )


def _is_cacheable_request(exchange: Exchange, policy: CachePolicy) -> bool:
    method = exchange.request.method
    if not exchange.is_mcp:
        return method in CACHEABLE_HTTP_METHODS
    rpc = exchange.rpc
    if method != "POST" or rpc is None or rpc.is_batch or not isinstance(rpc.payload, dict) or "id" not in rpc.payload:
        return False
    params = rpc.payload.get("params")
    if isinstance(params, dict) and not ROUND_TRIP_PARAMS.isdisjoint(params):
        return False
    if rpc.method == TOOLS_CALL:
        return rpc.name in policy.cacheable_tools
    return rpc.method in READ_ONLY_MCP_METHODS


def _key_parts(exchange: Exchange) -> list[Any]:
    route = exchange.route
    assert route is not None
    request = exchange.request
    meta = request.META
    # Lists are filtered by grants, so they are part of the key wherever a principal matters.
    grants_matter = exchange.is_mcp or not route.allow_anonymous
    return [
        ENTRY_FORMAT,
        route.id,
        route.service.id,
        request.method,
        request.path,
        exchange.upstream_path,
        meta.get("QUERY_STRING", ""),
        meta.get("HTTP_ACCEPT", ""),
        meta.get(PROTOCOL_VERSION_META, ""),
        meta.get(SESSION_ID_META, ""),
        _body_identity(exchange),
        exchange.principal.grants.scope_key if grants_matter else "",
    ]


def _body_identity(exchange: Exchange) -> str:
    """The body as it affects the answer: JSON-RPC without its id (and key order), else its hash."""
    rpc = exchange.rpc
    if exchange.is_mcp and rpc is not None and isinstance(rpc.payload, dict):
        return json.dumps({k: v for k, v in rpc.payload.items() if k != "id"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(exchange.body).hexdigest() if exchange.body else ""


def _digest(parts: list[Any]) -> str:
    # ASCII-only JSON: a lone surrogate from a client's JSON cannot break the encoding.
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


# --- the request stage ---------------------------------------------------------------------------


def serve_from_cache(exchange: Exchange) -> HttpResponse | None:
    """Answer from the cache when a live entry exists (``X-Cache: HIT``); otherwise mark the
    exchange a miss and continue to the upstream. Skipped when the store is unreachable."""
    lookup = plan_lookup(exchange)
    if lookup is None:
        return None
    try:
        stored = get_cache_store().get_first(lookup.route_id, lookup.digests)
    except StateStoreUnavailable as exc:
        note_state_store_down("response cache", exc)
        return None
    if stored is None:
        exchange.response_headers[X_CACHE_HEADER] = MISS
        _count(MISSES)
        return None
    _count(HITS)
    return _response_from_entry(exchange, stored)


def _response_from_entry(exchange: Exchange, stored: StoredAnswer) -> HttpResponse:
    entry = json.loads(stored.value)
    age = max(0.0, entry["ttl"] - stored.ttl_left)
    if entry["rpc"]:
        result = _result_with_ttl(entry["body"], _hint_left_ms(entry["hint_ms"], age))
        body = _jsonrpc_answer(exchange.rpc_id, result).encode()
    else:
        body = entry["body"].encode()
    response = HttpResponse(body, status=entry["status"])
    del response["Content-Type"]  # the stored answer's own headers say what it is
    for name, value in entry["headers"]:
        response[name] = value
    if entry["rpc"]:
        response["Content-Length"] = str(len(body))
    response[AGE_HEADER] = str(int(age))
    response[X_CACHE_HEADER] = HIT
    return response


def _hint_left_ms(hint_ms: int | None, age: float) -> int | None:
    return None if hint_ms is None else max(0, hint_ms - int(age * 1000))


def _result_with_ttl(result_text: str, ttl_ms: int | None) -> str:
    """The stored result (a JSON object written without ``ttlMs``) with the time it has left."""
    if ttl_ms is None:
        return result_text
    rest = result_text[1:]  # after the opening brace
    separator = "" if rest == "}" else ","
    return f'{{"ttlMs":{ttl_ms}{separator}{rest}'


def _jsonrpc_answer(request_id: Any, result_text: str) -> str:
    return f'{{"jsonrpc":"2.0","id":{json.dumps(request_id)},"result":{result_text}}}'


# --- the response side: is this answer worth keeping, and for how long ----------------------------


@dataclass(frozen=True, slots=True)
class Keepable:
    value: str  # the entry, as stored
    ttl: float
    private: bool


def store_in_cache(exchange: Exchange, response: HttpResponse | StreamingHttpResponse) -> None:
    """Keep a cacheable miss's answer when it is complete, successful JSON and its hints allow."""
    if exchange.response_headers.get(X_CACHE_HEADER) != MISS or isinstance(response, StreamingHttpResponse):
        return
    lookup = plan_lookup(exchange)
    if lookup is None:
        return
    keepable = answer_to_keep(exchange, lookup.policy, response)
    if keepable is None:
        return
    digest = lookup.private_digest if keepable.private else lookup.shared_digest
    if digest is None:  # private to an anonymous caller: there is no "same principal" to serve
        return
    try:
        evicted = get_cache_store().put(lookup.route_id, digest, keepable.value, keepable.ttl)
    except StateStoreUnavailable as exc:
        note_state_store_down("response cache", exc)
        return
    if evicted:
        _count(EVICTIONS, evicted)


def answer_to_keep(exchange: Exchange, policy: CachePolicy, response: HttpResponse) -> Keepable | None:
    """The entry to store for this answer, or None when it must not be cached."""
    if not 200 <= response.status_code < 300 or not is_json(response.get("Content-Type", "")):
        return None
    if len(response.content) > MAX_CACHED_BODY_BYTES:
        return None
    hints = http_ttl_hints(response)
    if hints is None:
        return None
    if exchange.request.method == "HEAD":
        text, document = "", None  # the headers of a JSON answer, no body to read
    else:
        try:
            text = response.content.decode("utf-8")
            document = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
    if not exchange.is_mcp:
        return _keepable(response, policy, hints, body=text, rpc=False, hint_ms=None, private=False)
    result = successful_result(document)
    if result is None:
        return None
    hint_ms = ttl_ms_hint(result)
    if hint_ms is not None:
        hints.append(hint_ms / 1000.0)
    without_ttl = {key: value for key, value in result.items() if key != "ttlMs"}
    return _keepable(response, policy, hints, body=json.dumps(without_ttl), rpc=True, hint_ms=hint_ms, private=is_private(result))


def _keepable(
    response: HttpResponse, policy: CachePolicy, hints: list[float], *, body: str, rpc: bool, hint_ms: int | None, private: bool
) -> Keepable | None:
    ttl = entry_ttl(policy.ttl_seconds, hints)
    if ttl is None:
        return None
    # A rebuilt JSON-RPC body gets its own length.
    unstored = (UNSTORED_HEADERS | {"content-length"}) if rpc else UNSTORED_HEADERS
    headers = [[name, value] for name, value in response.items() if name.lower() not in unstored]
    entry = {"status": response.status_code, "headers": headers, "body": body, "rpc": rpc, "ttl": ttl, "hint_ms": hint_ms}
    return Keepable(json.dumps(entry), ttl, private)


# --- operations: purge, cleanup, statistics ------------------------------------------------------


def purge_route(route_id: int) -> int:
    """Remove every cached answer of one route; return how many there were.

    Raises StateStoreUnavailable when Redis cannot be reached.
    """
    return get_cache_store().purge_route(route_id)


def remove_expired_entries() -> int:
    """Remove entries past their TTL; return how many."""
    return get_cache_store().remove_expired()


def run_cache_cleanup() -> None:
    """The worker's periodic job: expired entries go, so they hold no memory until touched.
    While Redis is down there is nothing to clean: a throttled warning, not a failed job."""
    try:
        removed = remove_expired_entries()
    except StateStoreUnavailable as exc:
        note_state_store_down("response cache cleanup", exc)
        return
    if removed:
        logger.debug("response cache: %d expired entries removed", removed)


def cache_stats() -> dict[str, float]:
    """Hits, misses and evictions since the counters began (across processes), the entries held
    now, and the hit and miss rates over all lookups (0.0 before the first).

    Raises StateStoreUnavailable when Redis cannot be reached.
    """
    keys = [STATS_KEY + name for name in (HITS, MISSES, EVICTIONS)]
    hits, misses, evictions = (int(value or 0) for value in get_state_store().get_many(keys))
    lookups = hits + misses
    return {
        HITS: hits,
        MISSES: misses,
        EVICTIONS: evictions,
        "size": get_cache_store().size(),
        "hit_rate": hits / lookups if lookups else 0.0,
        "miss_rate": misses / lookups if lookups else 0.0,
    }


def _count(what: str, amount: int = 1) -> None:
    try:
        get_state_store().incr(STATS_KEY + what, amount)
    except StateStoreUnavailable as exc:  # statistics are never worth failing a request
        note_state_store_down("response cache statistics", exc)

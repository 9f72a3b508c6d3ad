"""Rate limiting on the request path: policies from the database, counted in the state store.

Policies are compiled once into an in-process list (rebuilt when the config version moves,
like the routing snapshot), so a warm request makes no database query. The stage counts the
request against every policy that applies, in order; the first one over its limit refuses with
429 and the ``RateLimit-*`` / ``Retry-After`` headers. Allowed answers carry the headers of
the most restrictive policy (fewest requests remaining).

A request admitted by one policy and refused by a later one has still used the earlier
policy's quota: counting is one atomic step per policy, never a cross-policy transaction.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpResponse

from gateway_project.errors import GatewayError
from gateway_project.exchange import Exchange
from gateway_project.state import StateStoreUnavailable
from gateway_project.state.degraded import note_state_store_down
from routing.config_version import ConfigCache
from security.conf import security_settings
from security.models import RateLimitPolicy, Scope
from security.ratelimit_algorithms import Decision, Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter

logger = logging.getLogger(__name__)

RETRY_AFTER_HEADER = "Retry-After"
LIMIT_HEADER = "RateLimit-Limit"
REMAINING_HEADER = "RateLimit-Remaining"
RESET_HEADER = "RateLimit-Reset"

RATE_LIMITED_DETAIL = "Rate limit exceeded ({policy}); retry after {seconds} s"
# A policy-independent guess for how long a Redis outage lasts before the caller retries.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
DEFAULT_IP_POLICY_NAME = "default per-IP limit"
# Longer scope values (tool names come from request bodies) are hashed into the key.
MAX_RAW_KEY_VALUE = 200

# MCP has no standard rate-limit code; -32029 sits in JSON-RPC's implementation-defined server
# range (-32000..-32099) and echoes HTTP 429, so clients can tell "slow down" from a generic
# -32000 failure without parsing the message.
JSONRPC_RATE_LIMITED = -32029


class RateLimited(GatewayError):
    """Raised when a request is over one of the rate-limit policies that apply to it."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"
    jsonrpc_code = JSONRPC_RATE_LIMITED


class RateLimitUnavailable(GatewayError):
    """Raised when Redis is down and rate limiting is configured to fail closed."""

    status = 503
    code = "rate_limit_unavailable"
    title = "Rate limiting is unavailable; try again shortly"


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    id: int  # 0 for the default per-IP policy from settings
    name: str
    scope: str
    limit: Limit
    route_ids: frozenset[int]  # empty = every route

    def applies_to(self, route_id: int | None) -> bool:
        return not self.route_ids or route_id in self.route_ids


def compile_policy(policy: RateLimitPolicy) -> CompiledPolicy:
    if policy.algorithm == "token_bucket":
        limit = Limit.token_bucket(rate_per_second=policy.rate_per_second or 0.0, burst=policy.burst or 0)
    else:
        limit = Limit.sliding_window(limit=policy.limit or 0, window_seconds=policy.window_seconds or 0.0)
    route_ids = frozenset(route.id for route in policy.routes.all())
    return CompiledPolicy(policy.id, policy.name, policy.scope, limit, route_ids)


def build_policies() -> tuple[CompiledPolicy, ...]:
    """Every enabled, valid policy with its routes (two queries)."""
    compiled = []
    for policy in RateLimitPolicy.objects.filter(enabled=True).prefetch_related("routes"):
        try:
            policy.clean()
        except Exception:  # saved around validation (raw ORM): one bad policy must not stop all
            logger.exception("rate-limit policy %s is invalid and ignored", policy.name)
            continue
        compiled.append(compile_policy(policy))
    return tuple(compiled)


# The compiled policies; rebuilt on first use and whenever the config version moves.
_policies: ConfigCache[tuple[CompiledPolicy, ...]] = ConfigCache(build_policies)


def default_ip_policy() -> CompiledPolicy | None:
    """The settings' per-IP sliding window ("600/60"), or None when it is "0"."""
    text = security_settings.default_ip_rate_limit
    if text == "0":
        return None
    limit, window = text.split("/")
    return CompiledPolicy(0, DEFAULT_IP_POLICY_NAME, Scope.IP, Limit.sliding_window(int(limit), float(window)), frozenset())


class LimiterHolder:
    """One limiter per process for the configured backend; rebuilt when tests switch it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built_for: tuple[str, str] | None = None
        self._limiter: RateLimiter | None = None
        self.local_fallback: RateLimiter = MemoryRateLimiter()

    def get(self) -> RateLimiter:
        wanted = (settings.REDIS_URL, settings.GATEWAY_STATE_PREFIX)
        limiter = self._limiter
        if limiter is not None and self._built_for == wanted:
            return limiter
        with self._lock:
            if self._limiter is None or self._built_for != wanted:
                self._limiter = build_rate_limiter()
                self.local_fallback = MemoryRateLimiter()
                self._built_for = wanted
            return self._limiter

    def use(self, limiter: RateLimiter) -> None:
        """Serve ``limiter`` until the settings change (tests inject a fake clock this way)."""
        with self._lock:
            self._limiter = limiter
            self._built_for = (settings.REDIS_URL, settings.GATEWAY_STATE_PREFIX)


def build_rate_limiter() -> RateLimiter:
    if settings.REDIS_URL:
        return RedisRateLimiter(settings.REDIS_URL, prefix=settings.GATEWAY_STATE_PREFIX)
    return MemoryRateLimiter()


limiters = LimiterHolder()


def client_ip(exchange: Exchange) -> str:
    """The peer address, or with N trusted proxies the address the outermost one saw."""
    meta = exchange.request.META
    hops = security_settings.rate_limit_trusted_proxies
    if hops > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return str(meta.get("REMOTE_ADDR", ""))


def scope_value(policy: CompiledPolicy, exchange: Exchange) -> str:
    """Whose counter this request uses under ``policy``; "" when the policy does not apply."""
    if policy.scope == Scope.IP:
        return client_ip(exchange)
    if policy.scope == Scope.USER:
        return "" if exchange.principal_id == "anonymous" else exchange.principal_id
    if policy.scope == Scope.API_KEY:
        return exchange.api_key_id
    if policy.scope == Scope.ROUTE:
        return str(exchange.route.id) if exchange.route is not None else ""
    rpc = exchange.rpc
    return rpc.name if rpc is not None and rpc.method == "tools/call" else ""


def counter_key(policy: CompiledPolicy, value: str) -> str:
    if len(value) > MAX_RAW_KEY_VALUE:
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    # The algorithm is part of the key: switching a policy's algorithm starts a fresh counter
    # instead of reading a sorted set as a hash.
    return f"rl:{policy.limit.algorithm}:{policy.id}:{policy.scope}:{value}"


def count_request(policy: CompiledPolicy, key: str) -> Decision:
    """One hit on the shared limiter; while Redis is down, per process or refused (settings)."""
    try:
        return limiters.get().hit(key, policy.limit)
    except StateStoreUnavailable as exc:
        if security_settings.rate_limit_failure_mode == "closed":
            raise RateLimitUnavailable(headers={RETRY_AFTER_HEADER: str(UNAVAILABLE_RETRY_AFTER_SECONDS)}) from None
        note_state_store_down("rate limiting", exc)
        return limiters.local_fallback.hit(key, policy.limit)


def applicable_policies(exchange: Exchange) -> list[CompiledPolicy]:
    """The configured policies for the matched route (the default per-IP one runs earlier)."""
    route_id = exchange.route.id if exchange.route is not None else None
    return [policy for policy in _policies.get() if policy.applies_to(route_id)]


def enforce_default_ip_limit(exchange: Exchange) -> HttpResponse | None:
    """The per-IP limit every public endpoint has, before matching: unrouted paths (scanners,
    credential guessing on unknown URLs) are limited too."""
    default = default_ip_policy()
    return None if default is None else _enforce(exchange, [default])


def enforce_rate_limits(exchange: Exchange) -> HttpResponse | None:
    """Count the request against each applying policy; refuse with 429 when one is exhausted."""
    return _enforce(exchange, applicable_policies(exchange))


def _enforce(exchange: Exchange, policies: list[CompiledPolicy]) -> HttpResponse | None:
    tightest: Decision | None = None
    for policy in policies:
        value = scope_value(policy, exchange)
        if not value:
            continue
        decision = count_request(policy, counter_key(policy, value))
        if not decision.allowed:
            raise refusal(policy, decision)
        if tightest is None or decision.remaining < tightest.remaining:
            tightest = decision
    shown = exchange.response_headers.get(REMAINING_HEADER)
    if tightest is not None and (shown is None or tightest.remaining < int(shown)):
        exchange.response_headers.update(quota_headers(tightest))
    return None


def quota_headers(decision: Decision) -> dict[str, str]:
    return {
        LIMIT_HEADER: str(decision.limit),
        REMAINING_HEADER: str(decision.remaining),
        RESET_HEADER: str(decision.reset_header),
    }


def refusal(policy: CompiledPolicy, decision: Decision) -> RateLimited:
    retry_after = decision.retry_after_header
    headers = {**quota_headers(decision), REMAINING_HEADER: "0", RETRY_AFTER_HEADER: str(retry_after)}
    return RateLimited(RATE_LIMITED_DETAIL.format(policy=policy.name, seconds=retry_after), headers=headers)

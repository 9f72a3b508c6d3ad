"""Which protocol era a client's request speaks, checked as the 2026-07-28 spec asks.

A 2026-07-28 (modern) request carries its protocol version and client capabilities in
``params._meta`` of every request, and the version again in ``MCP-Protocol-Version``; it has no
session. Anything else is the 2025 (legacy) era: an ``initialize`` handshake, then a session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway_project.errors import HeaderBodyMismatch
from gateway_project.exchange import Exchange
from routing.probes import (
    CLIENT_CAPABILITIES_META_KEY,
    MODERN_PROTOCOL_VERSION,
    PROTOCOL_VERSION_HEADER,
    PROTOCOL_VERSION_META_KEY,
)
from security.validation import InvalidParams

MODERN_VERSIONS = (MODERN_PROTOCOL_VERSION,)
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE_VERSION = HANDSHAKE_VERSIONS[-1]
SERVER_INFO_META_KEY = "io.modelcontextprotocol/serverInfo"
SUBSCRIPTION_ID_META_KEY = "io.modelcontextprotocol/subscriptionId"
LOG_LEVEL_META_KEY = "io.modelcontextprotocol/logLevel"
# The envelope keys of the 2026 era live under this namespace; members in a 2025 session never see them.
ENVELOPE_NAMESPACE = "io.modelcontextprotocol/"
JSONRPC_UNSUPPORTED_PROTOCOL_VERSION = -32022

VERSION_HEADER_MISMATCH = "MCP-Protocol-Version header does not match the request envelope's protocol version"
MISSING_CAPABILITIES = f"params._meta is missing the required envelope key {CLIENT_CAPABILITIES_META_KEY}"
UNSUPPORTED_VERSION = "Unsupported protocol version"


class UnsupportedProtocolVersion(Exception):
    """A modern request at a version the gateway does not serve; answered with the versions it
    does (-32022), which a client needs to pick again, so not a plain GatewayError."""

    def __init__(self, requested: Any) -> None:
        super().__init__(UNSUPPORTED_VERSION)
        self.requested = requested


@dataclass(frozen=True, slots=True)
class Era:
    modern: bool
    protocol_version: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)  # the request's params._meta


LEGACY = Era(modern=False)


def request_meta(message: Mapping[str, Any]) -> Mapping[str, Any]:
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta if isinstance(meta, dict) else {}


def version_header(exchange: Exchange) -> str | None:
    return exchange.request.META.get("HTTP_" + PROTOCOL_VERSION_HEADER.upper().replace("-", "_"))


def era_of(exchange: Exchange, message: Mapping[str, Any]) -> Era:
    """The era of a POSTed message; raises when a modern envelope is inconsistent.

    A 2026 notification may come without an envelope: its version header says the era then.
    """
    meta = request_meta(message)
    if PROTOCOL_VERSION_META_KEY not in meta:
        is_notification = "id" not in message
        return Era(modern=True) if is_notification and version_header(exchange) in MODERN_VERSIONS else LEGACY
    version = meta[PROTOCOL_VERSION_META_KEY]
    header = version_header(exchange)
    if header is None or header != version:
        raise HeaderBodyMismatch(VERSION_HEADER_MISMATCH)
    if version not in MODERN_VERSIONS:
        raise UnsupportedProtocolVersion(version)
    if CLIENT_CAPABILITIES_META_KEY not in meta:
        raise InvalidParams(MISSING_CAPABILITIES)
    return Era(modern=True, protocol_version=str(version), meta=meta)


def without_envelope(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as a member in a 2025 session may receive them: the 2026 envelope keys taken
    out of ``_meta`` (a progress token and other keys stay)."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return dict(params)
    kept = {key: value for key, value in meta.items() if not key.startswith(ENVELOPE_NAMESPACE)}
    trimmed = {key: value for key, value in params.items() if key != "_meta"}
    if kept:
        trimmed["_meta"] = kept
    return trimmed

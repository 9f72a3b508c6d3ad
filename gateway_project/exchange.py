"""The one object every pipeline stage reads and enriches."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

from authn.principal import ANONYMOUS, Principal

if TYPE_CHECKING:
    from routing.snapshot import RouteConfig, TargetConfig
    from security.jsonrpc import RpcMessage


@dataclass(slots=True)
class Exchange:
    """One proxied request and everything the stages learned about it so far."""

    request: HttpRequest
    started_at: float = field(default_factory=time.perf_counter)
    body: bytes = b""
    rpc: RpcMessage | None = None
    route: RouteConfig | None = None
    target: TargetConfig | None = None
    upstream_path: str = ""
    status: int = 0
    error_code: str = ""
    bytes_sent: int = 0
    attempts: int = 0
    # Who is asking; anonymous until authentication sets it. Sessions are bound to its id.
    principal: Principal = ANONYMOUS
    # Headers a stage wants on the final response, whatever it is (e.g. RateLimit-Remaining).
    response_headers: dict[str, str] = field(default_factory=dict)
    # Run once when the exchange is over (for a stream: when it closes), before recording.
    on_finish: list[Callable[[], None]] = field(default_factory=list)
    # Refusals answer as JSON-RPC errors even on a plain HTTP route: set for a JSON-RPC batch
    # and each of its items (performance/batching.py), whose caller speaks JSON-RPC.
    jsonrpc_errors: bool = False

    @property
    def is_mcp(self) -> bool:
        """Errors on MCP routes are JSON-RPC objects; everywhere else problem+json."""
        return self.route is not None and self.route.service.speaks_mcp

    @property
    def principal_id(self) -> str:
        return self.principal.id

    @property
    def api_key_id(self) -> str:
        """The API key used, when one was (rate-limit scope, usage), else ""."""
        return self.principal.api_key_id

    @property
    def rpc_id(self) -> Any:
        return self.rpc.id if self.rpc is not None else None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started_at) * 1000.0

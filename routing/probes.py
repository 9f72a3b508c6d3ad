"""Probing one target: is it up, and how fast does it answer?

- ``health_check_path`` set: GET base URL + path; 2xx/3xx within the timeout is healthy;
- an MCP service: POST ``server/discover`` in the 2026-07-28 (stateless) style; a 2025-era
  server refuses that, and then the legacy handshake runs instead (``initialize``,
  ``notifications/initialized``, ``ping``) and the probe's session is DELETEd at once;
- a plain HTTP service: GET base URL; any answer below 500 means alive.
A probe never raises: it returns a ``ProbeResult``.

    >>> probe_target(service, target)
    ProbeResult(ok=True, response_time_ms=2.7, detail='server/discover answered')
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as UrllibTimeoutError

from performance.pools import discard, release, upstream_pool
from routing.models import ServiceKind
from routing.snapshot import ServiceConfig, TargetConfig

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# MCP wire constants; the 2026-07-28 ``_meta`` keys are mcp_types' *_META_KEY (the tests compare).
MODERN_PROTOCOL_VERSION = "2026-07-28"
LEGACY_PROTOCOL_VERSION = "2025-06-18"
PROTOCOL_VERSION_HEADER = "MCP-Protocol-Version"
METHOD_HEADER = "Mcp-Method"
SESSION_ID_HEADER = "Mcp-Session-Id"
STREAMABLE_ACCEPT = "application/json, text/event-stream"
PROTOCOL_VERSION_META_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_INFO_META_KEY = "io.modelcontextprotocol/clientInfo"
CLIENT_CAPABILITIES_META_KEY = "io.modelcontextprotocol/clientCapabilities"
PROBE_CLIENT_INFO = {"name": "mcp-gateway-health-check", "version": "1.0"}

DETAIL_DISCOVER_OK = "server/discover answered"
DETAIL_LEGACY_OK = "ping answered in a legacy session (server/discover refused)"

MAX_ANSWER_BYTES = 1024 * 1024  # a probe reads no more of any answer than this
READ_CHUNK_BYTES = 8192

# --- probing one target ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome; ``response_time_ms`` runs from the first byte sent to the verdict."""

    ok: bool
    response_time_ms: float
    detail: str


class ProbeFailed(Exception):
    """Raised inside a probe when the target gave no usable answer; ``probe_target`` turns it into a result."""


@dataclass(slots=True)
class _Probe:
    target: TargetConfig
    timeout: float
    deadline: float
    clock: Clock
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def remaining(self) -> float:
        left = self.deadline - self.clock()
        if left <= 0:
            raise ProbeFailed(f"no answer within {self.timeout:g}s")
        return left


@dataclass(frozen=True, slots=True)
class _RpcAnswer:
    status: int
    message: dict[str, Any] | None  # the JSON-RPC response to our request, when one came
    session_id: str | None


def probe_target(service: ServiceConfig, target: TargetConfig, *, clock: Clock = time.monotonic) -> ProbeResult:
    """Probe one target the way its service asks; never raises (the worker probes in threads)."""
    started = clock()
    probe = _Probe(target, service.health_check_timeout, started + service.health_check_timeout, clock)
    try:
        ok, detail = True, _run_probe(service, probe)
    except ProbeFailed as exc:
        ok, detail = False, str(exc)
    except Exception as exc:  # a bug must cost one probe, not the round: log it loudly
        logger.exception("health probe of %s crashed", target.url)
        ok, detail = False, f"probe error: {type(exc).__name__}"
    elapsed_ms = round((clock() - started) * 1000, 1)
    for cleanup in probe.cleanups:  # after timing: ending our own session is not the server's latency
        cleanup()
    return ProbeResult(ok, elapsed_ms, detail)


def _run_probe(service: ServiceConfig, probe: _Probe) -> str:
    if service.health_check_path:
        return _probe_path(probe, "/" + service.health_check_path.lstrip("/"))
    if service.kind == ServiceKind.MCP:
        return _probe_mcp(probe)
    return _probe_alive(probe)


def _probe_path(probe: _Probe, path: str) -> str:
    response = _open(probe, "GET", probe.target.base_path + path, headers=_auth_headers(probe.target))
    discard(response)
    if 200 <= response.status < 400:
        return f"HTTP {response.status}"
    raise ProbeFailed(f"HTTP {response.status}")


def _probe_alive(probe: _Probe) -> str:
    response = _open(probe, "GET", probe.target.base_path or "/", headers=_auth_headers(probe.target))
    discard(response)
    if response.status < 500:
        return f"HTTP {response.status}"
    raise ProbeFailed(f"HTTP {response.status}")


def _probe_mcp(probe: _Probe) -> str:
    modern_headers = {PROTOCOL_VERSION_HEADER: MODERN_PROTOCOL_VERSION, METHOD_HEADER: "server/discover"}
    answer = _post_rpc(probe, _discover_request(), modern_headers)
    if answer.message is not None and "result" in answer.message:
        return DETAIL_DISCOVER_OK
    if not _refused_as_legacy(answer):
        raise ProbeFailed(f"server/discover: {_describe_answer(answer)}")
    return _probe_legacy(probe)


def _refused_as_legacy(answer: _RpcAnswer) -> bool:
    """A 2025-era server refuses a session-less 2026 request with a 4xx and/or a JSON-RPC error
    (missing session, unsupported version, unknown method). Like the SDK's own client, anything
    short of a result falls back; a 5xx or a non-JSON-RPC answer is a failure, not an era verdict."""
    if answer.status >= 500:
        return False
    return answer.status >= 400 or (answer.message is not None and "error" in answer.message)


def _probe_legacy(probe: _Probe) -> str:
    initialize = _post_rpc(probe, _initialize_request(), {})
    if initialize.session_id:
        probe.cleanups.append(lambda: _end_session(probe, initialize.session_id or ""))
    version = str(_result_of(initialize, "initialize").get("protocolVersion") or LEGACY_PROTOCOL_VERSION)
    headers = {PROTOCOL_VERSION_HEADER: version}
    if initialize.session_id:
        headers[SESSION_ID_HEADER] = initialize.session_id
    initialized = _post_rpc(probe, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    if not 200 <= initialized.status < 300:
        raise ProbeFailed(f"notifications/initialized: HTTP {initialized.status}")
    _result_of(_post_rpc(probe, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers), "ping")
    return DETAIL_LEGACY_OK


def _end_session(probe: _Probe, session_id: str) -> None:
    """DELETE the probe's session so probes never pile up sessions on the server."""
    headers = {
        **_auth_headers(probe.target),
        SESSION_ID_HEADER: session_id,
        PROTOCOL_VERSION_HEADER: LEGACY_PROTOCOL_VERSION,
    }
    try:
        # Its own full timeout even past the probe's deadline: a leaked session is worse than a slow worker.
        discard(_open(probe, "DELETE", probe.target.base_path or "/", headers=headers, seconds=probe.timeout))
    except ProbeFailed as exc:
        logger.info("could not end a health-probe session on %s (%s); its idle timeout will", probe.target.url, exc)


def _discover_request() -> dict[str, Any]:
    meta = {
        PROTOCOL_VERSION_META_KEY: MODERN_PROTOCOL_VERSION,
        CLIENT_INFO_META_KEY: PROBE_CLIENT_INFO,
        CLIENT_CAPABILITIES_META_KEY: {},
    }
    return {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}


def _initialize_request() -> dict[str, Any]:
    params = {"protocolVersion": LEGACY_PROTOCOL_VERSION, "capabilities": {}, "clientInfo": PROBE_CLIENT_INFO}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}


def _result_of(answer: _RpcAnswer, method: str) -> dict[str, Any]:
    if answer.message is None or not isinstance(answer.message.get("result"), dict):
        raise ProbeFailed(f"{method}: {_describe_answer(answer)}")
    result: dict[str, Any] = answer.message["result"]
    return result


def _describe_answer(answer: _RpcAnswer) -> str:
    error = (answer.message or {}).get("error")
    if isinstance(error, dict):
        return f"HTTP {answer.status}, JSON-RPC error {error.get('code')}: {error.get('message')}"
    return f"HTTP {answer.status}, no JSON-RPC answer"


# --- HTTP for probes ---------------------------------------------------------------------------


def _auth_headers(target: TargetConfig) -> dict[str, str]:
    """The target's own upstream credential, when it has one: an authenticated server is probed as it is used."""
    return {target.auth_header: target.auth_value} if target.auth_header else {}


def _open(
    probe: _Probe,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
    seconds: float | None = None,
) -> urllib3.BaseHTTPResponse:
    """Send one request over the shared pool; return once status and headers have arrived."""
    target = probe.target
    seconds = probe.remaining() if seconds is None else seconds
    try:
        pool = upstream_pool(target.scheme, target.host, target.port)
        return pool.urlopen(
            method,
            path,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=seconds, read=seconds),
        )
    except HTTPError as exc:
        raise ProbeFailed(_describe_error(exc, probe.timeout)) from exc


def _describe_error(exc: HTTPError, timeout: float) -> str:
    if isinstance(exc, NewConnectionError):  # a subclass of the timeouts, so checked first
        return f"cannot connect: {exc}"
    if isinstance(exc, UrllibTimeoutError):
        return f"no answer within {timeout:g}s"
    return f"connection failed: {type(exc).__name__}"


def _post_rpc(probe: _Probe, message: dict[str, Any], extra_headers: dict[str, str]) -> _RpcAnswer:
    headers = {
        **_auth_headers(probe.target),
        "Content-Type": "application/json",
        "Accept": STREAMABLE_ACCEPT,
        **extra_headers,
    }
    path = probe.target.base_path or "/"
    response = _open(probe, "POST", path, headers=headers, body=json.dumps(message).encode())
    complete = False
    try:
        reply, complete = _read_reply(probe, response, message.get("id"))
    except HTTPError as exc:
        raise ProbeFailed(_describe_error(exc, probe.timeout)) from exc
    except OSError as exc:
        raise ProbeFailed(f"read failed: {exc}") from exc
    finally:
        release(response, complete=complete)
    return _RpcAnswer(response.status, reply, response.headers.get(SESSION_ID_HEADER))


def _read_reply(
    probe: _Probe, response: urllib3.BaseHTTPResponse, request_id: Any
) -> tuple[dict[str, Any] | None, bool]:
    """The JSON-RPC response to ``request_id`` from a JSON body or an event stream, and whether the
    answer was read to its end (only then may the connection go back to the pool)."""
    if response.headers.get("Content-Type", "").lower().startswith("text/event-stream"):
        for data in _event_data(probe, response):
            document = _json_or_none(data)
            if _answers(document, request_id):
                return document, False
        return None, True
    document = _json_or_none(b"".join(_chunks(probe, response)))
    return (document if _answers(document, request_id) else None), True


def _answers(document: Any, request_id: Any) -> bool:
    """A result must carry our id; an error may not (servers refuse before reading the id)."""
    if not isinstance(document, dict) or request_id is None:
        return False
    return ("result" in document and document.get("id") == request_id) or "error" in document


def _chunks(probe: _Probe, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The body as it arrives (``read1``: never wait to fill a buffer), bounded in size and time."""
    total = 0
    while chunk := response.read1(READ_CHUNK_BYTES):
        total += len(chunk)
        if total > MAX_ANSWER_BYTES:
            raise ProbeFailed(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        yield chunk
        probe.remaining()


def _event_data(probe: _Probe, response: urllib3.BaseHTTPResponse) -> Iterator[str]:
    """Each server-sent event's data (its ``data:`` lines joined), as soon as the event is complete."""
    pending = b""
    data_lines: list[str] = []
    for chunk in _chunks(probe, response):
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line and data_lines:
                yield "\n".join(data_lines)
                data_lines = []
            elif line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
    if data_lines:
        yield "\n".join(data_lines)


def _json_or_none(text: str | bytes) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None

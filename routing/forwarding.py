"""Forwarding one request to an upstream target and streaming the answer back.

Reverse-proxy rules (as in RFC 9110 section 7.6 and django-revproxy): hop-by-hop headers are
dropped both ways, ``Host`` names the target, ``X-Forwarded-*`` tell the upstream who asked,
the client's gateway credential is never passed on (MCP forbids token passthrough) and the
target's own credential is added instead. Bodies are passed byte-exact (``decode_content=False``)
and ``text/event-stream`` answers are relayed event by event as they arrive, never buffered.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import urllib3
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from urllib3.exceptions import ConnectTimeoutError, EmptyPoolError, HTTPError, NewConnectionError, TimeoutError

from gateway_project.errors import UpstreamConnectFailed, UpstreamConnectTimeout, UpstreamTimeout, UpstreamUnavailable
from gateway_project.exchange import Exchange
from performance.pools import pool_exhausted, release, upstream_pool
from routing.conf import routing_settings
from routing.snapshot import RouteConfig, TargetConfig

HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# The client's credential for the gateway itself; never forwarded upstream.
CLIENT_CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})
# Set by the gateway from what it knows, never copied from the client.
REWRITTEN_HEADERS = frozenset({"host", "x-forwarded-host", "x-forwarded-proto"})

# A complete answer up to this size is read in one go; anything larger, of unknown size, or
# an event stream is relayed chunk by chunk.
WHOLE_BODY_LIMIT = 1024 * 1024
STREAM_READ_BYTES = 64 * 1024
KEEPALIVE_COMMENT = b": keep-alive\n\n"


def _client_headers(request: HttpRequest) -> Iterator[tuple[str, str]]:
    """The request's headers with their wire names (WSGI folds them into META)."""
    for key, value in request.META.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").title(), value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            yield key.replace("_", "-").title(), value


def upstream_request_headers(request: HttpRequest, target: TargetConfig, body_length: int) -> dict[str, str]:
    connection_tokens = {
        token.strip().lower() for token in request.META.get("HTTP_CONNECTION", "").split(",") if token.strip()
    }
    headers: dict[str, str] = {}
    for name, value in _client_headers(request):
        lowered = name.lower()
        if (
            lowered in HOP_BY_HOP_HEADERS
            or lowered in connection_tokens
            or lowered in CLIENT_CREDENTIAL_HEADERS
            or lowered in REWRITTEN_HEADERS
            or lowered == "content-length"
        ):
            continue
        headers[name] = value
    headers["Host"] = target.host_header
    client_ip = request.META.get("REMOTE_ADDR", "")
    prior = request.META.get("HTTP_X_FORWARDED_FOR", "")
    headers["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    headers["X-Forwarded-Proto"] = request.scheme or "http"
    headers["X-Forwarded-Host"] = request.META.get("HTTP_HOST", "")
    if body_length or request.method in ("POST", "PUT", "PATCH"):
        headers["Content-Length"] = str(body_length)
    if target.auth_header:
        headers[target.auth_header] = target.auth_value
    return headers


def upstream_url_path(target: TargetConfig, rewritten_path: str, query_string: str) -> str:
    path = (target.base_path + rewritten_path) or "/"
    return f"{path}?{query_string}" if query_string else path


def open_upstream(exchange: Exchange, route: RouteConfig, target: TargetConfig) -> urllib3.BaseHTTPResponse:
    """Send the request; return once the upstream's status and headers have arrived.

    Connect failures raise the ``UpstreamConnect*`` errors, which promise nothing was sent.
    """
    request = exchange.request
    service = route.service
    pool = upstream_pool(target.scheme, target.host, target.port)
    try:
        response = pool.urlopen(
            request.method or "GET",
            upstream_url_path(target, exchange.upstream_path, request.META.get("QUERY_STRING", "")),
            body=exchange.body or None,
            headers=upstream_request_headers(request, target, len(exchange.body)),
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
            timeout=urllib3.Timeout(connect=route.connect_timeout, read=route.request_timeout),
        )
    except NewConnectionError as exc:  # a subclass of the timeout errors, so checked first
        raise UpstreamConnectFailed(f"Cannot connect to the upstream of {service.name}") from exc
    except ConnectTimeoutError as exc:
        raise UpstreamConnectTimeout(f"Connecting to the upstream of {service.name} timed out") from exc
    except TimeoutError as exc:
        raise UpstreamTimeout(f"The upstream of {service.name} did not answer in time") from exc
    except EmptyPoolError as exc:  # the gateway's own limit: not the target's failure (503)
        raise pool_exhausted(service.name) from exc
    except HTTPError as exc:
        raise UpstreamUnavailable(f"The upstream of {service.name} failed: {type(exc).__name__}") from exc
    _use_response_timeout(response, route.response_timeout)
    return response


def _response_socket(response: urllib3.BaseHTTPResponse) -> socket.socket | None:
    """The socket the body is read from.

    Usually the pooled connection's; but when the upstream answers ``Connection: close``,
    http.client detaches it from the connection and only the response's reader still holds it.
    """
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        return sock
    reader = getattr(getattr(response, "_fp", None), "fp", None)
    return getattr(getattr(reader, "raw", None), "_sock", None)


def data_arrives_within(upstream: urllib3.BaseHTTPResponse, seconds: float) -> bool:
    """True when bytes of ``upstream``'s body are buffered or arrive within ``seconds`` (then a
    read won't stall): peek at the reader's buffer, then select the socket."""
    reader = getattr(getattr(upstream, "_fp", None), "fp", None)
    sock = _response_socket(upstream)
    if reader is None or sock is None:
        return True  # cannot tell: read, and let the socket timeout bound the wait
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        buffered = reader.peek(1)
    except OSError:
        buffered = b""
    finally:
        sock.settimeout(timeout)
    if buffered:
        return True
    readable, _, _ = select.select([sock], [], [], seconds)
    return bool(readable)


def _use_response_timeout(response: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Headers arrived within the request timeout; the body gets the (longer) response timeout."""
    sock = _response_socket(response)
    if sock is not None:
        sock.settimeout(seconds)


def _response_headers(upstream: urllib3.BaseHTTPResponse) -> list[tuple[str, str]]:
    connection_tokens = {
        token.strip().lower() for token in upstream.headers.get("Connection", "").split(",") if token.strip()
    }
    return [
        (name, value)
        for name, value in upstream.headers.iteritems()
        if name.lower() not in HOP_BY_HOP_HEADERS and name.lower() not in connection_tokens
    ]


def _is_event_stream(upstream: urllib3.BaseHTTPResponse) -> bool:
    return upstream.headers.get("Content-Type", "").lower().startswith("text/event-stream")


def _declared_length(upstream: urllib3.BaseHTTPResponse) -> int | None:
    raw = upstream.headers.get("Content-Length", "")
    return int(raw) if raw.isdigit() else None


def _read_whole_body(upstream: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
    """Read a complete answer, but not past ``deadline``: a slow drip cannot outlast it."""
    chunks: list[bytes] = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout("The upstream did not finish its answer within the response timeout")
            _use_response_timeout(upstream, remaining)
            chunk = upstream.read1(STREAM_READ_BYTES)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except TimeoutError as exc:
        raise UpstreamTimeout("The upstream stopped sending its answer") from exc
    except (HTTPError, OSError) as exc:
        raise UpstreamUnavailable("The upstream closed the connection mid-answer") from exc


def relay_response(
    exchange: Exchange, upstream: urllib3.BaseHTTPResponse, response_timeout: float
) -> HttpResponse | StreamingHttpResponse:
    """Turn the upstream answer into the client's response, streaming what must stream.

    A complete answer must arrive within ``response_timeout`` in total; a stream may run for
    ever, but never stay silent longer than ``response_timeout`` between two reads.
    """
    exchange.status = upstream.status
    declared = _declared_length(upstream)
    if not _is_event_stream(upstream) and declared is not None and declared <= WHOLE_BODY_LIMIT:
        complete = False
        try:
            body = _read_whole_body(upstream, time.monotonic() + response_timeout)
            complete = True
        finally:
            release(upstream, complete=complete)
        response: HttpResponse | StreamingHttpResponse = HttpResponse(body, status=upstream.status)
        exchange.bytes_sent = len(body)
    else:
        keepalive = _is_event_stream(upstream)
        response = StreamingHttpResponse(
            RelayedStream(exchange, upstream, response_timeout, keepalive=keepalive), status=upstream.status
        )
    if "Content-Type" not in upstream.headers:
        del response["Content-Type"]  # Django's text/html default would be an invented header
    for name, value in _response_headers(upstream):
        response[name] = value
    return response


class RelayedStream:
    """Yields what the upstream sent as soon as it arrives.

    The server calls ``close()`` when the response is over: after the last chunk, when the
    client went away, or even before the first chunk was asked for. Closing a half-read
    upstream connection is how the upstream learns the request was cancelled.

    A WSGI server only learns that a client left when a write fails. So while an event stream
    is silent, a comment line (which SSE clients ignore) is sent between events every few
    seconds: a client that left is noticed then, and its thread is freed, instead of waiting
    for the upstream's next event. Silence longer than the response timeout ends the stream.
    """

    def __init__(
        self, exchange: Exchange, upstream: urllib3.BaseHTTPResponse, response_timeout: float, *, keepalive: bool
    ) -> None:
        self._exchange = exchange
        self._upstream = upstream
        self._response_timeout = response_timeout
        self._keepalive = keepalive
        self._silent_for = 0.0
        self._between_events = True
        self._complete = False
        self._closed = False

    def __iter__(self) -> RelayedStream:
        return self

    def __next__(self) -> bytes:
        if self._complete or self._closed:
            raise StopIteration
        if self._keepalive and not data_arrives_within(self._upstream, self._keepalive_wait()):
            return self._on_silence()
        try:
            chunk = self._upstream.read1(STREAM_READ_BYTES)
        except (HTTPError, OSError):
            self._exchange.error_code = "upstream_stream_broken"
            self.close()
            raise StopIteration from None
        if not chunk:
            self._complete = True
            raise StopIteration
        self._silent_for = 0.0
        self._between_events = chunk.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))
        self._exchange.bytes_sent += len(chunk)
        return chunk

    def _keepalive_wait(self) -> float:
        interval = routing_settings.stream_keepalive_seconds
        return max(0.0, min(interval, self._response_timeout - self._silent_for))

    def _on_silence(self) -> bytes:
        self._silent_for += self._keepalive_wait() or routing_settings.stream_keepalive_seconds
        if self._silent_for >= self._response_timeout:
            self._exchange.error_code = "upstream_stream_silent"
            self.close()
            raise StopIteration
        # Mid-event a comment would corrupt the event; then only keep waiting.
        return KEEPALIVE_COMMENT if self._between_events else b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        release(self._upstream, complete=self._complete)

"""HTML-entity encoding of request inputs, per route (``RouteConfig.sanitization``).

``escape`` rewrites ``& < > " '`` as entities in the string inputs an upstream receives: every
JSON string value (keys are field names and stay as they are), each value of a form body, the
whole text of a ``text/*`` body. A body is only re-serialized when something changed, and then
``exchange.body`` holds the new bytes, so the forwarded ``Content-Length`` follows.

Why MCP routes default to ``off``: an MCP tool's arguments are data for a program, not markup
for a browser. A ``run_sql`` tool must receive ``a < b AND name = 'x'``, a code tool must receive
``if (a && b)``, byte-exact; entity-encoding them would silently corrupt the call, and the
tool's own output is where escaping belongs (at render time, by whatever renders it). Plain HTTP
routes default to ``escape`` because their upstreams are often web apps that echo input into
HTML. On an MCP route set to ``escape`` explicitly, only ``params`` is encoded: ``id``,
``method`` and ``jsonrpc`` must reach the server exactly, or the answer would not match the call.

Escaping is not idempotent (``&amp;`` becomes ``&amp;amp;``): an upstream that escapes again
shows entities; that is the price of escaping on the way in.

``safe_excerpt`` is what the gateway uses whenever it echoes request content in its own error
messages and logs: short, control characters made visible, HTML-escaped.
"""

from __future__ import annotations

import codecs
import html
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.http import HttpResponse
from django.utils.http import parse_header_parameters

from gateway_project.errors import BadRequest
from gateway_project.exchange import Exchange

ESCAPE = "escape"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
EXCERPT_LENGTH = 32


def safe_excerpt(value: str, limit: int = EXCERPT_LENGTH) -> str:
    """``value`` fit for a log line or an error message: at most ``limit`` characters (then an
    ellipsis), non-printable characters as escapes, HTML-escaped.

    >>> safe_excerpt("<img src=x onerror=alert(1)>\\r\\n", limit=12)
    '&lt;img src=x …'
    """
    short = value if len(value) <= limit else value[:limit] + "…"
    visible = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in short)
    return html.escape(visible)


def escape_strings_in_place(document: Any) -> tuple[Any, bool]:
    """HTML-escape every string value in a parsed JSON document, without recursion.

    Containers are changed in place; returns the (possibly new, for a bare string) document and
    whether anything changed.
    """
    if isinstance(document, str):
        escaped = html.escape(document)
        return escaped, escaped != document
    changed = False
    pending = [document] if isinstance(document, (dict, list)) else []
    while pending:
        node = pending.pop()
        entries = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in entries:
            if isinstance(value, str):
                escaped = html.escape(value)
                if escaped != value:
                    node[key] = escaped
                    changed = True
            elif isinstance(value, (dict, list)):
                pending.append(value)
    return document, changed


def escape_form(body: bytes, charset: str) -> bytes | None:
    """The form body with each value escaped, or ``None`` when nothing needed escaping."""
    pairs = parse_qsl(body.decode(charset, "surrogateescape"), keep_blank_values=True)
    escaped = [(name, html.escape(value)) for name, value in pairs]
    if escaped == pairs:
        return None
    return urlencode(escaped, encoding=charset, errors="surrogateescape").encode("ascii")


def escape_text(body: bytes, charset: str) -> bytes | None:
    """The text body escaped (undecodable bytes kept as they were), or ``None`` if unchanged."""
    text = body.decode(charset, "surrogateescape")
    escaped = html.escape(text)
    if escaped == text:
        return None
    return escaped.encode(charset, "surrogateescape")


def _known_charset(params: dict[str, str]) -> str:
    charset = params.get("charset", "utf-8")
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return "utf-8"


def _escaped_json_body(exchange: Exchange) -> bytes | None:
    rpc = exchange.rpc
    assert rpc is not None
    if exchange.is_mcp:  # only params: id, method and jsonrpc must reach the server exactly
        messages = rpc.payload if rpc.is_batch else [rpc.payload]
        params = [m["params"] for m in messages if isinstance(m, dict) and isinstance(m.get("params"), (dict, list))]
        changed = escape_strings_in_place(params)[1]
        document = rpc.payload
    else:
        document, changed = escape_strings_in_place(rpc.payload)
    if not changed:
        return None
    try:
        serialized = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # 1e999 parses as infinity, which JSON cannot say again
        raise BadRequest("A number in the JSON body is out of range") from None
    return serialized.encode("utf-8")


def sanitize_inputs(exchange: Exchange) -> HttpResponse | None:
    """On ``escape`` routes, forward the body with its string inputs HTML-escaped."""
    route = exchange.route
    if route is None or route.sanitization != ESCAPE or not exchange.body:
        return None
    rpc = exchange.rpc
    if rpc is not None and not rpc.parse_error:
        new_body = _escaped_json_body(exchange)
    else:
        media_type, params = parse_header_parameters(exchange.request.META.get("CONTENT_TYPE", ""))
        media_type = media_type.strip().lower()
        if media_type == FORM_CONTENT_TYPE:
            new_body = escape_form(exchange.body, _known_charset(params))
        elif media_type.startswith("text/"):
            new_body = escape_text(exchange.body, _known_charset(params))
        else:  # binary, multipart and unparsed JSON types are forwarded as they are
            new_body = None
    if new_body is not None:
        exchange.body = new_body
    return None

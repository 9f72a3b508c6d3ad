"""SQL-injection and XSS detection on request inputs, per route (``RouteConfig.injection_detection``).

What is inspected: every key and string value of a parsed JSON body (an iterative walk, at most
``GATEWAY_INJECTION_MAX_NODES`` nodes), each query parameter name and value, and for other
bodies the raw text (form bodies decoded first; binary types skipped). Each string is also
inspected URL-decoded and HTML-entity-decoded when it contains ``%`` or ``&``, so ``%3Cscript``
and ``&#106;avascript:`` are seen for what they are.

The rules look for the *shape* of an attack, not for SQL or HTML words: ``select``, ``drop``,
``<b>``, "update the table" and SQL written as SQL pass; a quote that closes a string and then
says ``OR '1'='1`` does not. Every quantifier is bounded, so a rule's cost stays linear in the
input. ``bench/injection_rates.py`` reports detection and false-positive rates over
``security/corpora/``.

Modes: ``block`` refuses (400, ``injection_detected``; JSON-RPC -32602 on MCP routes, since the
offending value is a parameter), ``log`` warns with the route, the rule and a short escaped
excerpt (never the whole value), ``off`` does nothing.

Example: ``find_injection("admin' OR '1'='1")`` is ``Finding(rule="sql_tautology", ...)``.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, unquote

from django.http import HttpResponse
from django.utils.http import parse_header_parameters

from gateway_project.errors import JSONRPC_INVALID_PARAMS, GatewayError
from gateway_project.exchange import Exchange
from security.conf import security_settings
from security.sanitization import safe_excerpt

logger = logging.getLogger(__name__)

URL_IGNORED_CHARACTERS = str.maketrans("", "", "\t\n\r")

BLOCK = "block"
LOG = "log"

# Rule name -> pattern. Order matters only for which name a value that matches two rules gets.
RULES: dict[str, str] = {
    # <script ...> or </script>, also with spaces or a slash: < script/src=...>
    "xss_script_tag": r"<\s{0,8}/?\s{0,8}script\b",
    # An on*= handler inside a tag (<img src=x onerror=...>, <svg/onload=...>) ...
    "xss_event_handler": r"<[a-z!/][^<>]{0,400}?[\s\"'/]on[a-z]{3,24}\s{0,8}=",
    # ... or after a quote that breaks out of an attribute: " onmouseover="alert(1)
    "xss_attribute_breakout": (
        r"[\"'][\s/]{0,8}(?:[\w-]{1,30}(?:=[^\s>]{0,40})?\s{1,8}){0,4}on[a-z]{3,24}\s{0,8}=\s{0,8}[\"']?[\w(]"
    ),
    # javascript:/vbscript: as a URL (not "JavaScript: the good parts"), also in attributes.
    # ... followed by code: a call, an assignment, an escape or a comment (javascript:alert(1),
    # javascript:x=1, javascript://%0a...), so a course title like "JavaScript:Basics" passes.
    "xss_script_url": (
        r"(?:^|[\s\"'=(<`])\s{0,8}(?:java|vb|live)\s{0,4}script\s{0,8}:"
        r"(?=\s{0,8}(?:[\w$.\[\]'\"]{1,80}\s{0,8}[(=`]|[/%&\\'\"(`]))"
    ),
    "xss_data_html_url": r"\bdata\s{0,4}:\s{0,4}text/html\b",
    "xss_css_expression": r"\bstyle\s{0,8}=[^>]{0,200}?\bexpression\s{0,8}\(",
    # A quote (or a number) then OR/AND then a comparison: ' OR '1'='1, " or ""=", 1' or 1=1
    "sql_tautology": (
        r"['\"`]\s{0,8}\){0,4}\s{0,8}(?:\bor\b|\band\b|\|\||&&)\s{0,8}\({0,4}\s{0,8}"
        r"(?:['\"`][^'\"`]{0,40}['\"`]|\d{1,20}|true|false)\s{0,8}(?:=(?!=)|<>|!=|<|>|\blike\b|\bis\s{1,8}(?:not\s{1,8})?null\b)"
        r"|['\"`]\s{0,8}\){0,4}\s{0,8}\b(?:or|and)\s{1,8}(?:true|not\s{1,8}false)\s{0,8}(?:--|#|/\*|;|\Z)"
    ),
    "sql_numeric_tautology": r"\b(?:or|and)\s{1,8}(?P<lhs>\d{1,10})\s{0,8}=\s{0,8}(?P=lhs)\s{0,8}(?:--|#|/\*|;|$)",
    # A quote, maybe a closing paren, then UNION SELECT; or UNION SELECT of placeholder columns.
    "sql_union_select": (
        r"(?:['\"`)]|\b\d{1,10})\s{0,8}(?:/\*.{0,40}?\*/|\s){0,8}union\b(?:/\*.{0,40}?\*/|\s){1,8}"
        r"(?:all\s{1,8}|distinct\s{1,8})?select\b"
        r"|\bunion\b(?:/\*.{0,40}?\*/|\s){1,8}(?:all\s{1,8})?select\s{1,8}(?:null|\d{1,10}|@@\w{1,20}|0x[0-9a-f]{1,40})\s{0,8}(?:,|--|#|$)"
    ),
    "sql_inline_comment_keyword": r"\b(?:union|select|from|where|or|and)/\*.{0,40}?\*/(?:select|union|all|from|\w)",
    # '; DROP TABLE  /  '); DELETE FROM  /  1; shutdown
    "sql_stacked_query": (
        r"['\"`\d]\s{0,8}\){0,4}\s{0,8};\s{0,8}"
        r"(?:drop|truncate|alter|delete|insert|update|create|exec(?:ute)?|shutdown|declare|grant"
        # select only when what follows reads like a column list, not prose ("3; select the form")
        r"|select(?=\s{1,8}(?:\*|@@|null\b|\d|[\w.]{1,40}\s{0,8}(?:,|\bfrom\b|\())))\b"
    ),
    "sql_drop_table": r";\s{0,8}drop\s{1,8}(?:table|database|schema)\b",
    # A quote closing the string, then a comment swallowing the rest of the query: admin'--
    "sql_comment_after_quote": r"['\"`]\s{0,8}\){0,4}\s{0,8}(?:--|#|/\*)[\s\-+]{0,4}\Z",
    "sql_time_based": (
        r"(?:\b(?:or|and|select|if|case|when|then|else)\b|['\",(|&])\s{0,8}\(?\s{0,8}(?:sleep|pg_sleep)\s{0,8}\(\s{0,8}\d"
        r"|\bbenchmark\s{0,8}\(\s{0,8}\d{1,12}\s{0,8},"
        r"|\bwaitfor\s{1,8}delay\s{1,8}['\"]"
    ),
    "sql_dangerous_function": r"\bxp_cmdshell\b|\binto\s{1,8}(?:out|dump)file\b|\bload_file\s{0,8}\(",
    # Column-count and grouping probes after a closing quote: 1' ORDER BY 3--, ' HAVING 1=1--
    "sql_structure_probe": (
        r"['\"`]\s{0,8}\){0,4}\s{0,8}(?:order\s{1,8}by\s{1,8}\d{1,4}\b|group\s{1,8}by\b|having\s{1,8}\d{1,10}\s{0,8}=)"
    ),
    # Error- and blind-extraction helpers that ordinary text never calls.
    "sql_extraction_function": r"\b(?:extractvalue|updatexml)\s{0,8}\(|\bascii\s{0,8}\(\s{0,8}substring\s{0,8}\(",
    # The parenthesised tautology: 1) or (1=1
    "sql_parenthesized_tautology": r"\)\s{0,8}\b(?:or|and)\b\s{0,8}\(\s{0,8}(?P<plhs>\d{1,10})\s{0,8}=\s{0,8}(?P=plhs)\b",
}

_DETECTOR = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in RULES.items()), re.IGNORECASE)

BINARY_MEDIA_PREFIXES = ("image/", "audio/", "video/", "font/")
BINARY_MEDIA_TYPES = frozenset(
    {"application/octet-stream", "application/zip", "application/gzip", "application/pdf", "application/x-protobuf"}
)
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class InjectionDetected(GatewayError):
    """Raised on a ``block`` route when an input looks like SQL injection or XSS."""

    status = 400
    code = "injection_detected"
    title = "Input rejected as a likely injection attack"
    jsonrpc_code = JSONRPC_INVALID_PARAMS


class TooManyValuesToInspect(GatewayError):
    """Raised on a ``block`` route when a JSON body has more values than the scan will inspect."""

    status = 400
    code = "too_many_values"
    title = "Too many values to inspect"
    jsonrpc_code = JSONRPC_INVALID_PARAMS


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    location: str  # where, e.g. "body params.arguments.q" or "query parameter 'id'"
    excerpt: str  # the matched text, short and escaped


def _variants(value: str) -> Iterator[str]:
    yield value
    if "%" in value:
        decoded = unquote(value)
        if decoded != value:
            yield decoded
    if "&" in value:
        unescaped = html.unescape(value)
        if unescaped != value:
            yield unescaped
            # Browsers drop tabs and newlines inside URLs: jav&#x09;ascript: is javascript:.
            squeezed = unescaped.translate(URL_IGNORED_CHARACTERS)
            if squeezed != unescaped:
                yield squeezed


# Every rule needs at least one character outside this set (a quote, a space, <, :, (, ;, =, *,
# ...), and without % or & there are no decoded variants: such a value cannot match, and most
# values (method names like tools/call, ids, versions, tool names, _meta keys) are like that.
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_./\-]*")


def find_injection(value: str, location: str = "") -> Finding | None:
    """The first rule ``value`` (or its URL-/entity-decoded form) matches, or ``None``."""
    if _PLAIN_TOKEN.fullmatch(value):
        return None
    for variant in _variants(value):
        match = _DETECTOR.search(variant)
        if match is not None:
            return Finding(rule=match.lastgroup or "unknown", location=location, excerpt=safe_excerpt(match.group()))
    return None


# A node's place in the document, as (parent place, key) links: built for every node, but turned
# into text only for the one a finding names.
JsonPlace = tuple[Any, str | int] | None


def _json_path(place: JsonPlace) -> str:
    keys: list[str | int] = []
    while place is not None:
        place, key = place
        keys.append(key)
    path = ""
    for key in reversed(keys):
        if isinstance(key, int):
            path = f"{path}[{key}]"
        else:
            path = f"{path}.{safe_excerpt(key)}" if path else safe_excerpt(key)
    return path


def scan_json(document: Any, max_nodes: int) -> tuple[Finding | None, bool]:
    """Walk a parsed JSON document iteratively; returns the first finding and whether the node
    cap cut the walk short."""
    pending: list[tuple[Any, JsonPlace]] = [(document, None)]
    visited = 0
    while pending:
        node, place = pending.pop()
        visited += 1
        if visited > max_nodes:
            return None, True
        if isinstance(node, str):
            finding = find_injection(node)
            if finding is not None:
                return replace(finding, location=f"body {_json_path(place) or '(root)'}"), False
        elif isinstance(node, dict):
            for key, value in node.items():
                finding = find_injection(key)
                if finding is not None:
                    return replace(finding, location=f"body key {_json_path((place, key))}"), False
                pending.append((value, (place, key)))
        elif isinstance(node, list):
            pending.extend((value, (place, index)) for index, value in enumerate(node))
    return None, False


def scan_pairs(pairs: list[tuple[str, str]], what: str) -> Finding | None:
    for name, value in pairs:
        label = f"{what} {safe_excerpt(name)!r}"
        finding = find_injection(name, label) or find_injection(value, label)
        if finding is not None:
            return finding
    return None


def _scan_raw_body(exchange: Exchange) -> Finding | None:
    media_type, params = parse_header_parameters(exchange.request.META.get("CONTENT_TYPE", ""))
    media_type = media_type.strip().lower()
    if media_type in BINARY_MEDIA_TYPES or media_type.startswith(BINARY_MEDIA_PREFIXES):
        return None
    text = exchange.body.decode("utf-8", "replace")
    if media_type == FORM_CONTENT_TYPE:
        return scan_pairs(parse_qsl(text, keep_blank_values=True), "form field")
    return find_injection(text, "body")


def detect_injection(exchange: Exchange) -> HttpResponse | None:
    """Block or log inputs shaped like SQL injection or XSS, as the route says."""
    route = exchange.route
    if route is None or route.injection_detection not in (BLOCK, LOG):
        return None
    query = exchange.request.META.get("QUERY_STRING", "")
    finding = scan_pairs(parse_qsl(query, keep_blank_values=True), "query parameter") if query else None
    truncated = False
    if finding is None and exchange.body:
        rpc = exchange.rpc
        if rpc is not None and not rpc.parse_error:
            finding, truncated = scan_json(rpc.payload, security_settings.injection_max_nodes)
        else:
            finding = _scan_raw_body(exchange)
    blocking = route.injection_detection == BLOCK
    if finding is not None:
        logger.warning(
            "injection suspected on route %s: rule %s in %s: %s (%s)",
            route.name, finding.rule, finding.location, finding.excerpt, "blocked" if blocking else "logged only",
        )
        if blocking:
            raise InjectionDetected(f"Input rejected: {finding.location} matches the {finding.rule} rule")
    elif truncated:
        limit = security_settings.injection_max_nodes
        logger.warning("injection scan on route %s stopped after %d values", route.name, limit)
        if blocking:
            raise TooManyValuesToInspect(f"The body has more than {limit} values to inspect")
    return None

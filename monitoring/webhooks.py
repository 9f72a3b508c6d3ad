"""Telling a webhook that an alert fired or resolved: one JSON POST, never an exception.

The worker sends it while evaluating, so it is bounded (5 s in all, no retries, no redirects)
and its outcome is a short text stored on the event for the admin to show, whatever happens.

    >>> send_webhook("http://127.0.0.1:9/hook", {"state": "firing"})
    'failed: NewConnectionError'
"""

from __future__ import annotations

import json
from typing import Any

import urllib3

WEBHOOK_TIMEOUT = urllib3.Timeout(total=5.0)
USER_AGENT = "mcp-gateway-alerts"
MAX_STATUS_LENGTH = 200

# Built once: webhooks are rare, but a pool still spares a handshake when several rules change at once.
_http = urllib3.PoolManager(num_pools=4, retries=False, timeout=WEBHOOK_TIMEOUT)


def send_webhook(url: str, payload: dict[str, Any]) -> str:
    """POST ``payload`` as JSON; "delivered (HTTP 2xx)" or "failed: <why>"."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    try:
        response = _http.request("POST", url, body=body, headers=headers, redirect=False, preload_content=False)
    except Exception as exc:  # any failure is the event's webhook status, never the worker's problem
        return _status(f"failed: {_reason(exc)}")
    try:
        status = response.status
    finally:
        response.close()  # the body is not needed, and a large one must not be read
        response.release_conn()
    if 200 <= status < 300:
        return f"delivered (HTTP {status})"
    return f"failed: HTTP {status}"


def _reason(error: Exception) -> str:
    """The root cause's type: MaxRetryError wraps the one that matters (refused, timed out)."""
    reason = getattr(error, "reason", None)
    return type(reason).__name__ if isinstance(reason, Exception) else type(error).__name__


def _status(text: str) -> str:
    return text[:MAX_STATUS_LENGTH]

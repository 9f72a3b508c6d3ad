"""Performance's pipeline stages: recording each exchange once it is over."""

from __future__ import annotations

import json
import logging

from gateway_project.exchange import Exchange
from monitoring.stages import record_metrics

access_log = logging.getLogger("gateway.access")


def record_exchange(exchange: Exchange) -> None:
    """Write the access-log line; runs for every exchange, early answers and errors included.

    For a streamed response it runs when the stream closes, so the duration covers the stream.
    Never logs credentials or bodies.
    """
    request = exchange.request
    route = exchange.route.name if exchange.route else "-"
    target = exchange.target.url if exchange.target else "-"
    rpc = exchange.rpc.method if exchange.rpc and exchange.rpc.method else "-"
    access_log.info(
        'method=%s path=%s route=%s target=%s rpc=%s principal=%s status=%s duration_ms=%.1f bytes=%d attempts=%d '
        'error=%s',
        request.method,
        json.dumps(request.path),  # quoted and escaped: a path cannot forge log lines
        route,
        target,
        rpc,
        exchange.principal.id,  # who, never their credential
        exchange.status,
        exchange.elapsed_ms(),
        exchange.bytes_sent,
        exchange.attempts,
        exchange.error_code or "-",
    )
    record_metrics(exchange)  # in-process counts for /metrics and alerts; never raises

"""Monitoring's part of the request path: count the finished exchange, in memory only.

Called from ``performance.stages.record_exchange`` (every exchange, early refusals included;
for streams when the stream closes). No store, no network, no database here: ``recorder.py``
adds to in-process tallies and ``flush.py`` ships them every interval.
"""

from __future__ import annotations

import logging

from gateway_project.exchange import Exchange
from monitoring.flush import ensure_flusher_started
from monitoring.recorder import recorder

logger = logging.getLogger("gateway.metrics")


def record_metrics(exchange: Exchange) -> None:
    """Count ``exchange``; never raises (metrics must not fail a request that succeeded)."""
    try:
        recorder.observe(exchange)
        ensure_flusher_started()
    except Exception:
        logger.exception("recording metrics failed; this exchange is not counted")

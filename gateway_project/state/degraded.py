"""Running on when the shared state store is down.

Routing state (balancer positions, breaker and health verdicts, in-flight counts) is advice:
without it the gateway still routes, assuming every target is available and counting locally,
rather than failing every request. Each such fallback is logged, at most once per interval per
process, so an outage is visible without flooding the log.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("gateway.state")

LOG_INTERVAL_SECONDS = 10.0

_last_logged: dict[str, float] = {}
_lock = threading.Lock()


def note_state_store_down(what: str, error: Exception) -> None:
    """Log that ``what`` fell back to local behaviour (throttled per ``what``)."""
    now = time.monotonic()
    with _lock:
        if now - _last_logged.get(what, -LOG_INTERVAL_SECONDS) < LOG_INTERVAL_SECONDS:
            return
        _last_logged[what] = now
    logger.warning("state store unavailable, %s degraded to local behaviour: %s", what, error)


def reset_log_throttle() -> None:
    """Forget what was logged (tests start each case with a clean slate)."""
    with _lock:
        _last_logged.clear()

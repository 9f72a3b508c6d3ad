"""How many proxied exchanges this process serves at once.

Every open event stream holds a server thread for its whole life. Without a cap, once streams
hold every thread, new requests queue inside the server with no answer at all; with it, the
process answers 503 with Retry-After at once, and the spare threads keep serving health checks,
the admin and these refusals.
"""

from __future__ import annotations

import threading

from django.http import HttpResponse

from gateway_project.errors import GatewayError
from gateway_project.exchange import Exchange
from performance.conf import performance_settings


class GatewayBusy(GatewayError):
    """Raised when this process already serves its maximum of proxied exchanges."""

    status = 503
    code = "gateway_busy"
    title = "The gateway is at capacity"


class InFlightCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0

    def enter(self) -> None:
        """Count one more exchange, or raise GatewayBusy when at the limit."""
        with self._lock:
            if self.current >= performance_settings.max_in_flight:
                raise GatewayBusy(
                    f"This gateway process is serving its maximum of {performance_settings.max_in_flight} requests",
                    headers={"Retry-After": "1"},
                )
            self.current += 1

    def leave(self) -> None:
        with self._lock:
            self.current -= 1


in_flight = InFlightCounter()


def take_capacity(exchange: Exchange) -> HttpResponse | None:
    """Take one of this process's places for the exchange; it is given back when it finishes."""
    in_flight.enter()
    exchange.on_finish.append(in_flight.leave)
    return None

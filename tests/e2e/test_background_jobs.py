"""`manage.py serve` runs the background jobs: in the gateway process (embedded) or beside it."""

from __future__ import annotations

import time

from tests.live_servers import LiveGateway

READ_LAST_CHECK = (
    "from routing.models import Target; "
    "t = Target.objects.get(service__name='demo'); "
    "print(t.healthy, t.last_health_check is not None, t.response_time_ms is not None)"
)


def test_demo_target_gets_actively_health_checked(live_gateway: LiveGateway) -> None:
    """Within a few intervals the worker has probed the demo server and recorded the result."""
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline:
        seen = live_gateway.manage("shell", "--no-imports", "-c", READ_LAST_CHECK).stdout.strip()
        if seen == "True True True":
            return
        time.sleep(0.5)
    raise AssertionError(f"the demo target was never health-checked (last read: {seen!r})")

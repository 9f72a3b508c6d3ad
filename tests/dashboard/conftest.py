"""Personas for the dashboard (a staff operator, a user who is not staff) and hand-driven
metrics flushing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from monitoring.flush import flush_metrics, stop_flusher
from monitoring.recorder import recorder

INTERVAL = 10


@pytest.fixture(autouse=True)
def flushing_by_hand() -> Iterator[None]:
    """No background flusher (an earlier test in this process may have started one): tests
    flush what they sent when they choose, with a 10 s interval."""
    stop_flusher()
    with override_settings(GATEWAY_METRICS_BACKGROUND_FLUSH=False, GATEWAY_METRICS_INTERVAL_SECONDS=INTERVAL):
        recorder.drain()
        yield
    recorder.drain()


def flush_into_a_settled_window() -> None:
    """Flush what this process recorded into the previous interval's window, which readers use
    at once (the current one becomes readable only a little after the next boundary)."""
    assert flush_metrics(now=time.time() - INTERVAL)


@pytest.fixture
def staff_client(db: Any) -> Client:
    operator = User.objects.create_user("operator", password="unused-in-tests", is_staff=True)
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def member_client(db: Any) -> Client:
    """Logged in, but not staff: may not see the dashboard."""
    member = User.objects.create_user("member", password="unused-in-tests")
    client = Client()
    client.force_login(member)
    return client

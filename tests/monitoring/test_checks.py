"""Start-up checks for the metrics settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from monitoring.checks import metrics_interval_is_sane, metrics_token_is_long


@pytest.mark.parametrize(("interval", "ok"), [(10, True), (1, True), (300, True), (0, False), (301, False), ("often", False)])
def test_the_interval_must_be_1_to_300_seconds(interval: Any, ok: bool) -> None:
    with override_settings(GATEWAY_METRICS_INTERVAL_SECONDS=interval):
        found = [message.id for message in metrics_interval_is_sane()]
    assert found == ([] if ok else ["monitoring.E001"])


@pytest.mark.parametrize(("token", "ok"), [("", True), ("x" * 24, True), ("secret", False)])
def test_a_short_metrics_token_is_warned_about(token: str, ok: bool) -> None:
    with override_settings(GATEWAY_METRICS_TOKEN=token):
        found = [message.id for message in metrics_token_is_long()]
    assert found == ([] if ok else ["monitoring.W001"])

"""Start-up checks and the serve command guard the deployment shape."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from gateway_project.checks import check_state_store_matches_process_count
from gateway_project.management.commands.serve import granian_command


@override_settings(GATEWAY_WORKERS=4, REDIS_URL="")
def test_several_workers_without_redis_fail_the_system_check() -> None:
    errors = check_state_store_matches_process_count()
    assert [error.id for error in errors] == ["gateway.E001"]
    with pytest.raises(SystemCheckError, match="gateway.E001"):
        call_command("check")


@override_settings(GATEWAY_WORKERS=4, REDIS_URL="redis://127.0.0.1:6379/0")
def test_several_workers_with_redis_pass_the_check() -> None:
    assert check_state_store_matches_process_count() == []


@override_settings(REDIS_URL="")
def test_serve_refuses_several_workers_without_redis() -> None:
    with pytest.raises(CommandError, match="need REDIS_URL"):
        call_command("serve", "--workers", "2", "--no-demo")


@override_settings(GATEWAY_CONFIG_POLL_INTERVAL=-1)
def test_negative_config_poll_interval_fails_the_check() -> None:
    with pytest.raises(SystemCheckError, match="routing.E001"):
        call_command("check")


def test_serve_runs_granian_in_wsgi_mode_with_the_thread_count() -> None:
    command = granian_command("127.0.0.1", 8123, workers=1, threads=48)
    assert command[command.index("--interface") + 1] == "wsgi"
    assert command[command.index("--blocking-threads") + 1] == "48"
    assert command[command.index("--port") + 1] == "8123"
    assert command[-1] == "gateway_project.wsgi:application"

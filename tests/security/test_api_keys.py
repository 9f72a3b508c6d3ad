"""API keys: generation, hash-only storage, the key cache, the create_api_key command, and the
usage flush (its lease and its worker job)."""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections import Counter
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from gateway_project.worker import PERIODIC_JOBS, JobSchedule, run_round
from security.api_keys import (
    API_KEY_PATTERN,
    KEY_BYTES,
    USAGE_FLUSH_EVERY_SECONDS,
    USAGE_FLUSH_LEASE_KEY,
    find_key,
    flush_usage,
    generate_key,
    hash_key,
    issue_api_key,
    last_used_key,
    latency_key,
    looks_like_api_key,
    record_usage,
    requests_key,
    rotate_api_key,
)
from security.management.commands.create_api_key import SHOWN_ONCE
from security.models import ApiKey


# --- generation ----------------------------------------------------------------------------------


def test_a_key_is_the_marker_and_32_random_bytes_in_base64url() -> None:
    key = generate_key()
    assert key.startswith("mgw_") and len(key) == 47 and API_KEY_PATTERN.fullmatch(key)
    raw = base64.urlsafe_b64decode(key[4:] + "=")
    assert len(raw) == KEY_BYTES


def test_keys_do_not_repeat_and_their_bytes_look_uniform() -> None:
    keys = [generate_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    assert len({key[4:12] for key in keys}) == len(keys)  # 48-bit prefixes: no clash expected
    counts = Counter(b for key in keys for b in base64.urlsafe_b64decode(key[4:] + "="))
    total = sum(counts.values())
    entropy = -sum(n / total * math.log2(n / total) for n in counts.values())
    assert entropy > 7.99  # bits per byte; a biased or constant generator falls far below


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (generate_key(), True),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", False),
        ("mgw_short", False),
        (generate_key() + "x", False),
        ("mgx_" + generate_key()[4:], False),
        (generate_key()[:-1] + "=", False),
    ],
)
def test_the_key_format_is_recognised(token: str, expected: bool) -> None:
    assert looks_like_api_key(token) is expected


# --- storage -----------------------------------------------------------------------------------


def test_only_the_sha256_and_prefix_are_stored(db: Any) -> None:
    api_key, key = issue_api_key(name="ci", permissions=["tool:demo:add"])
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert stored.key_hash == hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert stored.key_prefix == key[4:12]
    assert key not in str(ApiKey.objects.filter(pk=api_key.pk).values().get())


def test_permission_of_unknown_kind_is_refused_with_the_kinds_listed(db: Any) -> None:
    with pytest.raises(ValidationError) as error:
        issue_api_key(name="bad", permissions=["tools:call:add"])
    assert "use one of route, tool, prompt, resource" in error.value.message_dict["permissions"][0]


def test_permissions_must_be_a_list_of_strings(db: Any) -> None:
    with pytest.raises(ValidationError) as error:
        issue_api_key(name="bad", permissions=["tool:demo:add", 3])
    assert list(error.value.message_dict) == ["permissions"]
    assert "JSON list of strings" in error.value.message_dict["permissions"][0]
    assert not ApiKey.objects.exists()


def test_the_cache_finds_a_key_only_by_its_whole_secret(db: Any) -> None:
    api_key, key = issue_api_key(name="ci")
    found = find_key(key)
    assert found is not None and found.id == api_key.pk and found.principal_id == f"key:{api_key.pk}"
    assert find_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert find_key(generate_key()) is None


def test_saving_or_deleting_a_key_is_seen_by_the_next_lookup(db: Any) -> None:
    api_key, key = issue_api_key(name="ci")
    assert find_key(key) is not None
    new_key = rotate_api_key(api_key)
    assert find_key(key) is None and find_key(new_key) is not None
    api_key.delete()
    assert find_key(new_key) is None


def test_deleting_the_owner_deletes_the_key(db: Any) -> None:
    owner = User.objects.create_user("bob")
    _, key = issue_api_key(name="bob's", owner=owner)
    owner.delete()
    assert not ApiKey.objects.exists() and find_key(key) is None


# --- the create_api_key command ----------------------------------------------------------------


def test_create_api_key_prints_the_key_once_and_stores_its_settings(db: Any) -> None:
    User.objects.create_user("alice")
    out = io.StringIO()
    call_command(
        "create_api_key", "--name", "ci", "--permission", "tool:demo:add", "--permission", "route:demo",
        "--expires", "2099-01-31T12:00:00", "--owner", "alice", "--per-minute", "60", "--per-hour", "600",
        "--per-day", "6000", stdout=out,
    )
    lines = out.getvalue().splitlines()
    keys = [line for line in lines if looks_like_api_key(line)]
    assert len(keys) == 1 and out.getvalue().count(keys[0]) == 1 and lines[-1] == SHOWN_ONCE
    api_key = ApiKey.objects.get()
    assert api_key.key_hash == hash_key(keys[0])
    assert (api_key.name, api_key.owner.username if api_key.owner else None, api_key.permissions) == (
        "ci", "alice", ["tool:demo:add", "route:demo"],
    )
    assert api_key.expires_at == datetime(2099, 1, 31, 12, tzinfo=dt_timezone.utc)
    assert (api_key.per_minute_limit, api_key.per_hour_limit, api_key.per_day_limit) == (60, 600, 6000)
    assert f"mgw_{api_key.key_prefix}" in lines[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--owner", "nobody"], "No user named 'nobody'"),
        (["--expires", "next tuesday"], "--expires must be an ISO 8601 date-time, got 'next tuesday'"),
        (["--expires", "2001-01-01T00:00:00Z"], "--expires 2001-01-01T00:00:00Z is already in the past"),
        (["--per-minute", "0"], "per_minute_limit: Ensure this value is greater than or equal to 1."),
    ],
)
def test_create_api_key_refuses_bad_arguments(db: Any, arguments: list[str], message: str) -> None:
    with pytest.raises(CommandError) as error:
        call_command("create_api_key", "--name", "ci", *arguments, stdout=io.StringIO())
    assert message in str(error.value)
    assert not ApiKey.objects.exists()


# --- usage flush -------------------------------------------------------------------------------


def test_flush_moves_the_counters_into_the_database_and_keeps_later_ones(db: Any, state_store: Any) -> None:
    api_key, _ = issue_api_key(name="ci")
    other, _ = issue_api_key(name="idle")
    used_at = datetime(2030, 5, 1, 8, 0, tzinfo=dt_timezone.utc)
    for latency in (10.4, 20.6, 30.0):
        record_usage(api_key.pk, latency, at=used_at.timestamp())
    assert flush_usage() == 1
    api_key.refresh_from_db()
    assert (api_key.request_count, api_key.latency_total_ms, api_key.last_used_at) == (3, 61, used_at)
    assert api_key.average_latency_ms == pytest.approx(61 / 3)
    assert state_store.get_many([requests_key(api_key.pk), latency_key(api_key.pk)]) == ["0", "0"]
    record_usage(api_key.pk, 5, at=used_at.timestamp() + 60)
    assert flush_usage() == 1
    assert flush_usage() == 0  # nothing new: no write
    api_key.refresh_from_db()
    assert (api_key.request_count, api_key.latency_total_ms) == (4, 66)
    assert api_key.last_used_at == used_at + timedelta(minutes=1)
    other.refresh_from_db()
    assert (other.request_count, other.last_used_at) == (0, None)


def test_flush_skips_while_another_worker_holds_the_lease(db: Any, state_store: Any) -> None:
    api_key, _ = issue_api_key(name="ci")
    record_usage(api_key.pk, 10)
    state_store.set(USAGE_FLUSH_LEASE_KEY, "another worker", ttl=60)
    assert flush_usage() == 0
    api_key.refresh_from_db()
    assert api_key.request_count == 0 and state_store.get(requests_key(api_key.pk)) == "1"
    state_store.delete(USAGE_FLUSH_LEASE_KEY)
    assert flush_usage() == 1
    assert state_store.get(USAGE_FLUSH_LEASE_KEY) is None  # released after the flush


def test_flushing_usage_does_not_bump_the_config_version(db: Any) -> None:
    from routing.models import ConfigRevision

    api_key, _ = issue_api_key(name="ci")
    before = ConfigRevision.objects.get(pk=1).revision
    record_usage(api_key.pk, 10)
    assert flush_usage() == 1
    assert ConfigRevision.objects.get(pk=1).revision == before


def test_the_worker_runs_the_usage_flush_every_ten_seconds(db: Any, state_store: Any) -> None:
    job = next(job for job in PERIODIC_JOBS if job.name == "API key usage")
    assert job.every_seconds == USAGE_FLUSH_EVERY_SECONDS == 10.0
    api_key, _ = issue_api_key(name="ci")
    record_usage(api_key.pk, 12, at=timezone.now().timestamp())
    assert run_round(JobSchedule([job])) == []
    api_key.refresh_from_db()
    assert (api_key.request_count, api_key.latency_total_ms) == (1, 12)
    assert state_store.get(last_used_key(api_key.pk)) is not None


def test_recording_usage_with_the_state_store_down_only_warns(db: Any, state_store_down: None, caplog: pytest.LogCaptureFixture) -> None:
    api_key, _ = issue_api_key(name="ci")
    record_usage(api_key.pk, 10)  # must not raise: the request it belongs to is already answered
    assert flush_usage() == 0
    assert "API key usage degraded" in caplog.text and "API key usage flush degraded" in caplog.text

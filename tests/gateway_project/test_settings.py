"""Settings come from the environment, in one place, and refuse bad values loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_project.settings import env_bool, env_float, env_int, env_list
from tests.settings_probe import settings_in_subprocess


def test_production_without_secret_key_refuses_to_start(tmp_path: Path) -> None:
    result = settings_in_subprocess({"GATEWAY_ENV": "production", "GATEWAY_DATA_DIR": str(tmp_path)}, "settings.SECRET_KEY")
    assert result.returncode != 0
    assert "SECRET_KEY is required when GATEWAY_ENV=production" in result.stderr


def test_embedded_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = settings_in_subprocess({"GATEWAY_DATA_DIR": str(tmp_path)}, "settings.SECRET_KEY")
    second = settings_in_subprocess({"GATEWAY_DATA_DIR": str(tmp_path)}, "settings.SECRET_KEY")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(first.stdout.strip()) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_default_database_is_sqlite_in_the_data_folder_and_state_is_in_process(tmp_path: Path) -> None:
    result = settings_in_subprocess(
        {"GATEWAY_DATA_DIR": str(tmp_path)}, "settings.DATABASES['default']['NAME'], repr(settings.REDIS_URL), settings.PORT"
    )
    assert result.stdout.split() == [f"{tmp_path}/gateway.sqlite3", "''", "8000"]


def test_postgres_url_gets_persistent_health_checked_connections(tmp_path: Path) -> None:
    result = settings_in_subprocess(
        {"GATEWAY_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test"},
        "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['CONN_MAX_AGE'], settings.DATABASES['default']['CONN_HEALTH_CHECKS']",
    )
    assert result.stdout.split() == ["django.db.backends.postgresql", "600", "True"]


def test_bad_integer_setting_names_the_variable(tmp_path: Path) -> None:
    result = settings_in_subprocess({"GATEWAY_DATA_DIR": str(tmp_path), "PORT": "eighty"}, "settings.PORT")
    assert result.returncode != 0
    assert "PORT must be an integer, got 'eighty'" in result.stderr


def test_env_helpers_parse_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_INT", "7")
    monkeypatch.setenv("T_FLOAT", "0.25")
    monkeypatch.setenv("T_BOOL", "yes")
    monkeypatch.setenv("T_LIST", "a.example, b.example,")
    assert env_int("T_INT", 1) == 7 and env_int("T_MISSING", 3) == 3
    assert env_float("T_FLOAT", 1.0) == 0.25
    assert env_bool("T_BOOL", False) is True
    assert env_list("T_LIST", []) == ["a.example", "b.example"]


@pytest.mark.parametrize(("helper", "raw"), [(env_int, "1.5"), (env_float, "fast"), (env_bool, "maybe")])
def test_env_helpers_refuse_bad_values(monkeypatch: pytest.MonkeyPatch, helper: object, raw: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("T_BAD", raw)
    with pytest.raises(ImproperlyConfigured, match="T_BAD"):
        helper("T_BAD", 0)  # type: ignore[operator]

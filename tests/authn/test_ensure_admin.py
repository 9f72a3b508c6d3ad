"""ensure_admin: the first admin user, from the environment or with a generated password."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import override_settings


def run() -> str:
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@override_settings(GATEWAY_ADMIN_USER="root", GATEWAY_ADMIN_PASSWORD="chosen-password-1")
def test_admin_is_created_with_the_configured_password_which_is_not_printed() -> None:
    output = run()
    user = User.objects.get(username="root")
    assert user.is_superuser and user.is_staff
    assert user.check_password("chosen-password-1")
    assert "chosen-password-1" not in output


@pytest.mark.django_db
@override_settings(GATEWAY_ADMIN_USER="admin", GATEWAY_ADMIN_PASSWORD="")
def test_admin_without_password_gets_a_generated_one_printed_once() -> None:
    output = run()
    password = output.split("generated password: ", 1)[1].split()[0]
    assert len(password) >= 20
    assert User.objects.get(username="admin").check_password(password)
    again = run()
    assert "already exists" in again and password not in again
    assert User.objects.count() == 1

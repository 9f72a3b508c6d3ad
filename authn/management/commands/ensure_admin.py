"""python manage.py ensure_admin: make sure an admin user exists (idempotent).

Takes GATEWAY_ADMIN_USER / GATEWAY_ADMIN_PASSWORD; without a password it generates one and
prints it once, since nobody else will ever see it.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin user from GATEWAY_ADMIN_USER / GATEWAY_ADMIN_PASSWORD if it does not exist."

    def handle(self, *args: Any, **options: Any) -> None:
        username = settings.GATEWAY_ADMIN_USER
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(f"Admin user {username!r} already exists.")
            return
        password = settings.GATEWAY_ADMIN_PASSWORD
        generated = not password
        if generated:
            password = secrets.token_urlsafe(18)
        user_model.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(f"Created admin user {username!r} with generated password: {password}")
            self.stdout.write("  (shown once; set GATEWAY_ADMIN_PASSWORD to choose your own)")
        else:
            self.stdout.write(f"Created admin user {username!r} with the password from GATEWAY_ADMIN_PASSWORD.")

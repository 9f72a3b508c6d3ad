"""python manage.py create_api_key --name N: issue an API key and print it, once.

    python manage.py create_api_key --name ci --permission tool:demo:add --permission route:demo \
        --expires 2027-01-31T00:00:00Z --owner alice --per-minute 60 --per-day 10000

Only the key's hash is stored: this output is the only place the key ever appears.
"""

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from security.api_keys import issue_api_key

SHOWN_ONCE = "  (shown once: only its hash is stored; rotate it in the admin if it is lost)"


def parse_expiry(text: str) -> datetime:
    """ISO 8601; without an offset the time is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--expires must be an ISO 8601 date-time, got {text!r}") from None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt_timezone.utc)
    if moment <= timezone.now():
        raise CommandError(f"--expires {text} is already in the past")
    return moment


class Command(BaseCommand):
    help = "Create an API key and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--permission", action="append", default=[], dest="permissions", help="Repeatable.")
        parser.add_argument("--expires", type=parse_expiry, help="ISO 8601, e.g. 2027-01-31T00:00:00Z.")
        parser.add_argument("--owner", help="Username of the owning user.")
        parser.add_argument("--per-minute", type=int, dest="per_minute_limit")
        parser.add_argument("--per-hour", type=int, dest="per_hour_limit")
        parser.add_argument("--per-day", type=int, dest="per_day_limit")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = None
        if options["owner"]:
            owner = get_user_model().objects.filter(username=options["owner"]).first()
            if owner is None:
                raise CommandError(f"No user named {options['owner']!r}")
        try:
            api_key, key = issue_api_key(
                name=options["name"],
                owner=owner,
                permissions=options["permissions"],
                expires_at=options["expires"],
                per_minute_limit=options["per_minute_limit"],
                per_hour_limit=options["per_hour_limit"],
                per_day_limit=options["per_day_limit"],
            )
        except ValidationError as error:
            raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())) from None
        self.stdout.write(f"Created API key {api_key.name!r} (id {api_key.pk}, prefix mgw_{api_key.key_prefix}):")
        self.stdout.write(key)
        self.stdout.write(SHOWN_ONCE)

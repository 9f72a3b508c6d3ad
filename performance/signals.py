"""Every change to a response-cache policy bumps the config version, so every process rebuilds
its in-process copy of the policies (the hot path never reads them from the database)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from performance.models import ResponseCachePolicy
from routing.config_version import bump_config_version


@receiver(post_save, sender=ResponseCachePolicy)
@receiver(post_delete, sender=ResponseCachePolicy)
def cache_policy_changed(sender: type, **kwargs: Any) -> None:
    if kwargs.get("raw"):  # loaddata: the fixture's own revision row is authoritative
        return
    bump_config_version()

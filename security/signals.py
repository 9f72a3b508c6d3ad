"""Every change to a rate-limit policy (or its routes) or to an API key bumps the config
version, so every process rebuilds its compiled policies and key cache with the routing
snapshot."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from routing.config_version import bump_config_version
from security.models import ApiKey, RateLimitPolicy


@receiver(post_save, sender=RateLimitPolicy)
@receiver(post_delete, sender=RateLimitPolicy)
@receiver(m2m_changed, sender=RateLimitPolicy.routes.through)
def rate_limit_policy_changed(sender: type, **kwargs: Any) -> None:
    if kwargs.get("raw"):  # loaddata: the fixture's own revision row is authoritative
        return
    if kwargs.get("action", "post_").startswith("pre_"):  # m2m: count the change once, after it
        return
    bump_config_version()


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def api_key_changed(sender: type, **kwargs: Any) -> None:
    """Created, rotated, revoked, edited or deleted: every process rebuilds its key cache.
    (Usage is flushed with update(), which sends no signal, so it never lands here.)"""
    if kwargs.get("raw"):
        return
    bump_config_version()


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def api_key_owner_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    """A deactivated owner's keys stop working. Logins save only ``last_login``: no bump."""
    update_fields = kwargs.get("update_fields")
    if kwargs.get("raw") or (update_fields is not None and "is_active" not in update_fields):
        return
    if ApiKey.objects.filter(owner_id=instance.pk).exists():
        bump_config_version()

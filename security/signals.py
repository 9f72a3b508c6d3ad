"""Every change to a rate-limit policy (or its routes) bumps the config version, so every
process rebuilds its compiled policies with the routing snapshot."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from routing.config_version import bump_config_version
from security.models import RateLimitPolicy


@receiver(post_save, sender=RateLimitPolicy)
@receiver(post_delete, sender=RateLimitPolicy)
@receiver(m2m_changed, sender=RateLimitPolicy.routes.through)
def rate_limit_policy_changed(sender: type, **kwargs: Any) -> None:
    if kwargs.get("raw"):  # loaddata: the fixture's own revision row is authoritative
        return
    if kwargs.get("action", "post_").startswith("pre_"):  # m2m: count the change once, after it
        return
    bump_config_version()

"""Every save or delete of routing configuration bumps the config version."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from routing.config_version import bump_config_version
from routing.models import Route, Service, Target


@receiver(post_save, sender=Service)
@receiver(post_save, sender=Target)
@receiver(post_save, sender=Route)
@receiver(post_delete, sender=Service)
@receiver(post_delete, sender=Target)
@receiver(post_delete, sender=Route)
def config_changed(sender: type, **kwargs: Any) -> None:
    if kwargs.get("raw"):  # loaddata: the fixture's own revision row is authoritative
        return
    bump_config_version()

"""Every change that alters who may do what bumps the config version, so every process
rebuilds its user directory (``authn/directory.py``) and provider list within a second."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from authn.models import IdentityProvider, Role
from routing.config_version import bump_config_version

# The user fields the directory reads; saves touching only others (last_login) need no rebuild.
DIRECTORY_USER_FIELDS = {"is_active", "is_superuser", "username"}


@receiver(post_save, sender=Role)
@receiver(post_delete, sender=Role)
@receiver(m2m_changed, sender=Role.users.through)
@receiver(post_save, sender=IdentityProvider)
@receiver(post_delete, sender=IdentityProvider)
def access_config_changed(sender: type, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return
    if kwargs.get("action", "post_").startswith("pre_"):  # m2m: count the change once, after it
        return
    bump_config_version()


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def user_changed(sender: type, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if kwargs.get("raw") or (update_fields is not None and not DIRECTORY_USER_FIELDS & set(update_fields)):
        return
    bump_config_version()

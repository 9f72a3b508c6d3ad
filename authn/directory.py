"""Users and roles as the hot path sees them: an in-process cache, no database query per request.

Rebuilt when the config version moves (``authn/signals.py`` bumps it on every change to a
role, a role's members, a user's active/superuser flags, or an identity provider), so revoking a
role or deactivating a user takes effect on the next request in every process, without waiting
for the user's token to expire. Token claims (``roles``, ``permissions``) describe the user at
login for the client's benefit; authorization always uses this cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth import get_user_model

from authn.models import Role
from authn.permissions import ALL_GRANTS, Grants
from routing.config_version import ConfigCache


@dataclass(frozen=True, slots=True)
class CachedUser:
    id: int
    username: str
    active: bool
    roles: frozenset[str]
    grants: Grants  # superusers hold everything


@dataclass(frozen=True, slots=True)
class Directory:
    users: dict[int, CachedUser]
    role_grants: dict[str, tuple[str, ...]]


def build_directory() -> Directory:
    """Every role with its grants and members, and every user (two queries)."""
    role_grants: dict[str, tuple[str, ...]] = {}
    roles_of_user: dict[int, set[str]] = {}
    for role in Role.objects.prefetch_related("users"):
        role_grants[role.name] = tuple(role.permissions or ())
        for user in role.users.all():
            roles_of_user.setdefault(user.pk, set()).add(role.name)
    users = {}
    for user in get_user_model().objects.only("id", "username", "is_active", "is_superuser"):
        roles = frozenset(roles_of_user.get(user.pk, ()))
        grants = ALL_GRANTS if user.is_superuser else Grants.of(g for name in roles for g in role_grants[name])
        users[user.pk] = CachedUser(user.pk, user.get_username(), user.is_active, roles, grants)
    return Directory(users, role_grants)


_directory: ConfigCache[Directory] = ConfigCache(build_directory)


def find_user(user_id: int) -> CachedUser | None:
    return _directory.get().users.get(user_id)


def grants_of_roles(role_names: Iterable[str]) -> Grants:
    """The union of the named roles' grants; names of no role add nothing."""
    role_grants = _directory.get().role_grants
    return Grants.of(grant for name in role_names for grant in role_grants.get(name, ()))

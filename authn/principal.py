"""Who is asking: the principal the authenticate stage attaches to every exchange."""

from __future__ import annotations

from dataclasses import dataclass

from authn.permissions import NO_GRANTS, Grants

ANONYMOUS_ID = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller as later stages (rate limits, authorization, cache, records) see it.

    ``id`` is what sessions and counters are bound to: ``user:<id>`` for a gateway JWT,
    ``key:<id>`` for an API key, ``oidc:<provider>:<subject>`` for an external identity
    provider's token, ``anonymous`` for no credential.
    """

    id: str
    user_id: int | None = None
    roles: frozenset[str] = frozenset()
    grants: Grants = NO_GRANTS
    session_id: str = ""
    api_key_id: str = ""

    @property
    def is_authenticated(self) -> bool:
        return self.id != ANONYMOUS_ID

    def may(self, permission: str) -> bool:
        return self.grants.allows(permission)


ANONYMOUS = Principal(ANONYMOUS_ID)

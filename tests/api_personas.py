"""The REST API's callers, as fixtures: each a Django test client already holding its credential.

Test modules of the API load this with ``pytest_plugins = ["tests.api_personas"]``.

    staff_api        a staff user's gateway JWT (the operator)
    member_api       a user who is not staff, with a JWT
    anonymous_api    no credential at all
    key_api(...)     an API key with the given grants and owner (X-API-Key)

JWTs are issued the way ``POST /api/v1/auth/token/`` issues them (a real session in the state
store, a signed token), without going through that endpoint's per-IP login limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from security.api_keys import issue_api_key
from tests.api_client import ApiClient, bearer_client


@pytest.fixture
def staff_user(db: Any) -> User:
    return User.objects.create_user("operator", is_staff=True)  # no password: hashing one is slow


@pytest.fixture
def member_user(db: Any) -> User:
    return User.objects.create_user("member")


@pytest.fixture
def staff_api(staff_user: User) -> ApiClient:
    return bearer_client(staff_user)


@pytest.fixture
def member_api(member_user: User) -> ApiClient:
    return bearer_client(member_user)


@pytest.fixture
def anonymous_api(db: Any) -> ApiClient:
    return ApiClient()


@pytest.fixture
def key_api(staff_user: User) -> Callable[..., ApiClient]:
    """``key_api(["api:read"])``: a client using a new API key (owned by the staff user unless
    ``owner=`` says otherwise)."""

    def make(grants: list[str], owner: User | None = None) -> ApiClient:
        _, key = issue_api_key(name="test key", owner=owner or staff_user, permissions=grants)
        return ApiClient({"X-API-Key": key})

    return make

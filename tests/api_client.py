"""A test client for the REST API, and credentials for it (the fixtures are in ``api_personas.py``)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from authn import directory, sessions, tokens

API = "/api/v1"


class ApiClient(Client):
    """A test client that sends JSON and carries its credential on every request."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        super().__init__(headers=headers or {})

    def send(self, method: str, path: str, body: Any = None, **extra: Any) -> Any:
        data = json.dumps(body) if body is not None else None
        return self.generic(method.upper(), path, data or "", content_type="application/json", **extra)

    def get_json(self, path: str, **params: Any) -> Any:
        response = self.get(path, params)
        assert response.status_code == 200, response.content
        return response.json()


def jwt_for(user: User) -> tuple[str, str]:
    """A gateway access token for ``user`` and its session id, as the token endpoint makes them."""
    session_id = sessions.start_session(user, client_ip="127.0.0.1", user_agent="pytest")
    cached = directory.find_user(user.pk)
    assert cached is not None
    return tokens.issue_token_pair(user, cached, session_id).access, session_id


def bearer_client(user: User) -> ApiClient:
    access, _ = jwt_for(user)
    return ApiClient({"Authorization": f"Bearer {access}"})

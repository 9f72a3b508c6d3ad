"""An identity provider's accepted algorithms: anything but a list of asymmetric algorithm names
is refused with the one validation message, whatever JSON it is (lists of objects or of lists
included), in the model and in the admin alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from authn.models import ALGORITHMS_MESSAGE, IdentityProvider

PROVIDERS_ADD_URL = "/admin/authn/identityprovider/add/"

NOT_ALGORITHM_LISTS = [
    pytest.param([{}], id="a list holding an object"),
    pytest.param([["RS256"]], id="a list holding a list"),
    pytest.param(["RS256", {"alg": "ES256"}], id="a name then an object"),
    pytest.param([None], id="a list holding null"),
    pytest.param([256], id="a list holding a number"),
    pytest.param("RS256", id="a bare name"),
    pytest.param({"RS256": True}, id="an object"),
    pytest.param(["HS256"], id="a shared-secret algorithm"),
]


def provider(algorithms: Any) -> IdentityProvider:
    return IdentityProvider(name="sso", issuer="https://sso.example.com/realms/mcp", algorithms=algorithms)


@pytest.mark.parametrize("algorithms", NOT_ALGORITHM_LISTS)
def test_anything_but_a_list_of_accepted_names_gets_the_validation_message(db: Any, algorithms: Any) -> None:
    with pytest.raises(ValidationError) as refusal:
        provider(algorithms).full_clean()
    assert refusal.value.message_dict == {"algorithms": [ALGORITHMS_MESSAGE]}


@pytest.mark.parametrize("algorithms", [[], ["RS256"], ["ES256", "EdDSA", "PS256"]])
def test_a_list_of_accepted_names_is_valid(db: Any, algorithms: list[str]) -> None:
    provider(algorithms).full_clean()


def test_the_admin_shows_the_message_for_a_list_of_objects_instead_of_failing(admin_client: Any) -> None:
    response = admin_client.post(
        PROVIDERS_ADD_URL,
        {
            "name": "odd", "enabled": "on", "issuer": "https://odd.example.com", "jwks_url": "", "audience": "",
            "algorithms": "[{}]", "subject_claim": "sub", "roles_claim": "roles", "role_map": "{}",
            "permissions_claim": "",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["algorithms"] == [ALGORITHMS_MESSAGE]
    assert not IdentityProvider.objects.exists()

"""The REST API under generated requests (schemathesis, in-process against the WSGI app): bodies,
parameters and ids that fit the schema and ones that do not, for every operation in it, sent by
a staff user. Whatever arrives, the answer is never a server error.

Bounded to a few examples per operation and mode, so the whole file runs in seconds; examples
are random, so each run explores a little more. (schemathesis' own ``from_fixture`` runner
reads ``request.node._nodeid``, which pytest 9 no longer has, so each operation is a plain
parametrized test driving the operation's Hypothesis strategy.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, configuration, given, reject, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from authn.models import IdentityProvider, Role
from federation.models import Member, PinningAlert, VirtualServer
from monitoring.models import AlertEvent, AlertRule
from performance.models import ResponseCachePolicy
from routing.models import Route, Service, Target
from security.api_keys import issue_api_key
from security.models import RateLimitPolicy
from tests.api_client import jwt_for

pytest_plugins = ["tests.api_personas"]

EXAMPLES_PER_OPERATION = 6


def load_schema() -> Any:
    """The served OpenAPI document, sent to Django's WSGI application (not gateway_project.wsgi,
    which also starts the serving process's background threads)."""
    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    schema.app = get_wsgi_application()
    return schema


OPERATIONS = [result.ok() for result in load_schema().get_all_operations()]


@pytest.fixture(scope="module", autouse=True)
def hypothesis_files_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis keeps caches in ./.hypothesis; not in the working tree others share."""
    configuration.set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    configuration.set_hypothesis_home_dir(None)


@pytest.fixture
def requests_inside_the_test_transaction() -> Iterator[None]:
    """What Django's test client does around each request: the WSGI handler's end-of-request hook
    would otherwise close the database connection that holds the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def existing_ids(staff_user: User, member_user: User) -> Iterator[dict[str, str]]:
    """One object of each kind, by the path segment naming its kind, for ids that hit something;
    the fuzzer creates more as it goes."""
    service = Service.objects.create(name="orders", kind="http")
    route = Route.objects.create(name="orders", path="/orders", service=service)
    api_key, _ = issue_api_key(name="ci", owner=staff_user, permissions=["api:read"])
    _, session_id = jwt_for(member_user)  # the staff user's own session must live on
    alert_rule = AlertRule.objects.create(name="errors", metric="error_rate", threshold=5)
    virtual_server = VirtualServer.objects.create(name="kit")  # its member has no target: never fetched
    member = Member.objects.create(
        virtual_server=virtual_server, service=Service.objects.create(name="search", kind="mcp"), prefix="search"
    )
    ids = {
        "services": service.pk,
        "targets": Target.objects.create(service=service, url="http://127.0.0.1:9").pk,
        "routes": route.pk,
        "rate-limit-policies": RateLimitPolicy.objects.create(name="per-ip", limit=10, window_seconds=1).pk,
        "api-keys": api_key.pk,
        "sessions": session_id,
        "roles": Role.objects.create(name="operators").pk,
        "identity-providers": IdentityProvider.objects.create(name="idp", issuer="https://id.example").pk,
        "cache-policies": ResponseCachePolicy.objects.create(route=route).pk,
        "alert-rules": alert_rule.pk,
        "alert-events": AlertEvent.objects.create(rule=alert_rule, state="firing", value=9.0, threshold=5).pk,
        "virtual-servers": virtual_server.pk,
        "pinning-alerts": PinningAlert.objects.create(
            virtual_server=virtual_server, member=member, tool_name="lookup", kind="new", digest="0" * 64, definition={}, held_back=True
        ).pk,
    }
    with override_settings(GATEWAY_API_RATE_LIMIT="100000/min"):
        yield {kind: str(pk) for kind, pk in ids.items()}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_request_makes_the_api_fail(
    operation: Any, mode: GenerationMode, staff_user: User, existing_ids: dict[str, str], requests_inside_the_test_transaction: None
) -> None:
    access, _ = jwt_for(staff_user)
    credential = {"Authorization": f"Bearer {access}"}
    # Valid requests go to an object that exists; invalid ones keep their generated ids.
    kind = operation.path.split("/")[3]
    path_parameters = {"id": existing_ids[kind]} if "{id}" in operation.path and mode == GenerationMode.POSITIVE else None

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def send(case: Any) -> None:
        try:
            case.call_and_validate(headers=credential, checks=[not_a_server_error])
        except ValueError:
            # schemathesis could not even write this case as a URL (a negative path parameter
            # such as "[" reads as a broken IPv6 host): it never reached the API, so it tells
            # nothing about it. A server error is reported as a check failure, never a ValueError.
            reject()

    send()

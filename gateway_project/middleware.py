"""Django's session, CSRF, authentication and message middleware, for the operator's pages only.

Proxied requests authenticate with tokens and never touch a session, a CSRF cookie, a Django
user or a flash message, yet each of those middlewares runs (and allocates) on every request it
is listed for: together they were over a quarter of the gateway's own CPU per proxied call. So
they are listed here, inside ``OperatorMiddleware``, which runs them — in this order, with every
hook Django would have called — for the paths that serve people (the admin, the dashboard, the
REST API, /metrics) and hands every other request straight to the view.

The hooks matter: Django calls ``process_view`` (where CSRF is checked), ``process_exception``
and ``process_template_response`` only on middleware listed in ``MIDDLEWARE``, so this class
forwards them to the inner instances for operator paths, exactly as if they were listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.module_loading import import_string

# In the order they would appear in MIDDLEWARE.
OPERATOR_MIDDLEWARE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)

GetResponse = Callable[[HttpRequest], HttpResponseBase]


def is_operator_path(path: str) -> bool:
    return path.startswith(tuple(settings.GATEWAY_OPERATOR_PATH_PREFIXES))


class OperatorMiddleware:
    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.prefixes = tuple(settings.GATEWAY_OPERATOR_PATH_PREFIXES)
        self.inner: list[Any] = []
        handler: Any = get_response
        for dotted_path in reversed(OPERATOR_MIDDLEWARE):
            handler = import_string(dotted_path)(handler)
            self.inner.insert(0, handler)
        self.operator_chain = handler

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path.startswith(self.prefixes):
            return self.operator_chain(request)
        # CommonMiddleware is what made every request validate its Host against ALLOWED_HOSTS
        # (DNS-rebinding protection); proxied requests keep that check: DisallowedHost -> 400.
        request.get_host()
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any) -> HttpResponseBase | None:
        if not request.path.startswith(self.prefixes):
            return None
        for middleware in self.inner:
            hook = getattr(middleware, "process_view", None)
            if hook is not None and (response := hook(request, view, args, kwargs)) is not None:
                return response
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase | None:
        if not request.path.startswith(self.prefixes):
            return None
        for middleware in reversed(self.inner):
            hook = getattr(middleware, "process_exception", None)
            if hook is not None and (response := hook(request, exception)) is not None:
                return response
        return None

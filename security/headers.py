"""Security headers on every response, and CORS that only the gateway decides.

``SecurityHeadersMiddleware`` is the first entry of ``MIDDLEWARE``, so it is the outermost
layer: it sees every response the process produces — proxied answers, pipeline errors, the
health probes, the admin, and Django's own 400/403/404/500 handlers (each inner layer turns an
exception into a response before it reaches this one). It *replaces* these headers rather than
filling them in, so an upstream cannot weaken them (``X-Frame-Options: ALLOWALL`` from an
upstream becomes ``DENY``).

Django's ``SecurityMiddleware`` stays for what it alone does (HTTPS redirect, COOP); it only
``setdefault``s nosniff and Referrer-Policy, and the values here overwrite them on the way out.
``XFrameOptionsMiddleware`` is not used: its ``DENY`` would be a second owner of the same header.
"""

from __future__ import annotations

from collections.abc import Callable

from corsheaders.middleware import CorsMiddleware
from django.http import HttpRequest
from django.http.response import HttpResponseBase

CONTENT_TYPE_OPTIONS = "X-Content-Type-Options"
FRAME_OPTIONS = "X-Frame-Options"
XSS_PROTECTION = "X-XSS-Protection"
STRICT_TRANSPORT_SECURITY = "Strict-Transport-Security"
CONTENT_SECURITY_POLICY = "Content-Security-Policy"
REFERRER_POLICY = "Referrer-Policy"

# Everything the gateway serves itself (the admin included) loads scripts, styles and images
# from its own origin only, with no inline code: Django 5.2's admin passes its data in
# data-attributes of external <script src> tags, so nothing more than 'self' is needed.
CONTENT_SECURITY_POLICY_VALUE = "default-src 'self'"
# same-origin: a URL of the gateway (route paths, query strings) never leaves for another
# site, not even as a bare origin; the admin's own links keep their referrer. It is also
# Django's SECURE_REFERRER_POLICY default, so the two middlewares never disagree.
REFERRER_POLICY_VALUE = "same-origin"
# Sent on plain-HTTP answers too: the gateway usually sits behind a TLS-terminating load
# balancer and sees http; browsers ignore the header on a connection that was not HTTPS.
STRICT_TRANSPORT_SECURITY_VALUE = "max-age=31536000; includeSubDomains"

SECURITY_HEADERS: dict[str, str] = {
    CONTENT_TYPE_OPTIONS: "nosniff",
    FRAME_OPTIONS: "DENY",
    XSS_PROTECTION: "1; mode=block",
    STRICT_TRANSPORT_SECURITY: STRICT_TRANSPORT_SECURITY_VALUE,
    CONTENT_SECURITY_POLICY: CONTENT_SECURITY_POLICY_VALUE,
    REFERRER_POLICY: REFERRER_POLICY_VALUE,
}

# Response headers that grant a browser cross-origin access; only the gateway's CORS policy
# may send them.
CORS_RESPONSE_HEADER_PREFIX = "access-control-"


class SecurityHeadersMiddleware:
    """Sets ``SECURITY_HEADERS`` on every response, replacing whatever an inner layer set."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        for name, value in SECURITY_HEADERS.items():
            response[name] = value
        return response


class GatewayCorsMiddleware(CorsMiddleware):
    """django-cors-headers, except that an upstream's own ``Access-Control-*`` headers are
    dropped first: otherwise an upstream answering ``Access-Control-Allow-Origin: *`` would open
    the route to origins the gateway refuses (corsheaders leaves a response alone for those).

    Preflights (OPTIONS with ``Access-Control-Request-Method``) are answered here, before the
    pipeline, so they never ask for credentials and never reach an upstream; for an origin that
    is not allowed the answer simply carries no ``Access-Control-Allow-Origin``.
    """

    def add_response_headers(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        for name in [name for name in response.headers if name.lower().startswith(CORS_RESPONSE_HEADER_PREFIX)]:
            del response[name]
        return super().add_response_headers(request, response)

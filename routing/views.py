"""The catch-all proxy view: everything not served by the gateway itself is proxied."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway_project import pipeline


@csrf_exempt  # proxied callers authenticate with tokens, not cookies; CSRF does not apply
def proxy(request: HttpRequest, path: str = "") -> HttpResponse | StreamingHttpResponse:
    return pipeline.handle(request)

"""The floor: the least a Django proxy can do, to measure the gateway against.

One view forwards every request to ``FLOOR_UPSTREAM`` through a module-level urllib3
PoolManager and returns the complete answer; no middleware, no database, no apps. It runs under
the same server as the gateway (granian WSGI, same workers and threads; bench/harness.py
``Servers.start_floor``), so the gap between the two is what the gateway's own work costs:
routing, authentication, rate limits, validation, metrics, streaming relay.

    granian --interface wsgi --working-dir bench floor_proxy:application   (FLOOR_UPSTREAM=http://…/mcp)
"""

from __future__ import annotations

import os

import urllib3
from django.conf import settings

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:9100/mcp")
# What an MCP request needs to reach the server intact, and what its answer needs back.
REQUEST_HEADERS = ("Content-Type", "Accept", "MCP-Protocol-Version", "Mcp-Method", "Mcp-Name", "Mcp-Session-Id")
ANSWER_HEADERS = ("Mcp-Session-Id", "MCP-Protocol-Version")

settings.configure(
    DEBUG=False,
    SECRET_KEY="floor-proxy-benchmark-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
    LOGGING_CONFIG=None,
)

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings.configure)
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import re_path  # noqa: E402

POOL = urllib3.PoolManager(maxsize=int(os.environ.get("FLOOR_POOL_MAXSIZE", "256")), block=False, retries=False)
TIMEOUT = urllib3.Timeout(connect=5.0, read=60.0)


def forward(request: HttpRequest, path: str) -> HttpResponse:
    headers = {name: value for name in REQUEST_HEADERS if (value := request.headers.get(name)) is not None}
    upstream = POOL.urlopen(request.method or "GET", UPSTREAM, body=request.body, headers=headers, timeout=TIMEOUT)
    response = HttpResponse(upstream.data, status=upstream.status, content_type=upstream.headers.get("Content-Type"))
    for name in ANSWER_HEADERS:
        if name in upstream.headers:
            response[name] = upstream.headers[name]
    return response


urlpatterns = [re_path(r"^(?P<path>.*)$", forward)]
application = get_wsgi_application()

"""Gateway settings: the one place that reads the environment.

Every knob is an environment variable read through a small typed helper that fails loudly on a
bad value. Apps read their settings through their own ``conf.py`` so tests can override them.

Two deployment shapes:
- embedded default: SQLite file and in-process state in ``GATEWAY_DATA_DIR`` (one process);
- scale-out: ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` shared by many processes.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


GATEWAY_ENV = env_str("GATEWAY_ENV", "development")
IS_PRODUCTION = GATEWAY_ENV == "production"
DATA_DIR = Path(env_str("GATEWAY_DATA_DIR", str(BASE_DIR / "data")))


def _embedded_secret_key() -> str:
    """Generate the secret once and keep it in the data folder, so restarts keep sessions valid."""
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if IS_PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY is required when GATEWAY_ENV=production")
    SECRET_KEY = _embedded_secret_key()

DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
PORT = env_int("PORT", 8000)
# Gateway server processes (granian workers) and threads per process. In-process state is
# per process, so more than one worker needs REDIS_URL (system check gateway.E001).
GATEWAY_WORKERS = env_int("GATEWAY_WORKERS", 1)
# Every open event stream holds a thread for its whole life (see docs/performance.md), so the
# default is sized for streams, not for cores.
GATEWAY_THREADS = env_int("GATEWAY_THREADS", 256)
# Proxied exchanges (streams included) one process takes at once; beyond it, a fast 503 with
# Retry-After instead of requests queueing silently behind streams. The spare threads keep
# health checks, the admin and those 503s answering.
GATEWAY_MAX_IN_FLIGHT = env_int("GATEWAY_MAX_IN_FLIGHT", max(1, GATEWAY_THREADS - 16))
# Run the background jobs (health checks, ...) on a thread of each gateway process. `serve`
# turns this on in the embedded shape, where a separate worker could not share in-process state.
GATEWAY_WORKER_IN_PROCESS = env_bool("GATEWAY_WORKER_IN_PROCESS", False)
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "django_filters",
    "corsheaders",
    "gateway_project",
    "routing",
    "security",
    "performance",
    "authn",
    "monitoring",
    "federation",
    "dashboard",
]

MIDDLEWARE = [
    # First, so outermost: every response gets the security headers, also Django's own error
    # answers and anything an inner middleware answers (security/headers.py).
    "security.headers.SecurityHeadersMiddleware",
    # Before anything else may answer or ask for credentials: preflights end here, unforwarded.
    "security.headers.GatewayCorsMiddleware",
    # Kept for the HTTPS redirect and COOP; its nosniff / Referrer-Policy agree with ours and
    # are overwritten anyway. XFrameOptionsMiddleware is gone: SecurityHeadersMiddleware owns it.
    "django.middleware.security.SecurityMiddleware",
    # Sessions, CommonMiddleware, CSRF, auth and messages, run only for the paths below: a
    # proxied request uses none of them (gateway_project/middleware.py).
    "gateway_project.middleware.OperatorMiddleware",
]
# The gateway's own pages and APIs for people; every other path is proxied.
GATEWAY_OPERATOR_PATH_PREFIXES = ["/admin/", "/api/v1/", "/dashboard/", "/metrics"]

ROOT_URLCONF = "gateway_project.urls"
WSGI_APPLICATION = "gateway_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: a SQLite file in the data folder unless DATABASE_URL says otherwise. PostgreSQL
# connections are persistent (CONN_MAX_AGE) and health-checked before reuse, so a request
# never pays for a new connection once the process is warm.
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'gateway.sqlite3'}"
if DATABASE_URL.startswith("sqlite"):
    DATA_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # One test database per test run (pid), so concurrent runs on one server never collide.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the gateway read while an admin or management command writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0 if DEBUG else DATABASES["default"]["CONN_MAX_AGE"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared, fast-changing state: in-process memory by default, Redis when REDIS_URL is set.
REDIS_URL = env_str("REDIS_URL")
GATEWAY_STATE_PREFIX = env_str("GATEWAY_STATE_PREFIX", "gw:")
# How often each process checks the shared config version (seconds). 0 disables the
# background watcher (tests rebuild the snapshot explicitly).
GATEWAY_CONFIG_POLL_INTERVAL = env_float("GATEWAY_CONFIG_POLL_INTERVAL", 0.5)

# While an event stream is silent, a comment line goes to the client this often: the write is
# how a WSGI server learns the client has gone, and frees the thread the stream holds.
GATEWAY_STREAM_KEEPALIVE_SECONDS = env_float("GATEWAY_STREAM_KEEPALIVE_SECONDS", 5.0)

# Legacy-era MCP sessions: how long a session's target binding lives without traffic.
GATEWAY_MCP_SESSION_TTL = env_int("GATEWAY_MCP_SESSION_TTL", 30 * 60)

# Request limits (the guard stage).
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 10 * 1024 * 1024)
GATEWAY_MAX_HEADER_BYTES = env_int("GATEWAY_MAX_HEADER_BYTES", 16 * 1024)
GATEWAY_MAX_HEADER_COUNT = env_int("GATEWAY_MAX_HEADER_COUNT", 100)
GATEWAY_MAX_URL_BYTES = env_int("GATEWAY_MAX_URL_BYTES", 8 * 1024)

# --- Input validation, injection detection, sanitization (security/validation.py,
# security/injection.py, security/sanitization.py) ---
# Deepest JSON nesting accepted in a parsed body; deeper bodies get 400 before json.loads runs.
GATEWAY_MAX_JSON_DEPTH = env_int("GATEWAY_MAX_JSON_DEPTH", 32)
# Most JSON keys and values the injection scan inspects; beyond it a blocking route refuses.
GATEWAY_INJECTION_MAX_NODES = env_int("GATEWAY_INJECTION_MAX_NODES", 20000)
# --- end input validation ---

# --- CORS and security headers (security/headers.py, security/origin.py) -------------------
# Browser origins allowed to call the gateway cross-origin ("https://app.example,
# http://localhost:5173"). The same list is the MCP Origin check's allow-list (DNS-rebinding
# protection); a request's own host is always allowed there. Empty: no cross-origin access.
CORS_ALLOWED_ORIGINS = env_list("GATEWAY_CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_CREDENTIALS = env_bool("GATEWAY_CORS_ALLOW_CREDENTIALS", False)
# Chromium caps the preflight cache at 2 hours; a longer value would buy nothing there.
CORS_PREFLIGHT_MAX_AGE = env_int("GATEWAY_CORS_PREFLIGHT_MAX_AGE", 7200)
# The admin authenticates with a session cookie and is never meant to be read cross-origin.
CORS_URLS_REGEX = r"^(?!/admin/)"
CORS_ALLOW_METHODS = ["DELETE", "GET", "OPTIONS", "PATCH", "POST", "PUT"]
CORS_ALLOW_HEADERS = [
    "Accept",
    "Authorization",
    "Content-Type",
    "Last-Event-ID",
    "MCP-Protocol-Version",
    "Mcp-Method",
    "Mcp-Name",
    "Mcp-Session-Id",
    "X-API-Key",
]
# What a browser MCP client must be able to read from an answer.
CORS_EXPOSE_HEADERS = [
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "WWW-Authenticate",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]
# `check --deploy` looks for Django's own X-Frame-Options and HSTS machinery; the gateway's
# SecurityHeadersMiddleware sends both on every response instead.
SILENCED_SYSTEM_CHECKS = [
    "security.W002",
    "security.W004",
    # The admin looks for its middleware by name in MIDDLEWARE; it runs inside
    # gateway_project.middleware.OperatorMiddleware instead, for the admin's paths.
    "admin.E408",
    "admin.E409",
    "admin.E410",
]
# --- end of CORS and security headers --------------------------------------------------------

# Upstream connection pools (performance/pools.py): one per target origin, in each process.
# Most connections to one origin at once. Every open event stream holds one for its whole life,
# so the default is the thread count: the in-flight cap (GATEWAY_MAX_IN_FLIGHT, below it) is
# always reached first, and hundreds of open streams to one upstream never starve its calls.
GATEWAY_POOL_MAXSIZE = env_int("GATEWAY_POOL_MAXSIZE", GATEWAY_THREADS)
# Closing idle connections leaves this many of the most recently used open per origin. Nothing
# is opened in advance; 0 lets a target the gateway stopped calling end with no socket at all.
GATEWAY_POOL_MIN_IDLE = env_int("GATEWAY_POOL_MIN_IDLE", 0)
# A connection unused this long is closed rather than reused (upstreams and middleboxes drop
# long-idle connections; reusing one that died mid-request would fail the request).
GATEWAY_POOL_IDLE_TIMEOUT_SECONDS = env_float("GATEWAY_POOL_IDLE_TIMEOUT_SECONDS", 300.0)
# With every connection to an origin in use, a request waits this long for one, then gets a
# 503 with Retry-After rather than hanging.
GATEWAY_POOL_ACQUIRE_TIMEOUT_SECONDS = env_float("GATEWAY_POOL_ACQUIRE_TIMEOUT_SECONDS", 5.0)
# How often each process's sweeper thread closes expired idle connections and those the
# upstream closed. 0: no thread; they are then only checked when a request takes one.
GATEWAY_POOL_VALIDATION_INTERVAL_SECONDS = env_float("GATEWAY_POOL_VALIDATION_INTERVAL_SECONDS", 30.0)
# Upstream origins pooled at once; beyond it the least recently used pool is closed.
GATEWAY_POOL_NUM_POOLS = env_int("GATEWAY_POOL_NUM_POOLS", 100)
if GATEWAY_POOL_MAXSIZE < 1 or GATEWAY_POOL_MIN_IDLE < 0 or GATEWAY_POOL_NUM_POOLS < 1:
    raise ImproperlyConfigured("GATEWAY_POOL_MAXSIZE and GATEWAY_POOL_NUM_POOLS must be at least 1, GATEWAY_POOL_MIN_IDLE at least 0")
if min(GATEWAY_POOL_IDLE_TIMEOUT_SECONDS, GATEWAY_POOL_ACQUIRE_TIMEOUT_SECONDS, GATEWAY_POOL_VALIDATION_INTERVAL_SECONDS) < 0:
    raise ImproperlyConfigured("GATEWAY_POOL_*_SECONDS must not be negative")

# JSON-RPC batches (performance/batching.py): items per batch, how long the batch waits for its
# items' answers (a late item gets its own timeout error), and the threads running items.
GATEWAY_BATCH_MAX_ITEMS = env_int("GATEWAY_BATCH_MAX_ITEMS", 10)
GATEWAY_BATCH_TIMEOUT_SECONDS = env_float("GATEWAY_BATCH_TIMEOUT_SECONDS", 1.0)
GATEWAY_BATCH_WORKERS = env_int("GATEWAY_BATCH_WORKERS", 32)
# Micro-batching toward upstreams that accept batches (routes opt in): collect for at most this
# long or this many calls, then send one batch.
GATEWAY_MICROBATCH_WINDOW_SECONDS = env_float("GATEWAY_MICROBATCH_WINDOW_SECONDS", 0.1)
GATEWAY_MICROBATCH_MAX_ITEMS = env_int("GATEWAY_MICROBATCH_MAX_ITEMS", 10)
# Threads asking a fan-out route's services at once (performance/fanout.py).
GATEWAY_FANOUT_WORKERS = env_int("GATEWAY_FANOUT_WORKERS", 32)

# Response cache (performance/cache.py): most answers kept at once across the gateway (LRU
# beyond it); each route opts in, with a TTL of 5 minutes to 1 hour, in its cache policy.
GATEWAY_CACHE_MAX_ENTRIES = env_int("GATEWAY_CACHE_MAX_ENTRIES", 10000)

# --- Metrics and alerts (monitoring/) ---
# How often each gateway process moves its request metrics into the state store; also the width
# of one point of the dashboard's time series (1..300 s, check monitoring.E001).
GATEWAY_METRICS_INTERVAL_SECONDS = env_int("GATEWAY_METRICS_INTERVAL_SECONDS", 10)
# A bearer token that may read /metrics (a Prometheus scraper); empty: staff sessions only.
GATEWAY_METRICS_TOKEN = env_str("GATEWAY_METRICS_TOKEN")
# Each serving process flushes its metrics from a thread of its own (started on its first
# exchange); tests switch it off and flush by hand.
GATEWAY_METRICS_BACKGROUND_FLUSH = env_bool("GATEWAY_METRICS_BACKGROUND_FLUSH", True)
# --- end metrics ---

# --- Virtual MCP servers (federation/) ---
# How long a member's fetched lists are trusted before they are fetched again, how often the
# worker refreshes every member, and how soon a member found down is asked again.
GATEWAY_FEDERATION_LIST_TTL_SECONDS = env_float("GATEWAY_FEDERATION_LIST_TTL_SECONDS", 60.0)
GATEWAY_FEDERATION_REFRESH_SECONDS = env_float("GATEWAY_FEDERATION_REFRESH_SECONDS", 20.0)
GATEWAY_FEDERATION_DOWN_RETRY_SECONDS = env_float("GATEWAY_FEDERATION_DOWN_RETRY_SECONDS", 5.0)
# Items per page of a virtual server's tools/prompts/resources lists.
GATEWAY_FEDERATION_PAGE_SIZE = env_int("GATEWAY_FEDERATION_PAGE_SIZE", 100)
# How often a client's list_changed stream looks for new events, and the threads fetching
# members' lists at once.
GATEWAY_FEDERATION_EVENT_POLL_SECONDS = env_float("GATEWAY_FEDERATION_EVENT_POLL_SECONDS", 0.5)
GATEWAY_FEDERATION_FETCH_WORKERS = env_int("GATEWAY_FEDERATION_FETCH_WORKERS", 8)
# --- end virtual servers ---

# --- Rate limiting (security/ratelimit.py, security/admin.py) ---
_RATE_PATTERN = re.compile(r"^(0|[1-9][0-9]*/[0-9]*\.?[0-9]+)$")


def _rate_setting(name: str, default: str) -> str:
    """A "limit/window_seconds" pair such as "600/60"; "0" switches the limit off."""
    value = env_str(name, default).strip()
    if not _RATE_PATTERN.match(value) or (value != "0" and float(value.split("/")[1]) <= 0):
        raise ImproperlyConfigured(f'{name} must look like "600/60" (requests/seconds) or "0", got {value!r}')
    return value


# Applies to every proxied request, per client IP, even with no policy in the database.
GATEWAY_DEFAULT_IP_RATE_LIMIT = _rate_setting("GATEWAY_DEFAULT_IP_RATE_LIMIT", "600/60")
# When Redis cannot be reached: "open" limits per process instead, "closed" answers 503.
GATEWAY_RATE_LIMIT_FAILURE_MODE = env_str("GATEWAY_RATE_LIMIT_FAILURE_MODE", "open")
if GATEWAY_RATE_LIMIT_FAILURE_MODE not in ("open", "closed"):
    raise ImproperlyConfigured(f'GATEWAY_RATE_LIMIT_FAILURE_MODE must be "open" or "closed", got {GATEWAY_RATE_LIMIT_FAILURE_MODE!r}')
# Reverse proxies in front of the gateway that append to X-Forwarded-For; 0 = use the peer address.
GATEWAY_RATE_LIMIT_TRUSTED_PROXIES = env_int("GATEWAY_RATE_LIMIT_TRUSTED_PROXIES", 0)
# POSTs to the admin login per client IP (django-ratelimit's rate syntax: "10/m", "5/300s").
GATEWAY_ADMIN_LOGIN_RATE_LIMIT = env_str("GATEWAY_ADMIN_LOGIN_RATE_LIMIT", "10/m")
# django-ratelimit counts in Django's cache: shared through Redis when there is one.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "gwcache"}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
RATELIMIT_USE_CACHE = "default"
# --- end rate limiting ---

# --- Authentication (authn/) ---------------------------------------------------------------
# The gateway's public base URL: the OAuth protected resource it names in its RFC 9728
# metadata, the audience external tokens must carry (RFC 8707), and its own tokens' issuer.
GATEWAY_PUBLIC_URL = env_str("GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{PORT}").rstrip("/")
GATEWAY_JWT_ISSUER = env_str("GATEWAY_JWT_ISSUER", GATEWAY_PUBLIC_URL)
# HS256 needs at least 32 bytes of key; SECRET_KEY (50 random bytes) is the default.
GATEWAY_JWT_SIGNING_KEY = env_str("GATEWAY_JWT_SIGNING_KEY") or SECRET_KEY
if len(GATEWAY_JWT_SIGNING_KEY.encode()) < 32:
    raise ImproperlyConfigured("GATEWAY_JWT_SIGNING_KEY must be at least 32 bytes for HS256")
# Token lifetimes are fixed (1 hour, 7 days): there is deliberately no environment variable,
# and system check authn.E001 refuses to start with any other value.
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": GATEWAY_JWT_SIGNING_KEY,
    "VERIFYING_KEY": "",
    "ISSUER": GATEWAY_JWT_ISSUER,
    "AUDIENCE": None,
    "LEEWAY": 0,
    "ACCESS_TOKEN_LIFETIME": timedelta(hours=1),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=7),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "userId",
    "TOKEN_TYPE_CLAIM": "token_type",
    "JTI_CLAIM": "jti",
    "AUTH_HEADER_TYPES": ("Bearer",),
}
# The token endpoints, per client IP (django-ratelimit's rate syntax).
GATEWAY_AUTH_TOKEN_RATE_LIMIT = env_str("GATEWAY_AUTH_TOKEN_RATE_LIMIT", "10/m")
GATEWAY_AUTH_REFRESH_RATE_LIMIT = env_str("GATEWAY_AUTH_REFRESH_RATE_LIMIT", "30/m")
# How long an external identity provider's JWKS is trusted before it is fetched again; an
# unknown kid refetches sooner, but never more often than the cooldown.
GATEWAY_JWKS_CACHE_SECONDS = env_int("GATEWAY_JWKS_CACHE_SECONDS", 3600)
GATEWAY_JWKS_REFRESH_COOLDOWN_SECONDS = env_float("GATEWAY_JWKS_REFRESH_COOLDOWN_SECONDS", 30.0)
# --- end authentication ---

# --- REST API (/api/v1/: gateway_project/api.py, api_urls.py; docs/api.md) ------------------
# Requests per principal (user, API key; the client IP for anyone else) to the REST API, in
# DRF's rate syntax: "600/min", "20/s", "10000/day". Counted in Django's cache (Redis when set).
GATEWAY_API_RATE_LIMIT = env_str("GATEWAY_API_RATE_LIMIT", "600/min")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", GATEWAY_API_RATE_LIMIT):
    raise ImproperlyConfigured(f'GATEWAY_API_RATE_LIMIT must look like "600/min" (or /s, /h, /day), got {GATEWAY_API_RATE_LIMIT!r}')
REST_FRAMEWORK = {
    # JWT first: its Bearer challenge is the WWW-Authenticate of every 401 (DRF asks the first
    # class). Sessions are for staff signed in to the admin, browsing the API and its docs.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "gateway_project.api.GatewayJWTAuthentication",
        "gateway_project.api.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["gateway_project.api.IsStaffOrGrantedKey"],
    "DEFAULT_THROTTLE_CLASSES": ["gateway_project.api.PrincipalRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "gateway_project.api.GatewayPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # JSON only (the config endpoint adds YAML): one body format to validate and to document.
    "DEFAULT_PARSER_CLASSES": ["gateway_project.api.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # Every error as problem+json (RFC 9457), like the rest of the gateway.
    "EXCEPTION_HANDLER": "gateway_project.api.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MCP gateway API",
    "DESCRIPTION": "Configure the gateway: services, targets, routes, policies, keys and sessions. "
    "Errors are application/problem+json (RFC 9457).",
    "VERSION": "1",
    # Separate request and response components: read-only fields (ids, timestamps, key
    # prefixes) are not offered as inputs, so clients and fuzzers see what may really be sent.
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and docs are read like any other endpoint: staff, or a key holding api:read.
    "SERVE_PERMISSIONS": ["gateway_project.api.IsStaffOrGrantedKey"],
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "gateway_project.api_docs.document_problem_responses",
    ],
}
# --- end REST API ----------------------------------------------------------------------------

# The first admin user, created by `manage.py ensure_admin` (a password is generated if empty).
GATEWAY_ADMIN_USER = env_str("GATEWAY_ADMIN_USER", "admin")
GATEWAY_ADMIN_PASSWORD = env_str("GATEWAY_ADMIN_PASSWORD")

# The bundled demo MCP server (seeded at /mcp/demo).
GATEWAY_DEMO_PORT = env_int("GATEWAY_DEMO_PORT", 9100)
GATEWAY_DEMO_UPSTREAM = env_str("GATEWAY_DEMO_UPSTREAM", f"http://127.0.0.1:{GATEWAY_DEMO_PORT}/mcp")

# Django's own upload limit must not cut the gateway's body-size check short.
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"

# Behind a TLS-terminating load balancer the original scheme arrives in X-Forwarded-Proto.
if env_bool("GATEWAY_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "gateway.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
    },
}

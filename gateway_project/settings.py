"""Gateway settings: the one place that reads the environment.

Every knob is an environment variable read through a small typed helper that fails loudly on a
bad value. Apps read their settings through their own ``conf.py`` so tests can override them.

Two deployment shapes:
- embedded default: SQLite file and in-process state in ``GATEWAY_DATA_DIR`` (one process);
- scale-out: ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` shared by many processes.
"""

from __future__ import annotations

import os
import secrets
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
GATEWAY_THREADS = env_int("GATEWAY_THREADS", 64)
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
    "corsheaders",
    "gateway_project",
    "routing",
    "security",
    "performance",
    "authn",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

# Legacy-era MCP sessions: how long a session's target binding lives without traffic.
GATEWAY_MCP_SESSION_TTL = env_int("GATEWAY_MCP_SESSION_TTL", 30 * 60)

# Request limits (the guard stage).
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 10 * 1024 * 1024)
GATEWAY_MAX_HEADER_BYTES = env_int("GATEWAY_MAX_HEADER_BYTES", 16 * 1024)
GATEWAY_MAX_HEADER_COUNT = env_int("GATEWAY_MAX_HEADER_COUNT", 100)
GATEWAY_MAX_URL_BYTES = env_int("GATEWAY_MAX_URL_BYTES", 8 * 1024)

# Upstream connection pools.
GATEWAY_POOL_MAXSIZE = env_int("GATEWAY_POOL_MAXSIZE", 20)
GATEWAY_POOL_NUM_POOLS = env_int("GATEWAY_POOL_NUM_POOLS", 100)

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

"""WSGI entry point for the production server (granian)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

application = get_wsgi_application()

# A serving process keeps its routing snapshot in step with the shared config version.
from routing.config_version import start_config_watcher  # noqa: E402  (needs Django set up)

start_config_watcher()

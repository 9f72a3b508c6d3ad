"""WSGI entry point for the production server (granian)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

application = get_wsgi_application()

# A serving process keeps its routing snapshot in step with the shared config version, and in
# the embedded shape also runs the background jobs itself. Imported here: they need Django set up.
from django.conf import settings  # noqa: E402

from routing.config_version import start_config_watcher  # noqa: E402

start_config_watcher()
if settings.GATEWAY_WORKER_IN_PROCESS:
    from gateway_project.worker import start_worker_thread

    start_worker_thread()

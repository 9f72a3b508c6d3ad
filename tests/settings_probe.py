"""Reading the settings as a fresh process would, under a chosen environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The caller's environment must not leak in: the test states every variable that matters.
INHERITED_AWAY = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")


def settings_in_subprocess(env: dict[str, str], expression: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a new interpreter with ``env`` and print ``expression``."""
    clean = {k: v for k, v in os.environ.items() if k not in INHERITED_AWAY and not k.startswith("GATEWAY_")}
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "gateway_project.settings", **env},
        capture_output=True,
        text=True,
    )

"""python manage.py export_config: write the routing setup as a document (JSON or YAML).

    python manage.py export_config > gateway.json
    python manage.py export_config --output gateway.yaml          # the format follows the extension
    python manage.py export_config --format yaml

Services with their targets, routes with their cache policies, rate-limit policies, alert rules;
no ids and no secrets of the gateway's own (see gateway_project/configuration.py and docs/api.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from gateway_project.config_document import FORMATS, dump_document, format_for
from gateway_project.configuration import export_document


class Command(BaseCommand):
    help = "Export services, targets, routes, policies and alert rules as a JSON or YAML document."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=FORMATS, help="Default: from the output file's extension, else json.")
        parser.add_argument("--output", "-o", help="A file to write; default: standard output.")

    def handle(self, *args: Any, **options: Any) -> None:
        text = dump_document(export_document(), format_for(options["output"], options["format"]))
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
        else:
            self.stdout.write(text, ending="")

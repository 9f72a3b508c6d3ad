"""python manage.py import_config FILE: make the routing setup what a document says.

    python manage.py import_config gateway.yaml --dry-run     # validate and count, change nothing
    python manage.py import_config gateway.yaml               # create and update
    python manage.py import_config gateway.yaml --prune       # ... and delete what it does not mention
    python manage.py export_config | python manage.py import_config - --format json

Validated first and applied in one transaction: a document with any error changes nothing, and
the errors are listed by their place in the document. Running gateways pick the change up
within a second (the config version).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway_project.config_document import FORMATS, format_for, parse_document
from gateway_project.configuration import ConfigImportError, ImportSummary, import_document


class Command(BaseCommand):
    help = "Import services, targets, routes, policies and alert rules from a JSON or YAML document."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help='The document; "-" reads standard input.')
        parser.add_argument("--format", choices=FORMATS, help="Default: from the file's extension, else json.")
        parser.add_argument("--prune", action="store_true", help="Also delete what the document does not mention.")
        parser.add_argument("--dry-run", action="store_true", help="Validate and count, then change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        text = sys.stdin.read() if path == "-" else read_file(path)
        try:
            document = parse_document(text, format_for(None if path == "-" else path, options["format"]))
            summary = import_document(document, prune=options["prune"], dry_run=options["dry_run"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except ConfigImportError as exc:
            lines = [f"  {place}: {message}" for place, messages in exc.errors.items() for message in messages]
            raise CommandError("Nothing was changed; the document is not valid:\n" + "\n".join(lines)) from None
        self.stdout.write(describe(summary))


def read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}") from None


def describe(summary: ImportSummary) -> str:
    """One line per kind of change, e.g. "created: 2 services, 3 targets"."""
    lines = ["Dry run: nothing was changed." if summary.dry_run else "Imported."]
    for name in ("created", "updated", "unchanged", "deleted"):
        counts = getattr(summary, name)
        parts = [f"{counts[kind]} {kind.replace('_', ' ')}" for kind in counts if counts[kind]]
        if parts:
            lines.append(f"{name}: {', '.join(parts)}")
    lines += [f"warning: {warning}" for warning in summary.warnings]
    return "\n".join(lines)

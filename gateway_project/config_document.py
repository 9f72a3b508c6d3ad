"""The configuration document as text and as data: JSON and YAML in and out, the fields each
kind of entry holds, and the check of a document's shape that runs before any query.

What the document means, and how it is exported and imported, is ``configuration.py``'s; the
format is described in ``docs/api.md``.

The fields are the models' own: every editable field a person sets, minus a target's health
state (the health checker's) and its credential; references to other objects are names, written
one by one in ``configuration.py``. A field added to a model is part of the document without a
change here. An alert rule's webhook URL is one of those fields, exported as it is.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import yaml
from django.db import models
from yaml.composer import ComposerError

from gateway_project.api import is_storable_text
from monitoring.models import AlertRule
from performance.models import ResponseCachePolicy
from routing.api import TARGET_RUNTIME_FIELDS
from routing.models import Route, Service, Target
from security.models import RateLimitPolicy

DOCUMENT_VERSION = 1
SECTIONS = ("services", "routes", "rate_limit_policies", "alert_rules")
FORMATS = ("json", "yaml")
# Deeper nesting than any real configuration; a bound so a hostile document cannot recurse deeply.
MAX_DEPTH = 32

SECRET_FIELD = "upstream_auth_value"
SECRET_PRESENCE_FIELD = "upstream_auth_value_set"


# --- fields --------------------------------------------------------------------------------------


def setting_fields(model: type[models.Model], *, leave_out: tuple[str, ...] = ()) -> list[models.Field]:
    """The values a person sets, in model order: editable fields, not the id, not references
    to other objects (those are written by name, one by one, in ``configuration.py``)."""
    return [
        f
        for f in model._meta.concrete_fields
        if f.editable and not f.primary_key and not f.is_relation and f.name not in leave_out
    ]


SERVICE_FIELDS = setting_fields(Service)
TARGET_FIELDS = setting_fields(Target, leave_out=(SECRET_FIELD, *TARGET_RUNTIME_FIELDS))
ROUTE_FIELDS = setting_fields(Route)
CACHE_POLICY_FIELDS = setting_fields(ResponseCachePolicy)
POLICY_FIELDS = setting_fields(RateLimitPolicy)
ALERT_RULE_FIELDS = setting_fields(AlertRule)


# --- reading and writing documents ---------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a few aliases can stand for an exponentially large
    document ("billion laughs"), and configuration has no need for them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ComposerError(None, None, "aliases (*name) are not accepted", event.start_mark)
        return super().compose_node(parent, index)


def parse_document(text: str, fmt: str) -> Any:
    """The document in ``text`` (JSON or YAML); ValueError says what is wrong with it."""
    if fmt == "yaml":
        try:
            return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader: plain data, no Python objects
        except yaml.YAMLError as exc:
            raise ValueError(f"Not valid YAML: {exc}") from None
        except RecursionError:
            raise ValueError(f"Not valid YAML: nested deeper than {MAX_DEPTH} levels") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"Not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"Not valid JSON: nested deeper than {MAX_DEPTH} levels") from None


def dump_document(document: dict[str, Any], fmt: str) -> str:
    if fmt == "yaml":
        return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def format_for(path: str | None, chosen: str | None) -> str:
    """The format asked for, else the one a file's extension names (.yaml, .yml), else JSON."""
    if chosen:
        return chosen
    return "yaml" if path and path.lower().endswith((".yaml", ".yml")) else "json"


# --- the shape of a document, checked before anything is read or written -----------------------


def shape_problems(document: Any, *, prune: bool) -> dict[str, list[str]]:
    """What makes ``document`` unusable as a whole, before any object is looked at."""
    if not isinstance(document, dict):
        return {"document": [f"The document must be an object with version and the sections {', '.join(SECTIONS)}."]}
    problems: dict[str, list[str]] = {}
    if document.get("version") != DOCUMENT_VERSION:
        problems["version"] = [f"Give version: {DOCUMENT_VERSION}."]
    for key in document.keys() - {"version", *SECTIONS}:
        problems[str(key)] = [f"Unknown section; the sections are {', '.join(SECTIONS)}."]
    plain = json_problem(document, "document", 0)
    if plain is not None:
        problems["document"] = [plain]
    for section in SECTIONS:
        problems.update(section_problems(document, section, prune))
    if prune and not problems:
        problems.update(dangling_references(document))
    return problems


def json_problem(value: Any, place: str, depth: int) -> str | None:
    """Why ``value`` is not plain JSON data (YAML also has dates, sets, non-string keys), or None."""
    if depth > MAX_DEPTH:
        return f"{place} is nested more than {MAX_DEPTH} levels deep."
    if isinstance(value, float) and not math.isfinite(value):
        return f"{place} is not a finite number."
    if isinstance(value, str):
        return None if is_storable_text(value) else f"{place} holds a NUL character or a lone UTF-16 surrogate."
    if value is None or isinstance(value, (bool, int, float)):
        return None
    if isinstance(value, list):
        return next((p for index, item in enumerate(value) if (p := json_problem(item, f"{place}[{index}]", depth + 1))), None)
    if isinstance(value, dict):
        if not all(isinstance(key, str) and is_storable_text(key) for key in value):
            return f"{place} has a key that is not a string, or holds a NUL character or a lone surrogate."
        return next((p for key, item in value.items() if (p := json_problem(item, f"{place}.{key}", depth + 1))), None)
    return f"{place} holds a {type(value).__name__}, which JSON has no place for."


# The model fields each kind of entry sets, for the checks of single values below.
FIELDS_OF_KIND = {
    "services": SERVICE_FIELDS,
    "targets": TARGET_FIELDS,
    "routes": ROUTE_FIELDS,
    "cache_policy": CACHE_POLICY_FIELDS,
    "rate_limit_policies": POLICY_FIELDS,
    "alert_rules": ALERT_RULE_FIELDS,
}
NOT_NULL = "This field cannot be null."
NOT_A_SINGLE_VALUE = "Give a single value, not a list or an object."

ALLOWED_KEYS = {
    "services": {f.name for f in SERVICE_FIELDS} | {"targets"},
    "targets": {f.name for f in TARGET_FIELDS} | {SECRET_FIELD, SECRET_PRESENCE_FIELD},
    "routes": {f.name for f in ROUTE_FIELDS} | {"service", "cache_policy"},
    "cache_policy": {f.name for f in CACHE_POLICY_FIELDS},
    "rate_limit_policies": {f.name for f in POLICY_FIELDS} | {"routes"},
    "alert_rules": {f.name for f in ALERT_RULE_FIELDS},
}


def section_problems(document: dict[str, Any], section: str, prune: bool) -> dict[str, list[str]]:
    if section not in document:
        # With prune, a forgotten section would delete everything in it.
        return {section: ["With prune every section must be present (an empty list deletes them all)."]} if prune else {}
    entries = document[section]
    if not isinstance(entries, list):
        return {section: ["Give a list."]}
    problems: dict[str, list[str]] = {}
    for index, entry in enumerate(entries):
        problems.update(entry_problems(entry, f"{section}[{index}]", section, "name"))
        if section == "services" and isinstance(entry, dict):
            problems.update(nested_list_problems(entry.get("targets", []), f"{section}[{index}].targets", "targets", "url"))
        if section == "routes" and isinstance(entry, dict) and entry.get("cache_policy") is not None:
            problems.update(entry_problems(entry["cache_policy"], f"{section}[{index}].cache_policy", "cache_policy", None))
    problems.update(duplicate_problems(entries, section, "name"))
    return problems


def nested_list_problems(entries: Any, place: str, kind: str, key: str) -> dict[str, list[str]]:
    if not isinstance(entries, list):
        return {place: ["Give a list."]}
    problems: dict[str, list[str]] = {}
    for index, entry in enumerate(entries):
        problems.update(entry_problems(entry, f"{place}[{index}]", kind, key))
    problems.update(duplicate_problems(entries, place, key))
    return problems


def entry_problems(entry: Any, place: str, kind: str, key: str | None) -> dict[str, list[str]]:
    if not isinstance(entry, dict):
        return {place: ["Give an object."]}
    problems: dict[str, list[str]] = {}
    unknown = sorted(set(entry) - ALLOWED_KEYS[kind])
    if unknown:
        problems[place] = [f"Unknown field(s): {', '.join(unknown)}."]
    if key is not None and not (isinstance(entry.get(key), str) and entry[key]):
        problems[f"{place}.{key}"] = [f"Every entry needs a {key}."]
    problems.update(value_problems(entry, place, kind))
    if SECRET_FIELD in entry and not isinstance(entry[SECRET_FIELD], str):
        problems[f"{place}.{SECRET_FIELD}"] = ["Give the credential as a string."]
    if SECRET_PRESENCE_FIELD in entry and not isinstance(entry[SECRET_PRESENCE_FIELD], bool):
        problems[f"{place}.{SECRET_PRESENCE_FIELD}"] = ["Give true or false."]
    return problems


def value_problems(entry: dict[str, Any], place: str, kind: str) -> dict[str, list[str]]:
    """Values no field of their kind can hold: null where the column is not nullable (Django's
    validation skips blank values, so the database would refuse it at save), a list or an
    object in a field that is not JSON (the validators' comparisons would fail on it)."""
    problems: dict[str, list[str]] = {}
    for f in FIELDS_OF_KIND[kind]:
        value = entry.get(f.name)
        if f.name in entry and value is None and not f.null:
            problems[f"{place}.{f.name}"] = [NOT_NULL]
        elif isinstance(value, (list, dict)) and not isinstance(f, models.JSONField):
            problems[f"{place}.{f.name}"] = [NOT_A_SINGLE_VALUE]
    return problems


def duplicate_problems(entries: list[Any], place: str, key: str) -> dict[str, list[str]]:
    counts = Counter(str(entry[key]) for entry in entries if isinstance(entry, dict) and isinstance(entry.get(key), str))
    duplicates = sorted(value for value, count in counts.items() if count > 1)
    return {place: [f"Each {key} may appear once; repeated: {', '.join(duplicates)}."]} if duplicates else {}


def dangling_references(document: dict[str, Any]) -> dict[str, list[str]]:
    """With prune, everything not in the document goes: so references must stay inside it."""
    services = {entry["name"] for entry in document["services"]}
    routes = {entry["name"] for entry in document["routes"]}
    problems: dict[str, list[str]] = {}
    for index, route in enumerate(document["routes"]):
        fanout = route.get("fanout_services") if isinstance(route.get("fanout_services"), list) else []
        missing = sorted({str(name) for name in [route.get("service"), *fanout] if name not in services})
        if missing:
            problems[f"routes[{index}]"] = [f"Names services the document does not have: {', '.join(missing)}."]
    for index, policy in enumerate(document["rate_limit_policies"]):
        names = policy.get("routes") if isinstance(policy.get("routes"), list) else []
        missing = sorted({str(name) for name in names if name not in routes})
        if missing:
            problems[f"rate_limit_policies[{index}].routes"] = [f"Names routes the document does not have: {', '.join(missing)}."]
    return problems

"""The REST API described: its OpenAPI schema's extras, and a docs page that loads nothing.

drf-spectacular writes the schema (``/api/v1/schema/``). Three things are added here:
- security schemes for the gateway's own authentication classes (Bearer JWT, API key);
- the problem+json error answers every operation can give, so the schema is complete;
- ``/api/v1/docs/``: the schema rendered as a plain HTML page on the server. Swagger UI and
  Redoc are JavaScript bundles drf-spectacular loads from a CDN by default; the gateway may run
  without internet access and sends ``Content-Security-Policy: default-src 'self'``, and the
  sidecar package that would serve the bundles locally is not installed. A server-rendered page
  needs no script at all. To try requests, the browsable API at ``/api/v1/`` works with the
  admin's session (its assets are DRF's own static files, served by the gateway).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import extend_schema
from rest_framework.renderers import TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.api import ResourceNotFound, problem_response
from gateway_project.errors import PROBLEM_CONTENT_TYPE

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An error (RFC 9457).",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "description": "urn:mcp-gateway:error:<code>, stable per kind of error."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request's path."},
        "errors": {
            "type": "object",
            "additionalProperties": True,
            "description": "Validation errors only: the messages per field (non_field_errors for the object as a whole).",
        },
    },
}

# (status, description, whether it applies to an operation)
PROBLEM_ANSWERS: tuple[tuple[str, str, Any], ...] = (
    ("400", "The body or a query parameter is not valid.", lambda method, path: True),
    ("401", "No credential, or one that is not valid (WWW-Authenticate says which).", lambda method, path: True),
    ("403", "The credential may not do this.", lambda method, path: True),
    ("404", "No such object.", lambda method, path: "{" in path),
    ("409", "The object is still in use.", lambda method, path: method == "delete"),
    ("429", "Too many requests (Retry-After says when to try again).", lambda method, path: True),
    ("503", "The state store (sessions, counters) cannot be reached; Retry-After says when to try again.", lambda method, path: True),
)


class GatewayJWTScheme(OpenApiAuthenticationExtension):
    target_class = "gateway_project.api.GatewayJWTAuthentication"
    name = "jwt"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from POST /api/v1/auth/token/ (a staff user).",
        }


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "gateway_project.api.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key holding api:read (api:write, and a staff owner, to change anything); "
            "also accepted as Authorization: Bearer mgw_….",
        }


def document_problem_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every error answer is problem+json, and listed."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status, description, applies in PROBLEM_ANSWERS:
                if applies(method, path) and status not in responses:
                    responses[status] = {"description": description}
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    response["content"] = problem
    return result


# --- the docs page ---------------------------------------------------------------------------------


class ApiDocsView(APIView):
    """The OpenAPI document as one HTML page, rendered on the server."""

    renderer_classes = [TemplateHTMLRenderer]
    template_name = "gateway_project/api_docs.html"

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        schema = SchemaGenerator().get_schema(request=request, public=True)
        return Response({"info": schema["info"], "tags": operations_by_tag(schema)})


def operations_by_tag(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema's operations grouped by tag, each with its parameters, body fields and answers
    resolved to plain values for the template."""
    components = schema.get("components", {}).get("schemas", {})
    tags: dict[str, list[dict[str, Any]]] = {}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            entry = {
                "method": method.upper(),
                "path": path,
                "id": operation.get("operationId", ""),
                "summary": operation.get("summary", ""),
                "description": operation.get("description", ""),
                "parameters": [parameter_row(p, components) for p in operation.get("parameters", [])],
                "body": body_rows(operation.get("requestBody"), components),
                "responses": sorted((status, r.get("description", "")) for status, r in operation.get("responses", {}).items()),
            }
            tags.setdefault((operation.get("tags") or ["other"])[0], []).append(entry)
    return [{"name": name, "operations": ops} for name, ops in sorted(tags.items())]


def parameter_row(parameter: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": parameter.get("name", ""),
        "in": parameter.get("in", ""),
        "required": parameter.get("required", False),
        "type": type_name(parameter.get("schema", {}), components),
        "description": parameter.get("description", ""),
    }


def body_rows(request_body: dict[str, Any] | None, components: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of a request body (its first media type's schema, references resolved)."""
    if not request_body:
        return []
    content: dict[str, Any] = next(iter(request_body.get("content", {}).values()), {})
    schema = resolved(content.get("schema", {}), components)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "type": type_name(field, components),
            "required": name in required,
            "description": resolved(field, components).get("description", ""),
        }
        for name, field in schema.get("properties", {}).items()
        if not field.get("readOnly")
    ]


def resolved(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A ``$ref`` to a component (also wrapped in a one-entry allOf) replaced by the component."""
    if len(schema.get("allOf", [])) == 1:
        schema = {**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}
    ref = schema.get("$ref", "")
    return {**components.get(ref.rsplit("/", 1)[-1], {}), **{k: v for k, v in schema.items() if k != "$ref"}} if ref else schema


def type_name(schema: dict[str, Any], components: dict[str, Any] | None = None) -> str:
    """A short human name for a schema's type: "integer", "list of string", "one of a, b"."""
    schema = resolved(schema, components or {})
    if "oneOf" in schema:
        return " or ".join(type_name(option, components) for option in schema["oneOf"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(value) for value in schema["enum"] if value is not None)
    kind = str(schema.get("type", "any"))
    return f"list of {type_name(schema.get('items', {}), components)}" if kind == "array" else kind


# --- unknown API paths -----------------------------------------------------------------------------


def api_endpoint_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """A 404 for every other path under /api/v1/: never forwarded to an upstream, whatever
    route a prefix might match."""
    hint = " (API paths end with a slash)" if not request.path.endswith("/") else ""
    return problem_response(ResourceNotFound(f"No API endpoint at {request.path}{hint}"), request.path)

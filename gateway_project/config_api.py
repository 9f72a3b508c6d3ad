"""``/api/v1/config/``: the configuration document over HTTP (``gateway_project/configuration.py``).

    GET  /api/v1/config/                 the document as JSON (?format=yaml for YAML)
    POST /api/v1/config/?prune=true&dry_run=true
                                         import a document sent as JSON (application/json) or
                                         YAML (application/yaml); the answer is the summary

A document that is not valid answers 400 problem+json, its ``errors`` keyed by the place in the
document (``routes[2].path``), and changes nothing.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.api import MalformedBody, StrictJSONParser
from gateway_project.config_document import dump_document, parse_document
from gateway_project.configuration import ConfigImportError, export_document, import_document

YAML_MEDIA_TYPE = "application/yaml"  # RFC 9512


class YAMLParser(BaseParser):
    """A YAML body (plain data only: no tags, no aliases)."""

    media_type = YAML_MEDIA_TYPE

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return parse_document(stream.read().decode("utf-8"), "yaml")
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedBody(str(exc)) from None


class YAMLRenderer(BaseRenderer):
    media_type = YAML_MEDIA_TYPE
    format = "yaml"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return dump_document(data, "yaml").encode("utf-8")


class ImportSummarySerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    prune = serializers.BooleanField()
    created = serializers.DictField(child=serializers.IntegerField(), help_text="Per kind: services, targets, routes, …")
    updated = serializers.DictField(child=serializers.IntegerField())
    unchanged = serializers.DictField(child=serializers.IntegerField())
    deleted = serializers.DictField(child=serializers.IntegerField())
    warnings = serializers.ListField(child=serializers.CharField())


def query_flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise serializers.ValidationError({name: ["Give true or false."]})
    return value in ("true", "1")


@extend_schema(tags=["configuration"])
class ConfigView(APIView):
    """The routing setup as one document: services with their targets, routes with their cache
    policies, rate-limit policies and alert rules. No ids, no secrets of the gateway's own (alert
    rules' webhook URLs are exported as they are)."""

    parser_classes = [StrictJSONParser, YAMLParser]
    renderer_classes = [JSONRenderer, YAMLRenderer]

    @extend_schema(
        summary="Export the configuration",
        parameters=[OpenApiParameter("format", str, enum=["json", "yaml"], description="json (default) or yaml")],
        responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, YAML_MEDIA_TYPE): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> Response:
        return Response(export_document())

    @extend_schema(
        summary="Import a configuration document",
        parameters=[
            OpenApiParameter("prune", bool, description="Also delete what the document does not mention."),
            OpenApiParameter("dry_run", bool, description="Validate and count, then roll back."),
        ],
        request={"application/json": OpenApiTypes.OBJECT, YAML_MEDIA_TYPE: OpenApiTypes.STR},
        responses=ImportSummarySerializer,
    )
    def post(self, request: Request) -> Response:
        prune, dry_run = query_flag(request, "prune"), query_flag(request, "dry_run")
        try:
            summary = import_document(request.data, prune=prune, dry_run=dry_run)
        except ConfigImportError as exc:
            raise serializers.ValidationError(exc.errors) from None
        return Response(summary.as_dict())

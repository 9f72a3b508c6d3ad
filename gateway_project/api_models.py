"""Models through the REST API: the serializer and the viewset every app's ``api.py`` builds on.

- ``CleanedModelSerializer`` runs the model's own validation, so the API refuses exactly what
  the admin refuses, with the same messages;
- ``ConfigModelViewSet`` makes every write one transaction: the row, its many-to-many links and
  the config-version bump its signals make (so every process sees the change within a second)
  are committed together or not at all.
"""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from rest_framework import serializers, viewsets


class CleanedModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer that also runs the model's own validation (``full_clean``: field
    validators and ``clean()``) on the object the request would produce, so the API refuses
    exactly what the admin refuses, with the same messages, and saves what ``clean()``
    normalised (a route's methods upper-cased, for instance).
    """

    def build_standard_field(self, field_name: str, model_field: models.Field) -> tuple[type, dict[str, Any]]:
        """DRF turns a model's bound validators into ``min_value``/``max_value`` with messages of
        its own; keep the model's validators instead, so their messages are the admin's."""
        field_class, field_kwargs = super().build_standard_field(field_name, model_field)
        bounds = [v for v in model_field.validators if isinstance(v, (MinValueValidator, MaxValueValidator))]
        if bounds:
            field_kwargs.pop("min_value", None)
            field_kwargs.pop("max_value", None)
            field_kwargs["validators"] = [*field_kwargs.get("validators", []), *bounds]
        return field_class, field_kwargs

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        candidate = self.candidate_instance(attrs)
        try:
            # Uniqueness too: DRF checks it only for the fields it generates, not for those
            # declared by name (a cache policy's route).
            candidate.full_clean(exclude=self.unwritable_fields())
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None
        for name in attrs:
            if not self.is_many_to_many(name):
                attrs[name] = getattr(candidate, name)
        return attrs

    def candidate_instance(self, attrs: dict[str, Any]) -> models.Model:
        """The existing object with the changes applied (a copy), or a new unsaved one."""
        plain = {name: value for name, value in attrs.items() if not self.is_many_to_many(name)}
        if self.instance is None:
            return self.Meta.model(**plain)
        candidate = copy.copy(self.instance)
        for name, value in plain.items():
            setattr(candidate, name, value)
        return candidate

    def unwritable_fields(self) -> list[str]:
        """Model fields this serializer cannot set: like a ModelForm, their checks are skipped
        (a new API key's hash, a target's health state)."""
        writable = {field.source for field in self.fields.values() if not field.read_only}
        return [field.name for field in self.Meta.model._meta.concrete_fields if field.name not in writable]

    def is_many_to_many(self, name: str) -> bool:
        field = next((f for f in self.Meta.model._meta.get_fields() if f.name == name), None)
        return bool(field is not None and field.many_to_many)


class ConfigModelViewSet(viewsets.ModelViewSet):
    """CRUD where every write is one transaction: the row, its many-to-many links and the
    config-version bump its signals make are committed together or not at all."""

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        with transaction.atomic():
            serializer.save()

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        with transaction.atomic():
            serializer.save()

    def perform_destroy(self, instance: models.Model) -> None:
        with transaction.atomic():
            instance.delete()

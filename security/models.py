"""Rate-limit policies and API keys: edited in the admin, compiled into in-process caches for the
hot path."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from authn.models import GRANTS_HELP, grant_list_problem

SLIDING_WINDOW_NEEDS = "A sliding window needs a limit (requests) and a window in seconds."
TOKEN_BUCKET_NEEDS = "A token bucket needs a rate per second and a burst."
WINDOW_MUST_BE_POSITIVE = "The window must be longer than 0 seconds."
RATE_MUST_BE_POSITIVE = "The rate must be more than 0 requests per second."


class Algorithm(models.TextChoices):
    SLIDING_WINDOW = "sliding_window", "Sliding window (at most N requests in any window)"
    TOKEN_BUCKET = "token_bucket", "Token bucket (steady rate, bursts up to the burst size)"


class Scope(models.TextChoices):
    IP = "ip", "Per client IP address"
    USER = "user", "Per authenticated user (anonymous callers skipped)"
    API_KEY = "api_key", "Per API key (calls without a key skipped)"
    ROUTE = "route", "Per route"
    TOOL = "tool", "Per MCP tool (tools/call only)"


class RateLimitPolicy(models.Model):
    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    algorithm = models.CharField(max_length=20, choices=Algorithm.choices, default=Algorithm.SLIDING_WINDOW)
    scope = models.CharField(
        max_length=10, choices=Scope.choices, default=Scope.IP, help_text="What each separate counter belongs to."
    )
    limit = models.IntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Sliding window: requests allowed in any window.",
    )
    window_seconds = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.001)], help_text="Sliding window: its length in seconds."
    )
    rate_per_second = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.000001)],
        help_text="Token bucket: requests per second refilled (0.5 = one every 2 s).",
    )
    burst = models.IntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Token bucket: the bucket's size, requests allowed at once after a quiet spell.",
    )
    routes = models.ManyToManyField(
        "routing.Route",
        blank=True,
        related_name="rate_limit_policies",
        help_text="Routes this policy applies to; none selected = every route.",
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "rate-limit policy"
        verbose_name_plural = "rate-limit policies"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.algorithm == Algorithm.SLIDING_WINDOW:
            self._require_sliding_window_fields()
        else:
            self._require_token_bucket_fields()

    def _require_sliding_window_fields(self) -> None:
        errors: dict[str, str] = {}
        if self.limit is None:
            errors["limit"] = SLIDING_WINDOW_NEEDS
        if self.window_seconds is None:
            errors["window_seconds"] = SLIDING_WINDOW_NEEDS
        elif self.window_seconds <= 0:
            errors["window_seconds"] = WINDOW_MUST_BE_POSITIVE
        if errors:
            raise ValidationError(errors)

    def _require_token_bucket_fields(self) -> None:
        errors: dict[str, str] = {}
        if self.rate_per_second is None:
            errors["rate_per_second"] = TOKEN_BUCKET_NEEDS
        elif self.rate_per_second <= 0:
            errors["rate_per_second"] = RATE_MUST_BE_POSITIVE
        if self.burst is None:
            errors["burst"] = TOKEN_BUCKET_NEEDS
        if errors:
            raise ValidationError(errors)



class ApiKey(models.Model):
    """A client credential. Only its SHA-256 and a short visible prefix are stored; the key itself
    is shown once, when created or rotated (``security/api_keys.py``)."""

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # Deleting a user deletes their keys: a key outliving its owner would be a credential
        # nobody answers for.
        on_delete=models.CASCADE,
        related_name="api_keys",
    )
    key_prefix = models.CharField(max_length=8, unique=True, editable=False, help_text="The first characters after mgw_.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    permissions = models.JSONField(default=list, blank=True, help_text=GRANTS_HELP)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    enabled = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    per_minute_limit = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    per_hour_limit = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    per_day_limit = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)
    # Usage, flushed from the state store by the worker with update() (no signal, no config bump).
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    request_count = models.BigIntegerField(default=0, editable=False)
    latency_total_ms = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.name} (mgw_{self.key_prefix}…)"

    @property
    def average_latency_ms(self) -> float | None:
        return self.latency_total_ms / self.request_count if self.request_count else None

    def clean(self) -> None:
        problem = grant_list_problem(self.permissions)
        if problem is not None:
            raise ValidationError({"permissions": problem})

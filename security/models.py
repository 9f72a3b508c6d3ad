"""Rate-limit policies: edited in the admin, compiled into an in-process list for the hot path."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

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

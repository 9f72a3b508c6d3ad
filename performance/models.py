"""Response-cache configuration: which routes may have their answers served again, for how long.

One optional policy per route. Without one (or with it disabled) nothing on the route is
cached. The time to live is bounded: under 5 minutes a cache saves little and makes changes
look flaky; over an hour a changed tool list or resource lingers too long. The bounds are
enforced by the field validators (admin, forms, the API's model serializers), by ``clean()``
for the tool list, and by a database constraint for everything else (raw ORM, fixtures).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

MIN_TTL_SECONDS = 300
MAX_TTL_SECONDS = 3600
DEFAULT_TTL_SECONDS = 300

TTL_RANGE_MESSAGE = (
    f"Choose a time to live between {MIN_TTL_SECONDS} seconds (5 minutes) and {MAX_TTL_SECONDS} seconds (1 hour)."
)
CACHEABLE_TOOLS_MESSAGE = 'Give a list of tool names, e.g. ["search"].'


class ResponseCachePolicy(models.Model):
    """A route's opt-in to the response cache (see ``performance/cache.py`` for what is cached)."""

    route = models.OneToOneField("routing.Route", on_delete=models.CASCADE, related_name="cache_policy")
    enabled = models.BooleanField(default=True)
    ttl_seconds = models.PositiveIntegerField(
        "time to live (s)",
        default=DEFAULT_TTL_SECONDS,
        # One message for both bounds, so the operator learns the whole range at once.
        validators=[
            MinValueValidator(MIN_TTL_SECONDS, message=TTL_RANGE_MESSAGE),
            MaxValueValidator(MAX_TTL_SECONDS, message=TTL_RANGE_MESSAGE),
        ],
        help_text="How long an answer is served from the cache: 300 (5 minutes) to 3600 (1 hour). "
        "An upstream hint (MCP ttlMs, HTTP max-age) can only shorten it; a hint under 5 minutes means "
        "that answer is not cached.",
    )
    cacheable_tools = models.JSONField(
        default=list,
        blank=True,
        help_text='MCP routes: tools whose tools/call answers depend only on their arguments, e.g. ["search"]. '
        "Other tool calls are never cached. (HTTP routes cache GET and HEAD; MCP routes the list methods, "
        "resources/read and prompts/get.)",
    )

    class Meta:
        verbose_name = "response cache policy"
        verbose_name_plural = "response cache policies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ttl_seconds__gte=MIN_TTL_SECONDS, ttl_seconds__lte=MAX_TTL_SECONDS),
                name="response_cache_ttl_in_range",
                violation_error_message=TTL_RANGE_MESSAGE,
            ),
        ]

    def __str__(self) -> str:
        return f"cache for {self.route}"

    def clean(self) -> None:
        # The TTL range is the field validators' (clean() repeating it would show the message twice).
        tools = self.cacheable_tools
        if not isinstance(tools, list) or not all(isinstance(tool, str) and tool for tool in tools):
            raise ValidationError({"cacheable_tools": CACHEABLE_TOOLS_MESSAGE})

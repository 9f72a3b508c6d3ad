"""Virtual-server configuration changes bump the config version, like routing's own models, so
every process rebuilds its compiled view (``federation.snapshot``) on the next request."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from federation.models import ApprovedTool, ExposureRule, Member, VirtualServer
from routing.config_version import bump_config_version
from routing.models import Route, Service


@receiver(post_save, sender=VirtualServer)
@receiver(post_save, sender=Member)
@receiver(post_save, sender=ExposureRule)
@receiver(post_save, sender=ApprovedTool)
@receiver(post_delete, sender=Member)
@receiver(post_delete, sender=ExposureRule)
@receiver(post_delete, sender=ApprovedTool)
def config_changed(sender: type, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return
    bump_config_version()


@receiver(post_delete, sender=VirtualServer)
def remove_route_and_service(sender: type, instance: VirtualServer, **kwargs: Any) -> None:
    """The route and service exist only to serve the virtual server: they go with it (the route
    first, since it protects its service)."""
    if instance.route_id is not None:
        Route.objects.filter(pk=instance.route_id).delete()
    if instance.service_id is not None:
        Service.objects.filter(pk=instance.service_id).delete()

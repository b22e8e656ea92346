"""The live-values API (SPEC 5.3): for a signed-in user who may see the location, or its gateway.

Errors are JSON ``{"error": ..., "field": ...}`` with a 4xx status, as on the ingest API
(:mod:`metering.ingest.http`, which serves what gateways send).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from devices.models import Location
from metering import live
from metering.ingest.auth import gateway_for
from metering.ingest.http import error, unauthorized


@require_GET
def live_values(request: HttpRequest, location_id: int) -> JsonResponse:
    if request.user.is_authenticated:
        location = get_object_or_404(Location.objects.visible_to(request.user), pk=location_id)
    else:
        gateway = gateway_for(request.headers.get("Authorization"))
        if gateway is None:
            return unauthorized()
        if gateway.location_id != location_id:
            return error("not found", None, 404)
        location = gateway.location
    values = live.latest(location.pk)
    if values is None:
        return JsonResponse(
            {
                "location": location.pk,
                "t": None,
                "topology": location.topology,
                "frequency": None,
                "loads": [],
                "inputs": [],
                "checks": [],
            }
        )
    return JsonResponse(values)

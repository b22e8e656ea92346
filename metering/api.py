"""Device ingest over HTTP and the live-values API (SPEC 5.2, 5.3).

Errors are JSON ``{"error": ..., "field": ...}`` with a 4xx status, never a 500.
"""

from __future__ import annotations

import logging

import orjson
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from devices.models import Event, Gateway, Location
from metering import commands, live
from metering.auth import gateway_for
from metering.frames import MAX_FRAME_BYTES, FrameError, parse_frames
from metering.ingest import IngestError, ingest_frames

log = logging.getLogger(__name__)


def error(message: str, field: str | None, status: int) -> JsonResponse:
    return JsonResponse({"error": message, "field": field}, status=status)


def unauthorized() -> JsonResponse:
    response = error("missing or invalid gateway token (send 'Authorization: Bearer <token>')", "Authorization", 401)
    response["WWW-Authenticate"] = 'Bearer realm="ingest"'
    return response


def record_invalid_frame(gateway: Gateway, problem: FrameError, transport: str) -> None:
    Event.objects.create(
        location_id=gateway.location_id,
        kind=Event.INVALID_FRAME,
        module=gateway.serial,
        message=f"Invalid frame over {transport} refused: {problem.message}",
        data={"error": problem.message, "field": problem.field, "transport": transport},
    )


@csrf_exempt
@require_POST
def ingest(request: HttpRequest) -> JsonResponse:
    gateway = gateway_for(request.headers.get("Authorization"))
    if gateway is None:
        return unauthorized()
    length = int(request.headers.get("Content-Length") or 0)
    if length > MAX_FRAME_BYTES:
        return error(f"frame too large: {length} bytes, limit {MAX_FRAME_BYTES}", None, 413)
    try:
        outcome = ingest_frames(gateway, parse_frames(request.body))
    except IngestError as problem:
        record_invalid_frame(gateway, problem, "HTTP")
        return error(problem.message, problem.field, problem.status)
    except FrameError as problem:
        record_invalid_frame(gateway, problem, "HTTP")
        status = 413 if problem.message.startswith("frame too large") else 400
        return error(problem.message, problem.field, status)
    return JsonResponse({"accepted": [r.as_dict() for r in outcome.receipts], "commands": commands.pending_for(gateway)})


@csrf_exempt
@require_POST
def acknowledge(request: HttpRequest) -> JsonResponse:
    """A device confirms it switched a relay: ``{"type": "ack", "command": id, "relay": ref, "on": bool}``."""
    gateway = gateway_for(request.headers.get("Authorization"))
    if gateway is None:
        return unauthorized()
    try:
        ack = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        return error(f"malformed JSON: {exc}", None, 400)
    if not isinstance(ack, dict):
        return error("an acknowledgement is a JSON object", None, 400)
    try:
        relay = commands.acknowledge(gateway, ack)
    except commands.CommandError as problem:
        return error(str(problem), "relay", 422)
    return JsonResponse({"relay": relay.ref, "on": relay.is_on})


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
            {"location": location.pk, "t": None, "topology": location.topology, "frequency": None,
             "loads": [], "inputs": [], "checks": []}
        )
    return JsonResponse(values)

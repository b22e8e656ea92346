"""Device ingest over HTTP: frames and relay acknowledgements as POST requests (SPEC 5.2).

Errors are JSON ``{"error": ..., "field": ...}`` with a 4xx status (503 with ``Retry-After``
when the stream is busy), never a 500. The work is :mod:`metering.ingest.gateway`'s; this
module only reads the request and writes the response.
"""

from __future__ import annotations

import orjson
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from metering.ingest import gateway as gateways
from metering.ingest.auth import gateway_for
from metering.ingest.frames import MAX_FRAME_BYTES, parse_frames
from metering.ingest.threads import on_ingest_threads


def error(message: str, field: str | None, status: int) -> JsonResponse:
    return JsonResponse({"error": message, "field": field}, status=status)


def unauthorized() -> JsonResponse:
    response = error("missing or invalid gateway token (send 'Authorization: Bearer <token>')", "Authorization", 401)
    response["WWW-Authenticate"] = 'Bearer realm="ingest"'
    return response


def too_large(size: int) -> JsonResponse:
    return error(f"frame too large: {size} bytes, limit {MAX_FRAME_BYTES}", None, 413)


def refused(received: gateways.Received) -> JsonResponse:
    response = JsonResponse(received.problem.as_dict(), status=received.status)
    if received.retry_after_s is not None:
        response["Retry-After"] = str(received.retry_after_s)
    return response


def unavailable(problem: Exception) -> JsonResponse:
    """503 with Retry-After: the database or Redis out of reach (a restart); the device sends again."""
    return refused(gateways.Received(problem=gateways.unavailable(problem)))


@csrf_exempt
@require_POST
async def frames(request: HttpRequest) -> JsonResponse:
    try:
        return await on_ingest_threads(receive_frames)(request)
    except gateways.UNAVAILABLE as problem:  # the token's or the commands' lookup
        return unavailable(problem)


def receive_frames(request: HttpRequest) -> JsonResponse:
    gateway = gateway_for(request.headers.get("Authorization"))
    if gateway is None:
        return unauthorized()
    length = request.headers.get("Content-Length") or "0"
    if not length.isdigit():
        return error(f"Content-Length is not a number of bytes: {length!r}", "Content-Length", 400)
    if int(length) > MAX_FRAME_BYTES:  # served by config.server, the ingest gate answered already
        return too_large(int(length))
    received = gateways.receive_frames(gateway, gateways.HTTP, lambda: parse_frames(request.body))
    if received.problem is not None:
        return refused(received)
    return JsonResponse(
        {"accepted": [r.as_dict() for r in received.receipts], "commands": gateways.pending_commands(gateway)}
    )


@csrf_exempt
@require_POST
def acknowledgement(request: HttpRequest) -> JsonResponse:
    """A device confirms it switched a relay: ``{"type": "ack", "command": id, "relay": ref, "on": bool}``."""
    try:
        return receive_acknowledgement(request)
    except gateways.UNAVAILABLE as problem:  # the token's lookup or the relay's update
        return unavailable(problem)


def receive_acknowledgement(request: HttpRequest) -> JsonResponse:
    gateway = gateway_for(request.headers.get("Authorization"))
    if gateway is None:
        return unauthorized()
    try:
        ack = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        return error(f"malformed JSON: {exc}", None, 400)
    acknowledged = gateways.acknowledge(gateway, ack)
    return JsonResponse(acknowledged.as_dict(), status=acknowledged.status)

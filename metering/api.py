"""Device ingest over HTTP and the live-values API (SPEC 5.2, 5.3).

Errors are JSON ``{"error": ..., "field": ...}`` with a 4xx status, never a 500.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from devices.models import Location
from metering import commands, live
from metering.auth import gateway_for
from metering.frames import MAX_FRAME_BYTES, FrameError, parse_frames
from metering.ingest import record_invalid_frame
from metering.pipeline.stream import Busy, Refused, stream

log = logging.getLogger(__name__)


def error(message: str, field: str | None, status: int) -> JsonResponse:
    return JsonResponse({"error": message, "field": field}, status=status)


def unauthorized() -> JsonResponse:
    response = error("missing or invalid gateway token (send 'Authorization: Bearer <token>')", "Authorization", 401)
    response["WWW-Authenticate"] = 'Bearer realm="ingest"'
    return response


def busy_response(busy: Busy) -> JsonResponse:
    """503 with ``Retry-After``: the ingest stream is behind or no worker answered in time."""
    response = error(busy.message, None, busy.status)
    response["Retry-After"] = str(busy.retry_after_s)
    return response


def too_large(size: int) -> JsonResponse:
    return error(f"frame too large: {size} bytes, limit {MAX_FRAME_BYTES}", None, 413)


@functools.cache  # one wrapper per function, built at its first frame rather than every frame
def on_ingest_threads(work: Callable) -> Callable:
    """``work`` as a coroutine run on the ingest threads (HTTP and WebSocket ingest).

    Under ASGI Django runs each request's synchronous code on a thread of its own, which opens
    a database connection of its own: for a device sending a frame a second that costs more
    than storing the frame. Channels runs the database work of every socket on one thread, so
    one gateway's wait for its commit holds up all others. The :data:`INGEST_THREADS` ingest
    threads live as long as the process and keep their connections (``CONN_MAX_AGE``),
    checked before and after each use as Channels does. A Power Box's frames are still stored
    one at a time: its state row is locked for each, and a socket handles its messages in turn.
    With ``INGEST_THREADS = 0`` (the tests' settings) the work runs on the caller's
    thread-sensitive thread, where the test's transaction is.
    """
    if not settings.INGEST_THREADS:
        return sync_to_async(work, thread_sensitive=True)

    def with_connection_checks(*args, **kwargs):
        close_old_connections()
        try:
            return work(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(with_connection_checks, thread_sensitive=False, executor=_ingest_threads())


@functools.cache
def _ingest_threads() -> ThreadPoolExecutor:
    """One pool for every function run on the ingest threads."""
    return ThreadPoolExecutor(settings.INGEST_THREADS, thread_name_prefix="ingest")


@csrf_exempt
@require_POST
async def ingest(request: HttpRequest) -> JsonResponse:
    return await on_ingest_threads(receive_http_frames)(request)


def receive_http_frames(request: HttpRequest) -> JsonResponse:
    gateway = gateway_for(request.headers.get("Authorization"))
    if gateway is None:
        return unauthorized()
    length = request.headers.get("Content-Length") or "0"
    if not length.isdigit():
        return error(f"Content-Length is not a number of bytes: {length!r}", "Content-Length", 400)
    if int(length) > MAX_FRAME_BYTES:  # served by config.server, the ingest gate answered already
        return too_large(int(length))
    try:
        frames = parse_frames(request.body)
    except FrameError as problem:
        record_invalid_frame(gateway, problem, "HTTP")
        return error(problem.message, problem.field, problem.status)
    try:
        outcome = stream().submit(gateway, frames, "HTTP")
    except Refused as problem:  # recorded where it was refused
        return error(problem.message, problem.field, problem.status)
    except Busy as busy:
        return busy_response(busy)
    return JsonResponse(
        {"accepted": [r.as_dict() for r in outcome.receipts], "commands": commands.pending_for(gateway)}
    )


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

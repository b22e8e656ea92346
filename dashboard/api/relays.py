"""Relays of the Output modules and the commands that switch them.

A switch goes through the dashboard's own path (:func:`dashboard.switching.switch`): a command
the device is asked to carry out, an Event when it acknowledges, and the same role needed as
on the dashboard.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status

from dashboard import switching
from dashboard.api.errors import ApiError
from dashboard.api.locations import ERRORS, location_for
from dashboard.api.paging import page_of
from dashboard.api.schemas import ErrorOut, RelayCommandOut, RelayCommandPageOut, RelayOut, SwitchIn
from devices.models import Relay
from metering.models import RelayCommand
from metering.relays import CommandError

router = Router(tags=["relays"])


def _command(command: RelayCommand) -> dict:
    return {
        "id": command.pk,
        "relay_id": command.relay_id,
        "relay": command.relay.ref,
        "on": command.on,
        "until": command.until,
        "status": command.status,
        "requested_at": command.requested_at,
        "requested_by": command.requested_by.get_username() if command.requested_by else None,
        "acknowledged_at": command.acknowledged_at,
    }


@router.get("/locations/{location_id}/relays", response={200: list[RelayOut], **ERRORS}, summary="Relays")
def relays(request: HttpRequest, location_id: int):
    location = location_for(request, location_id)
    return list(Relay.objects.filter(module__location=location).select_related("module"))


class CommandQuery(Schema):
    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(50, ge=1, le=200)


@router.get(
    "/locations/{location_id}/relay-commands",
    response={200: RelayCommandPageOut, **ERRORS},
    summary="Relay commands, newest first",
)
def relay_commands(request: HttpRequest, location_id: int, query: Query[CommandQuery]):
    location = location_for(request, location_id)
    commands = (
        RelayCommand.objects.filter(relay__module__location=location)
        .select_related("relay__module", "requested_by")
        .order_by("-requested_at", "-pk")
    )
    paging, items = page_of(commands, query.page, query.page_size)
    return {**paging, "items": [_command(c) for c in items]}


@router.post(
    "/locations/{location_id}/relays/{relay_id}/commands",
    response={202: RelayCommandOut, 403: ErrorOut, **ERRORS},
    summary="Switch a relay",
    description="Asks the device to switch the relay, as the dashboard's buttons do. The command is "
    "pending until the device acknowledges; then the relay's state changes and an Event is logged. "
    "Owners switch relays (and support staff); viewers and installers get 403.",
)
def switch_relay(request: HttpRequest, location_id: int, relay_id: int, body: SwitchIn):
    location = location_for(request, location_id)
    relay = get_object_or_404(Relay.objects.select_related("module"), pk=relay_id, module__location=location)
    if not location.may_switch(request.auth):
        raise ApiError("only the owner of this location switches its relays", None, 403)
    try:
        command = switching.switch(location, relay, body.on, body.minutes, request.auth)
    except CommandError as problem:
        raise ApiError(str(problem), "minutes") from None
    return Status(202, _command(command))

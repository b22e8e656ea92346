"""Locations, their live values, energy history and events.

Every operation looks the location up among those the caller may see, so another user's
location is a 404, never someone else's data. The live values also answer the location's own
gateway token, as they did before the API was documented (SPEC 5.3).
"""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema

from dashboard.api import auth
from dashboard.api import history as api_history
from dashboard.api.errors import ApiError
from dashboard.api.paging import page_of
from dashboard.api.schemas import (
    ErrorOut,
    EventPageOut,
    HistoryOut,
    LiveValuesOut,
    LocationDetailOut,
    LocationOut,
)
from devices.models import Event, Gateway, Location, Relay
from metering import live

router = Router(tags=["locations"])

ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut}


def location_for(request: HttpRequest, location_id: int) -> Location:
    """The location if the caller may see it, else 404."""
    return get_object_or_404(Location.objects.visible_to(request.auth), pk=location_id)


def _summary(location: Location, user) -> dict:
    return {
        "id": location.pk,
        "name": location.name,
        "address": location.address,
        "timezone": location.timezone,
        "topology": location.topology,
        "frequency_hz": location.frequency_hz,
        "role": location.role_of(user),
    }


@router.get("/locations", response={200: list[LocationOut], 401: ErrorOut}, summary="Your locations")
def list_locations(request: HttpRequest):
    return [_summary(location, request.auth) for location in Location.objects.visible_to(request.auth)]


@router.get("/locations/{location_id}", response={200: LocationDetailOut, **ERRORS}, summary="One location")
def location_detail(request: HttpRequest, location_id: int):
    location = location_for(request, location_id)
    gateway = Gateway.objects.filter(location=location).first()
    relays = Relay.objects.filter(module__location=location).select_related("module")
    inputs = [
        {"id": di.pk, "ref": di.ref, "name": di.name, "mode": di.mode, "unit": di.unit}
        for module in location.input_modules.prefetch_related("inputs")
        for di in module.inputs.all()
    ]
    return {
        **_summary(location, request.auth),
        "gateway": gateway and {"model": gateway.model, "serial": gateway.serial, "last_seen_at": gateway.last_seen_at},
        "loads": [{"id": load.pk, "name": load.name, "kind": load.kind} for load in location.loads.all()],
        "inputs": inputs,
        "relays": list(relays),
        "may_switch_relays": location.may_switch(request.auth),
    }


@router.get(
    "/locations/{location_id}/live",
    auth=auth.USER_OR_GATEWAY,
    response={200: LiveValuesOut, **ERRORS},
    summary="Live values",
    description="The latest values (SPEC 5.3). Besides a user's token or session, the location's "
    "own gateway token is accepted. Before the first frame `t` is null and the lists are empty.",
)
def live_values(request: HttpRequest, location_id: int):
    if isinstance(request.auth, Gateway):
        if request.auth.location_id != location_id:
            raise ApiError("not found", None, 404)
        location = request.auth.location
    else:
        location = location_for(request, location_id)
    values = live.latest(location.pk)
    if values is None:
        values = {
            "location": location.pk,
            "t": None,
            "topology": location.topology,
            "frequency": None,
            "loads": [],
            "inputs": [],
            "checks": [],
        }
    # As stored, not through the schema: the payload stays exactly what it was (SPEC 5.3).
    return JsonResponse(values)


class HistoryQuery(Schema):
    level: Literal[api_history.LEVELS] = Field(description="Bucket size: 5min, or local hour, day, month, quarter.")
    start: str = Field(
        alias="from",
        max_length=32,
        description="Local start (inclusive): YYYY-MM-DD or YYYY-MM-DDTHH:MM in the location's time zone.",
    )
    end: str = Field(alias="to", max_length=32, description="Local end (exclusive), same forms as `from`.")


def _history(request: HttpRequest, location_id: int, query: HistoryQuery):
    location = location_for(request, location_id)
    try:
        rng = api_history.history_range(location, query.level, query.start, query.end)
    except api_history.HistoryRequestError as problem:
        raise ApiError(str(problem), problem.field) from None
    return location, rng, api_history.history_table(location, rng)


HISTORY_HELP = (
    "One row per bucket whose local start lies in [from, to), each with the totals of the whole "
    "bucket; null where nothing is stored. At most 31 days of 5min, 366 days of hours, 3660 days of days."
)


@router.get(
    "/locations/{location_id}/history",
    response={200: HistoryOut, **ERRORS},
    by_alias=True,
    summary="Energy history",
    description=HISTORY_HELP,
)
def history(request: HttpRequest, location_id: int, query: Query[HistoryQuery]):
    location, rng, table = _history(request, location_id, query)
    return {
        "location": location.pk,
        "timezone": location.timezone,
        "level": rng.level,
        "from": rng.start.isoformat(),
        "to": rng.end.isoformat(),
        "rows": api_history.rows(table),
    }


@router.get(
    "/locations/{location_id}/history.csv",
    response={200: str, **ERRORS},
    summary="Energy history as CSV",
    description=HISTORY_HELP + " Units are in the column names.",
    openapi_extra={"responses": {200: {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}}},
)
def history_csv(request: HttpRequest, location_id: int, query: Query[HistoryQuery]):
    location, rng, table = _history(request, location_id, query)
    response = HttpResponse(api_history.as_csv(table, location), content_type="text/csv; charset=utf-8")
    filename = f"history-{location.pk}-{rng.level}-{rng.start.date().isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class EventQuery(Schema):
    kind: Literal[tuple(kind for kind, _ in Event.KINDS)] | None = Field(None, description="Only events of this kind.")
    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(50, ge=1, le=200)


@router.get("/locations/{location_id}/events", response={200: EventPageOut, **ERRORS}, summary="Events, newest first")
def events(request: HttpRequest, location_id: int, query: Query[EventQuery]):
    location = location_for(request, location_id)
    rows = Event.objects.filter(location=location).order_by("-time", "-pk")
    if query.kind:
        rows = rows.filter(kind=query.kind)
    paging, items = page_of(rows, query.page, query.page_size)
    return {**paging, "items": items}

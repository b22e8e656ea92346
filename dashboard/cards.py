"""What each card shows: one context builder and one template per card.

The same builder feeds the first page load, an ``hx-get`` refresh of the card and the
WebSocket push (:mod:`dashboard.broadcast`), so a page without JavaScript shows exactly what a
live page shows. Permission checks stay in the views: builders trust their caller.
"""

from __future__ import annotations

import math
import time
from datetime import date, datetime, timedelta
from datetime import time as dt_time

from django.core.paginator import Paginator
from django.db.models import ExpressionWrapper, F, FloatField, Min, Sum
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from dashboard import usage
from devices.models import DigitalInput, Event, Location, Relay
from metering.commands import PENDING_FOR, TIMED_MINUTES
from metering.models import InputCount, LocationEnergy, RelayCommand

# A card whose data is older than this says so ("no data for 42 s").
STALE_AFTER_S = 10.0
EVENTS_PER_PAGE = 20

TEMPLATES = {
    "card-live-values": "dashboard/_card_live_values.html",
    "card-inputs": "dashboard/_card_inputs.html",
    "card-relays": "dashboard/_card_relays.html",
    "card-usage": "dashboard/_card_usage.html",
    "card-events": "dashboard/_card_events.html",
}

EVENT_ICONS = {
    Event.RELAY: "⚡",
    Event.INPUT_CHANGED: "⇄",
    Event.PULSES_RESET: "↺",
    Event.DATA_GAP: "⋯",
    Event.GATEWAY_OFFLINE: "✕",
    Event.GATEWAY_ONLINE: "✓",
    Event.INVALID_FRAME: "⚠",
    Event.VALIDATION: "✎",
    Event.CONFIGURATION: "⚙",
    Event.DIAGNOSIS: "ℹ",
}
# Colour family of each kind's icon (see .tone-* in app.css).
EVENT_TONES = {
    Event.RELAY: "info",
    Event.INPUT_CHANGED: "info",
    Event.PULSES_RESET: "warn",
    Event.DATA_GAP: "warn",
    Event.GATEWAY_OFFLINE: "bad",
    Event.GATEWAY_ONLINE: "ok",
    Event.INVALID_FRAME: "bad",
    Event.VALIDATION: "warn",
    Event.CONFIGURATION: "info",
    Event.DIAGNOSIS: "warn",
}


def dashboard_url(location: Location, params: QueryDict | None = None, **changes) -> str:
    """The dashboard's URL with ``params`` (the current GET parameters) changed by ``changes``;
    a change to None removes that parameter. Keeps one card's state when another navigates."""
    query = params.copy() if params is not None else QueryDict(mutable=True)
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = str(value)
    base = reverse("dashboard:location", args=[location.pk])
    return f"{base}?{query.urlencode()}" if query else base


def freshness(t: float | None, now: float) -> dict:
    """The data time of a card and how old it is, for ``data-t`` and the "no data for" line."""
    if t is None:
        return {"t": None, "rendered_at": now, "age_s": None, "stale": False}
    age_s = max(now - t, 0.0)
    return {"t": t, "rendered_at": now, "age_s": age_s, "stale": age_s > STALE_AFTER_S}


def local_midnight(location: Location, now: datetime) -> datetime:
    zone = location.zoneinfo
    return datetime.combine(now.astimezone(zone).date(), dt_time(0), tzinfo=zone)


# ----------------------------------------------------------------------------- live values


def always_on_today_w(location: Location, now: datetime) -> float | None:
    """Lowest average consumption of any 5-minute bucket since local midnight (W).

    Averages over the seconds each bucket actually holds and skips buckets that are not nearly
    full, so the bucket still being filled and a bucket with a data gap do not read as a low
    always-on (as in the usage card).
    """
    average_w = ExpressionWrapper(F("consumption_wh") * 3600.0 / F("seconds"), output_field=FloatField())
    rows = LocationEnergy.objects.filter(
        location=location, start__gte=local_midnight(location, now), seconds__gte=usage.ALWAYS_ON_MIN_S
    )
    return rows.aggregate(lowest=Min(average_w))["lowest"]


def live_values_context(location: Location, values: dict | None, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    context = {"location": location, "values": values, **freshness(values and values.get("t"), now)}
    if not values:
        return context
    kinds = {load["kind"] for load in values["loads"]}
    totals = values.get("totals") or {}
    rows = [("Consumption", totals.get("consumption"), "consumption")]
    if "solar" in kinds:
        rows.append(("Solar", totals.get("solar"), "solar"))
    if "grid" in kinds:
        rows += [
            ("Grid import", totals.get("grid_import"), "import"),
            ("Grid export", totals.get("grid_export"), "export"),
        ]
    if "battery" in kinds:
        rows.append(("Battery", totals.get("battery"), "battery"))
    loads = [
        # A total row for loads measured on several phases; the load's name spans its rows.
        {**load, "show_total": len(load["phases"]) > 1, "rowspan": len(load["phases"]) + (len(load["phases"]) > 1)}
        for load in values["loads"]
    ]
    context.update(
        loads=loads,
        totals=rows,
        always_on_w=always_on_today_w(location, timezone.now()),
        frequency=values.get("frequency"),
    )
    return context


# ----------------------------------------------------------------------------- inputs


def inputs_context(location: Location, values: dict | None, now: float | None = None) -> dict:
    """Every configured input with its live reading (if any) and, for pulse meters, today's total."""
    now = time.time() if now is None else now
    configured = list(DigitalInput.objects.filter(module__location=location).select_related("module"))
    readings = {item["input"]: item for item in (values or {}).get("inputs", [])}
    midnight = local_midnight(location, timezone.now())
    pulses_today = dict(
        InputCount.objects.filter(input__in=configured, start__gte=midnight)
        .values_list("input")
        .annotate(total=Sum("pulses"))
        .values_list("input", "total")
    )
    rows = []
    for digital_input in configured:
        reading = readings.get(digital_input.ref)
        row = {"input": digital_input, "reading": reading}
        if digital_input.mode == "pulse" and digital_input.pulses_per_unit:
            row["today"] = pulses_today.get(digital_input.pk, 0) / digital_input.pulses_per_unit
            # As many decimals as one pulse is worth: 100 pulses per m³ -> 0.01 m³.
            row["digits"] = max(math.ceil(math.log10(digital_input.pulses_per_unit)), 0)
            row["rate_digits"] = max(row["digits"], 1)
        if reading is not None and digital_input.mode == "status":
            row["closed"] = bool(reading["state"])
        rows.append(row)
    return {"location": location, "inputs": rows, **freshness(values and values.get("t"), now)}


# ----------------------------------------------------------------------------- relays


def relay_rows(location: Location) -> list[dict]:
    """Each relay with its state and the request still waiting for the device, if any."""
    relays = list(Relay.objects.filter(module__location=location).select_related("module"))
    since = timezone.now() - timedelta(days=1)
    latest: dict[int, RelayCommand] = {}
    for command in RelayCommand.objects.filter(relay__in=relays, requested_at__gte=since).order_by(
        "-requested_at", "-pk"
    ):
        latest.setdefault(command.relay_id, command)
    waiting_since = timezone.now() - PENDING_FOR
    rows = []
    for relay in relays:
        command = latest.get(relay.pk)
        pending = command if command and command.status == RelayCommand.PENDING else None
        rows.append(
            {
                "relay": relay,
                "pending": pending if pending and pending.requested_at >= waiting_since else None,
                "unconfirmed": pending if pending and pending.requested_at < waiting_since else None,
            }
        )
    return rows


def relays_context(location: Location, can_switch: bool) -> dict:
    return {
        "location": location,
        "relays": relay_rows(location),
        "can_switch": can_switch,
        "timed_minutes": TIMED_MINUTES,
    }


# ----------------------------------------------------------------------------- usage


def usage_context(
    location: Location, period_name: str, day: date, params: QueryDict | None = None, now: datetime | None = None
) -> dict:
    """The usage card for the period containing ``day``: chart, summary, data table, navigation."""
    now = timezone.now() if now is None else now
    today = now.astimezone(location.zoneinfo).date()
    period = usage.period_for(location, period_name, day, today)
    has_solar = location.loads.filter(kind="solar").exists()
    table, summary = usage.usage_table(location, period, has_solar=has_solar)
    return {
        "location": location,
        "period": period,
        "periods": usage.PERIODS,
        "today": today,
        "table": table,
        "summary": summary,
        "has_solar": has_solar,
        "figure": usage.usage_figure(table, period) if summary is not None else None,
        "rows": usage.display_rows(table, period) if summary is not None else [],
        "period_links": [
            {
                "name": name,
                "url": dashboard_url(location, params, period=name, date=period.first_day.isoformat()),
                "current": name == period.name,
            }
            for name in usage.PERIODS
        ],
        "previous_url": dashboard_url(location, params, period=period.name, date=period.previous.isoformat()),
        "next_url": dashboard_url(location, params, period=period.name, date=period.next.isoformat())
        if period.next
        else None,
        "today_url": dashboard_url(location, params, period=period.name, date=None) if period.next else None,
        "csv_url": reverse("dashboard:usage-csv", args=[location.pk])
        + f"?period={period.name}&date={period.first_day.isoformat()}",
    }


# ----------------------------------------------------------------------------- events


def event_kinds() -> list[dict]:
    return [{"value": value, "label": label, "icon": EVENT_ICONS[value]} for value, label in Event.KINDS]


def events_context(location: Location, kind: str = "", page: int | str = 1, params: QueryDict | None = None) -> dict:
    """One page of the location's events, newest first, optionally of one kind.

    Only the newest page of all kinds is "live": its body has the id the WebSocket pushes to,
    so someone reading older or filtered events is not moved around by new ones.
    """
    labels = dict(Event.KINDS)
    kind = kind if kind in labels else ""
    events = Event.objects.filter(location=location)
    if kind:
        events = events.filter(kind=kind)
    page_obj = Paginator(events, EVENTS_PER_PAGE).get_page(page)
    rows = [
        {
            "event": event,
            "label": labels.get(event.kind, event.kind),
            "icon": EVENT_ICONS.get(event.kind, "•"),
            "tone": EVENT_TONES.get(event.kind, "info"),
        }
        for event in page_obj.object_list
    ]
    return {
        "location": location,
        "events": rows,
        "page_obj": page_obj,
        "kind": kind,
        "kind_label": labels.get(kind, ""),
        "kinds": event_kinds(),
        "live": not kind and page_obj.number == 1,
        "newer_url": dashboard_url(location, params, page=page_obj.previous_page_number())
        if page_obj.has_previous()
        else None,
        "older_url": dashboard_url(location, params, page=page_obj.next_page_number()) if page_obj.has_next() else None,
        "form_url": reverse("dashboard:location", args=[location.pk]),
        # The filter form sends the other cards' parameters along (but starts at page 1).
        "keep_params": [
            (name, value) for name, value in (params or QueryDict()).items() if name not in ("kind", "page")
        ],
    }


def newest_event_id(location_id: int) -> int | None:
    return Event.objects.filter(location_id=location_id).order_by("-pk").values_list("pk", flat=True).first()

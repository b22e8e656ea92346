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
from devices.models import Event, LoadCt, Location, Relay
from metering import installed
from metering.ingest.process import BUCKET_S, OFFLINE_AFTER_S
from metering.installation_check import configured_cts, current_findings, restarting
from metering.models import InputCount, LocationEnergy, RelayCommand
from metering.relays import PENDING_FOR, TIMED_MINUTES

# A card whose data is older than this says so ("no data for 42 s").
STALE_AFTER_S = 10.0
# Today's pulse totals are summed from the database at most this often (ingest flushes every 30 s).
TODAY_KEEP_S = 10.0
EVENTS_PER_PAGE = 20

TEMPLATES = {
    "card-live-values": "dashboard/_card_live_values.html",
    "card-inputs": "dashboard/_card_inputs.html",
    "card-relays": "dashboard/_card_relays.html",
    "card-usage": "dashboard/_card_usage.html",
    "card-events": "dashboard/_card_events.html",
}
# The cards of the installer's page (dashboard.validate).
VALIDATE_TEMPLATES = {
    "card-validation": "dashboard/_card_validation.html",
    "card-troubleshooting": "dashboard/validate_troubleshooting.html",
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


# The database sums a live card shows beside the live values, rendered every second for every
# watched location. Kept in the process rather than the shared cache: with Redis a read there
# is a round trip too, and each process can sum for itself.
_always_on = installed.Kept(BUCKET_S)
_pulses_today = installed.Kept(TODAY_KEEP_S, spread_s=TODAY_KEEP_S / 2)


def local_midnight(location: Location, now: datetime) -> datetime:
    zone = location.zoneinfo
    return datetime.combine(now.astimezone(zone).date(), dt_time(0), tzinfo=zone)


# ----------------------------------------------------------------------------- live values


def always_on_today_w(location: Location, now: datetime) -> float | None:
    """Lowest average consumption of any 5-minute bucket since local midnight (W).

    Averages over the seconds each bucket actually holds and skips buckets that are not nearly
    full, so the bucket still being filled and a bucket with a data gap do not read as a low
    always-on (as in the usage card). It can only change when a bucket fills up, so the answer
    is kept until the next bucket starts: live cards render it every second.
    """
    bucket = int(now.timestamp()) // BUCKET_S

    def lowest() -> float | None:
        average_w = ExpressionWrapper(F("consumption_wh") * 3600.0 / F("seconds"), output_field=FloatField())
        rows = LocationEnergy.objects.filter(
            location=location, start__gte=local_midnight(location, now), seconds__gte=usage.ALWAYS_ON_MIN_S
        )
        return rows.aggregate(lowest=Min(average_w))["lowest"]

    return _always_on.get(location.pk, lowest, stamp=bucket)


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


def pulses_today(location: Location, input_pks: list[int], now: datetime) -> dict[int, int]:
    """Pulses per input since local midnight, from the 5-minute buckets.

    Ingest writes the buckets every :data:`metering.ingest.process.FLUSH_EVERY_S`, so the sum is kept
    for :data:`TODAY_KEEP_S` (shorter) rather than queried for every push.
    """
    midnight = local_midnight(location, now)

    def totals() -> dict[int, int]:
        return dict(
            InputCount.objects.filter(input__in=input_pks, start__gte=midnight)
            .values_list("input")
            .annotate(total=Sum("pulses"))
            .values_list("input", "total")
        )

    return _pulses_today.get(location.pk, totals, stamp=midnight)


def inputs_context(location: Location, values: dict | None, now: float | None = None) -> dict:
    """Every configured input with its live reading (if any) and, for pulse meters, today's total."""
    now = time.time() if now is None else now
    configured = list(installed.installed(location.pk).inputs.values())
    readings = {item["input"]: item for item in (values or {}).get("inputs", [])}
    today = pulses_today(location, [spec.pk for spec in configured], timezone.now()) if configured else {}
    rows = []
    for spec in configured:
        reading = readings.get(spec.ref)
        row = {"input": spec, "reading": reading}
        if spec.mode == "pulse" and spec.pulses_per_unit:
            row["today"] = today.get(spec.pk, 0) / spec.pulses_per_unit
            # As many decimals as one pulse is worth: 100 pulses per m³ -> 0.01 m³.
            row["digits"] = max(math.ceil(math.log10(spec.pulses_per_unit)), 0)
            row["rate_digits"] = max(row["digits"], 1)
        if reading is not None and spec.mode == "status":
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


# ----------------------------------------------------------------------------- validation (installer's page)

# Per-CT verdicts (SPEC 5.3 ``validation``) and how the card names them: label, tone.
CT_VERDICTS = {
    "ok": ("✓ ok", "ok"),
    "phase": ("wrong phase", "bad"),
    "reversed": ("reversed", "bad"),
    "no_current": ("no current", "warn"),
    "low_current": ("too little current to judge", "muted"),
    "inconsistent": ("inconsistent", "warn"),
}
# Findings about the whole location (``ct`` is "" or, for Kirchhoff, the grid CT of the phase).
LOCATION_VERDICTS = {
    "no_voltage": ("Dead voltage input", "bad"),
    "sequence": ("Phase sequence", "bad"),
    "kirchhoff": ("Sub-meters exceed the grid (Kirchhoff)", "warn"),
}
# Data gaps this recent are worth a line in the troubleshooting card.
RECENT_GAPS = timedelta(hours=24)


def _ct_fixes(load_ct: LoadCt, verdict: dict | None) -> list[dict]:
    """The one-click fixes for a CT's verdict: what the form posts and what its button says.

    ``phase`` with a suggested phase: configure that phase (and flip *reversed* when the check
    says the clamp is also turned). ``reversed``: the manual prefers turning the clamp, so
    "I turned the clamp" (just restart the check) comes first, then flipping *reversed*.
    """
    if verdict is None:
        return []
    common = {
        "ct": load_ct.ct_input.ref,
        "kind": verdict["kind"],
        "from_phase": load_ct.phase,
        "from_reversed": load_ct.reversed,
    }
    if verdict["kind"] == "phase" and verdict.get("suggest"):
        flip = bool(verdict.get("suggest_reversed"))
        label = f"Move to {verdict['suggest']}"
        if flip:
            label += " and clear “reversed”" if load_ct.reversed else " and set “reversed”"
        return [
            {**common, "action": "phase", "phase": verdict["suggest"], "flip": flip, "label": label, "primary": True}
        ]
    if verdict["kind"] == "reversed":
        return [
            {**common, "action": "turned", "phase": "", "flip": False, "label": "I turned the clamp", "primary": True},
            {
                **common,
                "action": "reverse",
                "phase": "",
                "flip": True,
                "label": "Clear “reversed” in the configuration"
                if load_ct.reversed
                else "Set “reversed” in the configuration",
                "primary": False,
            },
        ]
    return []


def validation_context(location: Location, values: dict | None, now: float | None = None) -> dict:
    """The installer's validation card: every configured CT with its live values and verdict.

    Rows follow the configuration (so a CT missing from the frames still has its row, and a
    phase just changed shows at once); the numbers are the live values' (as the live card's,
    :func:`live_values_context`), the verdicts their ``validation`` list. Whether the viewer may
    apply fixes is the template's ``can_fix``, decided by the caller (a view, or the broadcast
    rendering one variant per group).
    """
    now = time.time() if now is None else now
    context = {"location": location, "values": values, **freshness(values and values.get("t"), now)}
    load_cts = configured_cts(location)
    measured = {phase["ct"]: phase for load in (values or {}).get("loads", []) for phase in load.get("phases", [])}
    findings = current_findings(location, values, load_cts)
    per_ct = {f["ct"]: f for f in findings if f["kind"] in CT_VERDICTS and f["ct"]}
    loads: list[dict] = []
    counts = {"decided": 0, "waiting": 0, "open": 0}
    waiting_loads: list[str] = []
    for load_ct in load_cts:
        verdict = per_ct.get(load_ct.ct_input.ref)
        label, tone = CT_VERDICTS.get(verdict["kind"], ("", "muted")) if verdict else ("re-checking", "muted")
        if verdict is None or verdict["kind"] == "low_current":
            counts["waiting"] += 1
            if load_ct.load.name not in waiting_loads:
                waiting_loads.append(load_ct.load.name)
        else:
            counts["decided"] += 1
            counts["open"] += verdict["kind"] != "ok"
        row = {
            "load_ct": load_ct,
            "ct": load_ct.ct_input.ref,
            "phase": load_ct.phase,
            "reversed": load_ct.reversed,
            "live": measured.get(load_ct.ct_input.ref),
            "verdict": verdict,
            "label": label,
            "tone": tone,
            "fixes": _ct_fixes(load_ct, verdict),
        }
        if not loads or loads[-1]["load"].pk != load_ct.load_id:
            loads.append({"load": load_ct.load, "rows": []})
        loads[-1]["rows"].append(row)
    location_findings = [
        {**f, "label": LOCATION_VERDICTS[f["kind"]][0], "tone": LOCATION_VERDICTS[f["kind"]][1]}
        for f in findings
        if f["kind"] in LOCATION_VERDICTS
    ]
    counts["open"] += len(location_findings)
    context.update(
        loads=loads,
        location_findings=location_findings,
        counts=counts,
        waiting_loads=waiting_loads,
        # Nothing judged yet: the check needs load changes (or just restarted).
        watching=bool(values) and counts["decided"] == 0 and not location_findings,
        restarting=restarting(location.pk, values),
        fix_url=reverse("dashboard:validate-fix", args=[location.pk]),
    )
    return context


def _latest_per_module(events) -> dict[str, Event]:
    latest: dict[str, Event] = {}
    for event in events:
        module = (event.data or {}).get("module") or event.module
        latest.setdefault(module, event)
    return latest


def troubleshooting_context(location: Location, values: dict | None, now: float | None = None) -> dict:
    """What the server observes that the manual's troubleshooting tables (section 12) explain.

    Gateway silent (no frame yet, or none for longer than the offline threshold), configured CT
    modules missing from the frames (diagnosis events), CTs reading nothing and dead voltage
    inputs (validation findings), recent data gaps. The wording lives in the template.
    """
    now = time.time() if now is None else now
    gateway = getattr(location, "gateway", None)  # the reverse one-to-one raises an AttributeError when absent
    family = None
    if gateway is not None:
        family = "genius" if gateway.model == "genius" else "connect"
    events = Event.objects.filter(location=location)
    status = events.filter(kind__in=[Event.GATEWAY_OFFLINE, Event.GATEWAY_ONLINE]).first()
    t = values and values.get("t")
    silence_s = None if not t else max(now - t, 0.0)
    offline = None
    if t and (silence_s > OFFLINE_AFTER_S or (status is not None and status.kind == Event.GATEWAY_OFFLINE)):
        offline = {
            "since": t,
            "silence_s": silence_s,
            "event": status if status and status.kind == Event.GATEWAY_OFFLINE else None,
        }
    diagnoses = events.filter(kind=Event.DIAGNOSIS).order_by("-time", "-pk")[:100]
    missing = [
        event
        for event in _latest_per_module(
            d for d in diagnoses if (d.data or {}).get("diagnosis") in ("module_missing", "module_back")
        ).values()
        if event.data.get("diagnosis") == "module_missing"
    ]
    load_cts = configured_cts(location)
    findings = current_findings(location, values, load_cts)
    names = {lc.ct_input.ref: lc for lc in load_cts}
    dead_cts = [{**f, "load_ct": names.get(f["ct"])} for f in findings if f["kind"] == "no_current"]
    dead_voltages = [f for f in findings if f["kind"] == "no_voltage"]
    gaps = list(events.filter(kind=Event.DATA_GAP, time__gte=timezone.now() - RECENT_GAPS)[:50])
    no_data = not values
    return {
        "location": location,
        "gateway": gateway,
        "gateway_family": family,
        "no_data": no_data,
        "offline": offline,
        "missing_modules": missing,
        "dead_cts": dead_cts,
        "dead_voltages": dead_voltages,
        "gaps": gaps[:3],
        "gap_count": len(gaps),
        "all_clear": not (no_data or offline or missing or dead_cts or dead_voltages or gaps),
        "offline_after_s": OFFLINE_AFTER_S,
    }

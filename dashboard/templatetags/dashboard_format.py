"""Number, time and unit formatting for the cards.

Rounding rules (one place, so the live table, totals and home page agree):

- power: whole watts below 10 kW, else kilowatts with 2 decimals (``12.35 kW``);
  reactive power the same in var / kvar;
- power factor: 2 decimals; current: 3 decimals below 10 A, else 1; voltage: 1 decimal;
  frequency: 2 decimals;
- a missing value (``None``, e.g. V_LN in delta) is an em dash.

Negative numbers use the typographic minus sign (U+2212) so columns stay aligned.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django import template
from django.utils import timezone

register = template.Library()

DASH = "—"
MINUS = "\u2212"
KILO_FROM = 10_000.0


def _missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _fixed(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if text.startswith("-"):
        # "-0" or "-0.00" is zero: no sign.
        text = text[1:] if float(text) == 0 else MINUS + text[1:]
    return text


def _scaled(value, unit: str, kilo_unit: str, with_unit: bool) -> str:
    if _missing(value):
        return DASH
    value = float(value)
    if abs(value) >= KILO_FROM:
        return f"{_fixed(value / 1000, 2)} {kilo_unit}"
    text = _fixed(value, 0)
    return f"{text} {unit}" if with_unit else text


@register.filter
def power(value, arg: str = "") -> str:
    """Active power in W: ``1234`` (``1234 W`` with ``:"unit"``), ``12.35 kW`` from 10 kW up."""
    return _scaled(value, "W", "kW", arg == "unit")


@register.filter
def reactive(value, arg: str = "") -> str:
    """Reactive power in var, ``kvar`` from 10 kvar up."""
    return _scaled(value, "var", "kvar", arg == "unit")


@register.filter
def pf(value) -> str:
    return DASH if _missing(value) else _fixed(float(value), 2)


@register.filter
def amps(value) -> str:
    if _missing(value):
        return DASH
    value = float(value)
    return _fixed(value, 3 if abs(value) < 10 else 1)


@register.filter
def volts(value) -> str:
    return DASH if _missing(value) else _fixed(float(value), 1)


@register.filter
def hertz(value) -> str:
    return DASH if _missing(value) else _fixed(float(value), 2)


@register.filter
def energy(value_wh) -> str:
    """Energy from Wh: ``850 Wh``, ``12.34 kWh``, ``1234.5 kWh``."""
    if _missing(value_wh):
        return DASH
    value_wh = float(value_wh)
    if abs(value_wh) < 1000:
        return f"{_fixed(value_wh, 0)} Wh"
    kwh = value_wh / 1000
    return f"{_fixed(kwh, 2 if abs(kwh) < 100 else 1)} kWh"


@register.filter
def percent(ratio) -> str:
    return DASH if _missing(ratio) else f"{_fixed(float(ratio) * 100, 0)} %"


@register.filter
def quantity(value, digits: int = 3) -> str:
    """A meter reading or flow: ``digits`` decimals (3 by default)."""
    return DASH if _missing(value) else _fixed(float(value), int(digits))


UNIT_SYMBOLS = {"m3": "m³", "m2": "m²", "kwh": "kWh", "wh": "Wh", "l": "l"}


@register.filter
def unit(symbol: str) -> str:
    """A pulse meter's unit as people write it (``m3`` → ``m³``)."""
    return UNIT_SYMBOLS.get((symbol or "").lower(), symbol or "")


def as_datetime(value) -> datetime | None:
    if _missing(value):
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), tz=UTC)


@register.filter
def local(value, tz: str) -> str:
    """A datetime or Unix time in the location's time zone: ``14:03:22`` today, else ``25 Nov 14:03``."""
    moment = as_datetime(value)
    if moment is None:
        return DASH
    zone = ZoneInfo(tz)
    here = moment.astimezone(zone)
    if here.date() == timezone.now().astimezone(zone).date():
        return f"{here:%H:%M:%S}"
    if here.year == timezone.now().astimezone(zone).year:
        return f"{here.day} {here:%b %H:%M}"
    return f"{here.day} {here:%b %Y %H:%M}"


@register.filter
def iso(value) -> str:
    """For ``<time datetime=...>``."""
    moment = as_datetime(value)
    return "" if moment is None else moment.isoformat(timespec="seconds")


@register.filter
def duration(seconds) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 d`` (whole units, rounded down). Mirrored in static/js/live.js."""
    if _missing(seconds):
        return DASH
    seconds = max(int(float(seconds)), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"

"""The *Electricity usage* card: one table per period, drawn by plotly and downloaded as CSV.

:func:`usage_table` produces the numbers; the chart (:func:`usage_figure`) and the CSV
(:func:`usage_csv`) are both made from that one table, so the download is exactly what is
plotted. Periods are calendar periods in the location's time zone, so a daylight-saving day has
23 or 25 hours (276 or 300 five-minute rows, 23 or 25 hourly rows).

Units: the day view plots the **average power of each 5-minute bucket in kW** (a 5-minute kWh
figure is too small to read); week, month and year plot the **energy per bucket in kWh** (per
hour, day, month). Always-on is the lowest 5-minute average consumption — for the day view the
day's value, otherwise each bucket's: in kW on the same axis for day and week (a kWh per hour is
an average kW), in W on a right-hand axis for month and year.
Buckets without any stored history are empty (no value), not zero.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time

import pandas as pd
import plotly.graph_objects as go

from devices.models import Location
from metering import history, rollups

PERIODS = ("day", "week", "month", "year")
# The dates the card shows: from FIRST_DAY to a year after today (beyond, a period's bounds or its
# neighbours would leave the calendar and nobody has data there).
FIRST_DAY = date(2000, 1, 1)
DAYS_AHEAD = 366
RESOLUTION = {"day": "5min", "week": "hour", "month": "day", "year": "month"}
BUCKET_NAME = {"day": "5 min", "week": "hour", "month": "day", "year": "month"}
# A bucket counts for always-on when it holds at least this many seconds of samples (of 300).
ALWAYS_ON_MIN_S = 240.0

COLOURS = {
    "consumption": "#2563eb",
    "solar": "#d97706",
    "grid_import": "#dc2626",
    "grid_export": "#16a34a",
    "always_on": "#6b7280",
}


@dataclass(frozen=True)
class Period:
    """A calendar period in the location's time zone: ``start`` inclusive, ``end`` exclusive."""

    name: str
    first_day: date
    start: datetime
    end: datetime
    previous: date
    next: date | None  # None when the next period has not started yet
    title: str

    @property
    def resolution(self) -> str:
        return RESOLUTION[self.name]

    @property
    def energy_unit(self) -> str:
        return "kW" if self.name == "day" else "kWh"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str

    @property
    def header(self) -> str:
        return f"{self.label} [{self.unit}]"


def _first_day(name: str, day: date) -> date:
    if name == "day":
        return day
    if name == "week":
        return day - timedelta(days=day.weekday())
    if name == "month":
        return day.replace(day=1)
    if name == "year":
        return date(day.year, 1, 1)
    raise ValueError(f"unknown period {name!r}; use one of {', '.join(PERIODS)}")


def _shift(name: str, first: date, steps: int) -> date:
    if name == "day":
        return first + timedelta(days=steps)
    if name == "week":
        return first + timedelta(weeks=steps)
    if name == "month":
        months = first.year * 12 + first.month - 1 + steps
        return date(months // 12, months % 12 + 1, 1)
    return date(first.year + steps, 1, 1)


def _title(name: str, first: date, last: date) -> str:
    if name == "day":
        return f"{first:%A} {first.day} {first:%B %Y}"
    if name == "week":
        iso = first.isocalendar()
        if first.month == last.month:
            span = f"{first.day}–{last.day} {last:%b %Y}"
        else:
            span = f"{first.day} {first:%b} – {last.day} {last:%b %Y}"
        return f"Week {iso.week}, {span}"
    if name == "month":
        return f"{first:%B %Y}"
    return str(first.year)


def last_day(today: date) -> date:
    """The latest date the usage card shows."""
    return today + timedelta(days=DAYS_AHEAD)


def period_for(location: Location, name: str, day: date, today: date) -> Period:
    """The ``name`` period (day, week, month, year) containing ``day``; ``today`` limits "next".

    Raises
    ------
    ValueError
        ``day`` is before :data:`FIRST_DAY` or after :func:`last_day`.
    """
    if not FIRST_DAY <= day <= last_day(today):
        raise ValueError(f"{day.isoformat()} is outside {FIRST_DAY.isoformat()}..{last_day(today).isoformat()}")
    first = _first_day(name, day)
    following = _shift(name, first, 1)
    zone = location.zoneinfo
    return Period(
        name=name,
        first_day=first,
        start=datetime.combine(first, dt_time(0), tzinfo=zone),
        end=datetime.combine(following, dt_time(0), tzinfo=zone),
        previous=_shift(name, first, -1),
        next=following if following <= today else None,
        title=_title(name, first, following - timedelta(days=1)),
    )


def columns(period: Period, has_solar: bool) -> list[Column]:
    unit = period.energy_unit
    flows = [
        ("consumption", "Consumption"),
        ("solar", "Solar"),
        ("grid_import", "Grid import"),
        ("grid_export", "Grid export"),
    ]
    cols = [Column(key, label, unit) for key, label in flows if key != "solar" or has_solar]
    # Always-on shares the power axis where the chart plots power-like figures (kW average, kWh
    # per hour); per day or month it has its own axis in W.
    cols.append(Column("always_on", "Always-on", "kW" if period.name in ("day", "week") else "W"))
    return cols


def period_index(period: Period, rule: str) -> pd.DatetimeIndex:
    """The starts of the period's rows in its time zone. Days and longer are counted on the local
    calendar and start at local midnight, also where a clock change repeats midnight."""
    start, end = pd.Timestamp(period.start), pd.Timestamp(period.end)
    if rule in ("5min", "h"):
        return pd.date_range(start, end, freq=rule, inclusive="left", name="start")
    days = pd.date_range(
        start.tz_localize(None).normalize(), end.tz_localize(None).normalize(), freq=rule, inclusive="left"
    )
    return rollups.local_midnights(days, start.tz).rename("start")


def usage_table(
    location: Location, period: Period, has_solar: bool = True, use_rollups: bool = True
) -> tuple[pd.DataFrame, history.Summary | None]:
    """The plotted numbers, indexed by each bucket's local start, columns named by :func:`columns`.

    Returns the table (one row per bucket of the period, NaN where nothing is stored) and the
    period's summary (None without history). Powers are averages over the seconds of samples a
    bucket holds, so the bucket still being filled and a bucket cut short by a data gap are not
    read as low consumption; always-on only counts buckets that are at least
    :data:`ALWAYS_ON_MIN_S` full.

    The day view reads the day's 5-minute buckets; week, month and year read the hour, day and
    month rollups (:mod:`metering.rollups`), or, with ``use_rollups=False``, resample the
    period's 5-minute buckets as the rollups' reference (and the benchmark's baseline).
    """
    cols = columns(period, has_solar)
    rule = history.RESOLUTIONS[period.resolution]
    index = period_index(period, rule)
    table = pd.DataFrame(index=index, columns=[c.header for c in cols], dtype=float)
    if period.name == "day":
        flows, always_on, summary = _day_from_buckets(location, period, index)
    elif use_rollups:
        flows, always_on, summary = _from_rollups(location, period, index)
    else:
        flows, always_on, summary = _resampled_buckets(location, period, index)
    if summary is None:
        return table, None
    source = {
        "consumption": flows["consumption_wh"],
        "solar": flows["solar_wh"],
        "grid_import": flows["grid_import_wh"],
        "grid_export": flows["grid_export_wh"],
        "always_on": always_on,
    }
    for col in cols:
        values = source[col.key] / 1000 if col.key == "always_on" and col.unit == "kW" else source[col.key]
        table[col.header] = values.round(0 if col.unit == "W" else 3)
    return table, summary


Parts = tuple[pd.DataFrame | None, pd.Series | None, history.Summary | None]


def _covered_power_w(buckets: pd.DataFrame) -> pd.Series:
    """Average consumption power (W) of the buckets at least :data:`ALWAYS_ON_MIN_S` full."""
    covered = buckets[buckets["seconds"] >= ALWAYS_ON_MIN_S]
    return covered["consumption_wh"] / (covered["seconds"] / 3600)


def _day_from_buckets(location: Location, period: Period, index: pd.DatetimeIndex) -> Parts:
    """Average kW per 5-minute bucket; always-on is the day's lowest, on every row."""
    buckets = history.location_buckets(location, period.start, period.end)
    if buckets.empty:
        return None, None, None
    seconds = buckets["seconds"]
    average_w = buckets[list(history.FLOWS)][seconds > 0].div(seconds[seconds > 0] / 3600, axis=0)
    consumption_w = _covered_power_w(buckets)
    lowest = float(consumption_w.min()) if len(consumption_w) else None
    always_on = pd.Series(float("nan") if lowest is None else lowest, index=index)
    summary = history.summary_of(buckets[list(history.FLOWS)].sum(), lowest)
    return average_w.reindex(index) / 1000, always_on, summary


def _resampled_buckets(location: Location, period: Period, index: pd.DatetimeIndex) -> Parts:
    """kWh per hour, day or month and each one's always-on, resampled from 5-minute buckets."""
    buckets = history.location_buckets(location, period.start, period.end)
    if buckets.empty:
        return None, None, None
    rule = history.RESOLUTIONS[period.resolution]
    flows_wh = buckets[list(history.FLOWS)]
    consumption_w = _covered_power_w(buckets)
    counts = flows_wh["consumption_wh"].resample(rule).count().reindex(index, fill_value=0)
    flows = flows_wh.resample(rule).sum().reindex(index) / 1000  # kWh
    flows[counts == 0] = float("nan")
    if len(consumption_w):
        always_on = consumption_w.resample(rule).min().reindex(index)
    else:
        always_on = pd.Series(float("nan"), index=index)
    lowest = float(consumption_w.min()) if len(consumption_w) else None
    return flows, always_on, history.summary_of(flows_wh.sum(), lowest)


def _from_rollups(location: Location, period: Period, index: pd.DatetimeIndex) -> Parts:
    """kWh per hour, day or month and each one's always-on, read from the rollup rows."""
    rows = rollups.read(location, period.resolution, period.start, period.end)
    if rows.empty:
        return None, None, None
    flows = rows[list(history.FLOWS)].reindex(index) / 1000  # kWh
    always_on = rows["always_on_w"].reindex(index)
    return flows, always_on, history.summary_of(rows[list(history.FLOWS)].sum(), rows["always_on_w"].min())


def _labels(index: pd.DatetimeIndex, period: Period) -> list[str]:
    """Category labels for the x axis, unique even when a local hour repeats (autumn DST)."""
    fmt = {"day": "%H:%M", "week": "%a %d %b %H:%M", "month": "%a %d %b", "year": "%b %Y"}[period.name]
    labels = [ts.strftime(fmt) for ts in index]
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [f"{label} {ts.strftime('%Z')}" if seen[label] > 1 else label for label, ts in zip(labels, index)]


def usage_figure(table: pd.DataFrame, period: Period) -> dict:
    """A plotly figure (as plain JSON data) of exactly the table's columns.

    The x axis is a category axis of bucket labels: buckets are equally long in absolute time,
    so this spacing is true, and a 23- or 25-hour day needs no special case.
    """
    labels = _labels(table.index, period)
    figure = go.Figure()
    bars = period.name in ("month", "year")
    for header in table.columns:
        key_label, unit = header.rsplit(" [", 1)
        key = key_label.lower().replace("-", "_").replace(" ", "_")
        colour = COLOURS.get(key, "#334155")
        y = [None if pd.isna(v) else float(v) for v in table[header]]
        if key == "always_on":
            own_axis = unit == "W]"
            figure.add_trace(
                go.Scatter(
                    x=labels,
                    y=y,
                    name=key_label,
                    yaxis="y2" if own_axis else "y",
                    mode="lines",
                    line={"color": colour, "dash": "dot", "width": 2},
                    hovertemplate=("%{y:.0f} W" if own_axis else "%{y:.2f} kW") + "<extra>" + key_label + "</extra>",
                )
            )
        elif bars:
            figure.add_trace(
                go.Bar(
                    x=labels,
                    y=y,
                    name=key_label,
                    marker_color=colour,
                    hovertemplate="%{y:.2f} kWh<extra>" + key_label + "</extra>",
                )
            )
        else:
            figure.add_trace(
                go.Scatter(
                    x=labels,
                    y=y,
                    name=key_label,
                    mode="lines",
                    line={"color": colour, "width": 2},
                    fill="tozeroy" if key == "consumption" else None,
                    fillcolor="rgba(37, 99, 235, 0.10)" if key == "consumption" else None,
                    hovertemplate="%{y:.2f} " + period.energy_unit + "<extra>" + key_label + "</extra>",
                )
            )
    if period.name == "day":
        y_title = "Average power per 5 min [kW]"
    else:
        y_title = f"Energy per {BUCKET_NAME[period.name]} [kWh]"
    xaxis = {"type": "category", "showgrid": False, "tickangle": 0, "automargin": True}
    if period.name in ("day", "week"):
        ticks = [
            (label, ts)
            for label, ts in zip(labels, table.index)
            if ts.minute == 0 and (ts.hour % 3 == 0 if period.name == "day" else ts.hour == 0)
        ]
        xaxis["tickvals"] = [label for label, _ in ticks]
        xaxis["ticktext"] = [ts.strftime("%H:%M") if period.name == "day" else ts.strftime("%a %d") for _, ts in ticks]
    figure.update_layout(
        barmode="group",
        height=340,
        margin={"l": 56, "r": 56 if period.name in ("month", "year") else 16, "t": 12, "b": 40},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12, "color": "#1d2430"},
        hovermode="x unified",
        legend={"orientation": "h", "y": -0.18, "x": 0},
        xaxis=xaxis,
        yaxis={
            "title": {"text": y_title},
            "rangemode": "tozero",
            "gridcolor": "#e5e7eb",
            "zeroline": True,
            "zerolinecolor": "#cbd5e1",
        },
    )
    if period.name in ("month", "year"):
        figure.update_layout(
            yaxis2={
                "title": {"text": "Always-on [W]"},
                "overlaying": "y",
                "side": "right",
                "rangemode": "tozero",
                "showgrid": False,
            }
        )
    return json.loads(figure.to_json())


def usage_csv(table: pd.DataFrame, location: Location) -> str:
    """The table as CSV: local ISO 8601 start times (with their UTC offset), units in the headers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"Start ({location.timezone})", *table.columns])
    for ts, row in zip(table.index, table.itertuples(index=False)):
        writer.writerow([ts.isoformat(), *("" if pd.isna(v) else _plain(v) for v in row)])
    return out.getvalue()


def _plain(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def display_rows(table: pd.DataFrame, period: Period) -> list[tuple[str, list[str]]]:
    """The table for people (the chart's accessible alternative): local time and rounded values."""
    labels = _labels(table.index, period)
    rows = []
    for label, values in zip(labels, table.itertuples(index=False)):
        cells = []
        for header, value in zip(table.columns, values):
            if pd.isna(value):
                cells.append("—")
            elif header.endswith("[W]"):
                cells.append(f"{value:.0f}")
            else:
                cells.append(f"{value:.2f}")
        rows.append((label, cells))
    return rows

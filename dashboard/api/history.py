"""Energy history for the API: the real system's aggregation levels over a local date range.

The levels are those of a Smappee service location's consumption data: 5-minute buckets and
local hours, days, months and quarters. A row is one bucket of the level whose local start lies
in ``[from, to)``, always with the totals of the whole bucket; every bucket of the range is
listed, with null values where nothing is stored. Hours, days and months are read from the
rollups (:mod:`metering.rollups`); quarters sum the month rollups of their local quarter, so a
quarter across a clock change holds exactly the energy of the buckets between its two local
midnights (a reference test resamples the buckets with :func:`metering.history.resample`).

Energy is in Wh at every level (the API is for programs; the usage card converts for people),
always-on in W, coverage in seconds of samples.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from dashboard.usage import FIRST_DAY, last_day
from devices.models import Location
from metering import history, rollups

LEVELS = ("5min", "hour", "day", "month", "quarter")
# The longest range per request, so one request reads and returns at most ~9,000 rows.
MAX_DAYS = {"5min": 31, "hour": 366, "day": 3660}

# (JSON key, CSV header) per value column, in order; the CSV's units are in its headers.
COLUMNS = (
    ("consumption_wh", "Consumption [Wh]"),
    ("solar_wh", "Solar [Wh]"),
    ("grid_import_wh", "Grid import [Wh]"),
    ("grid_export_wh", "Grid export [Wh]"),
    ("battery_charge_wh", "Battery charge [Wh]"),
    ("battery_discharge_wh", "Battery discharge [Wh]"),
    ("self_consumption_wh", "Self-consumption [Wh]"),
    ("self_supplied_wh", "Self-supplied [Wh]"),
    ("always_on_w", "Always-on [W]"),
    ("seconds", "Coverage [s]"),
)
KEYS = tuple(key for key, _ in COLUMNS)


class HistoryRequestError(ValueError):
    """A history request that cannot be answered; ``field`` names the parameter at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class HistoryRange:
    level: str
    start: pd.Timestamp  # local, inclusive
    end: pd.Timestamp  # local, exclusive


def parse_moment(text: str, location: Location, field: str) -> pd.Timestamp:
    """A local date (``2026-03-29``) or date and time (``2026-03-29T14:30``) in the location's
    time zone; one with a UTC offset is taken as that instant.

    A local time a clock change skips moves forward to the first one that exists; one it repeats
    is its first occurrence.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise HistoryRequestError(
            f"{field} must be a date (YYYY-MM-DD) or a local date and time (YYYY-MM-DDTHH:MM), not {text!r}", field
        ) from None
    if not FIRST_DAY <= parsed.date() <= last_day(date.today()):
        raise HistoryRequestError(
            f"{field} must lie between {FIRST_DAY.isoformat()} and {last_day(date.today()).isoformat()}", field
        )
    moment = pd.Timestamp(parsed)
    if moment.tzinfo is not None:
        return moment.tz_convert(location.timezone)
    return moment.tz_localize(location.timezone, ambiguous=True, nonexistent="shift_forward")


def history_range(location: Location, level: str, start_text: str, end_text: str) -> HistoryRange:
    """Checks a request's ``level``, ``from`` and ``to``; raises :class:`HistoryRequestError`."""
    if level not in LEVELS:
        raise HistoryRequestError(f"level must be one of {', '.join(LEVELS)}, not {level!r}", "level")
    start = parse_moment(start_text, location, "from")
    end = parse_moment(end_text, location, "to")
    if end <= start:
        raise HistoryRequestError("to must be later than from", "to")
    longest = MAX_DAYS.get(level)
    if longest is not None and end - start > timedelta(days=longest):
        raise HistoryRequestError(
            f"at level {level} a request covers at most {longest} days; ask for a coarser level or split the range",
            "to",
        )
    return HistoryRange(level, start, end)


def bucket_starts(rng: HistoryRange) -> pd.DatetimeIndex:
    """The local starts of the level's buckets in ``[start, end)``."""
    zone = rng.start.tz
    start_utc, end_utc = rng.start.tz_convert(UTC), rng.end.tz_convert(UTC)
    if rng.level == "5min":  # buckets are aligned in UTC (and so in every zone on a quarter hour)
        starts = pd.date_range(start_utc.ceil("5min"), end_utc, freq="5min", inclusive="left")
        return starts.tz_convert(zone).rename("start")
    if rng.level == "hour":  # local hours: a half-hour zone's start at :30 UTC
        candidates = pd.date_range(start_utc.floor("15min"), end_utc, freq="15min", inclusive="left")
        local = candidates.tz_convert(zone)
        return local[(local.minute == 0) & (local >= rng.start)].rename("start")
    freq = {"day": "D", "month": "MS", "quarter": "QS"}[rng.level]
    first_day = rng.start.tz_localize(None).normalize() - timedelta(days=92)  # a quarter back, then filter
    last = rng.end.tz_localize(None).normalize() + timedelta(days=1)
    days = pd.date_range(first_day, last, freq=freq, inclusive="both")
    local = rollups.local_midnights(days, zone)
    return local[(local >= rng.start) & (local < rng.end)].rename("start")


def history_table(location: Location, rng: HistoryRange) -> pd.DataFrame:
    """One row per bucket of ``rng`` (NaN where nothing is stored), columns :data:`KEYS`."""
    index = bucket_starts(rng)
    table = pd.DataFrame(index=index, columns=list(KEYS), dtype=float)
    if index.empty:
        return table
    zone = location.zoneinfo
    if rng.level == "5min":
        buckets = history.location_buckets(location, index[0], index[-1] + history.BUCKET)
        stored = buckets.assign(always_on_w=history.consumption_power_w(buckets))
    elif rng.level in ("hour", "day", "month"):
        following = {"hour": _next_hour, "day": _next_day, "month": _next_month}[rng.level]
        stored = rollups.read(location, rng.level, index[0].to_pydatetime(), following(index[-1], zone))
    else:
        months = rollups.read(location, "month", index[0].to_pydatetime(), _next_quarter(index[-1], zone))
        stored = _quarters(months, zone)
    present = stored.reindex(index)
    for key in KEYS:
        table[key] = present[key] if key in present else float("nan")
    return table


def _next_hour(start: pd.Timestamp, zone) -> datetime:
    return (start + timedelta(hours=1)).to_pydatetime()


def _next_day(start: pd.Timestamp, zone) -> datetime:
    return rollups.local_midnight(start.date() + timedelta(days=1), zone)


def _next_month(start: pd.Timestamp, zone) -> datetime:
    return rollups.local_midnight(rollups.next_month(start.date().replace(day=1)), zone)


def _next_quarter(start: pd.Timestamp, zone) -> datetime:
    first = start.date().replace(day=1)
    return rollups.local_midnight(rollups.next_month(rollups.next_month(rollups.next_month(first))), zone)


def _quarters(months: pd.DataFrame, zone) -> pd.DataFrame:
    """Month rollups (indexed by their local starts) summed per local quarter."""
    if months.empty:
        return months
    firsts = [date(ts.year, 3 * ((ts.month - 1) // 3) + 1, 1) for ts in months.index]
    quarter_starts = rollups.local_midnights(pd.DatetimeIndex(firsts), zone)
    grouped = months.groupby(quarter_starts)
    totals = grouped[[*history.FLOWS, "seconds"]].sum()
    totals["always_on_w"] = grouped["always_on_w"].min()
    return totals


def rows(table: pd.DataFrame) -> list[dict]:
    """The table as JSON rows: ``start`` as local ISO 8601 with its UTC offset, null where empty."""
    out = []
    for start, values in zip(table.index, table.itertuples(index=False)):
        row = {"start": start.isoformat()}
        for key, value in zip(KEYS, values):
            row[key] = None if pd.isna(value) else round(float(value), 3)
        out.append(row)
    return out


def as_csv(table: pd.DataFrame, location: Location) -> str:
    """The table as CSV: local ISO 8601 starts, units in the headers, empty cells where nothing is stored."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"Start ({location.timezone})", *(header for _, header in COLUMNS)])
    for row in rows(table):
        writer.writerow([row["start"], *("" if row[key] is None else _plain(row[key]) for key in KEYS)])
    return out.getvalue()


def _plain(value: float) -> str:
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text

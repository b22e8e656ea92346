"""Hour, day and month rollups of a location's 5-minute buckets, in its local time.

A year of history is 105,408 buckets; the usage card's week, month and year views read 168, 31
and 12 rollup rows instead. Each rollup row holds the sums of the flows, the seconds of samples
and the number of buckets behind it, and ``always_on_w``: the lowest average consumption power of
a well-covered bucket (:data:`metering.models.MIN_SECONDS_FOR_POWER`), as
:func:`metering.history.resample` gives it.

Keys are local: an hour row is keyed by the UTC instant at which its local hour starts (a
fall-back day's two 02:00 hours are two instants), a day row by its local date, a month row by
its first local date. So a daylight-saving day has 23 or 25 hour rows and a half-hour zone
(Asia/Kolkata) has hours starting at :30 UTC.

Two ways keep them, both setting values (never adding), so late and repeated writes converge:

- :func:`update_after_write`, in the transaction that writes buckets: the hour row containing
  each written bucket is recomputed from its at most 12 buckets, then its day from at most 25
  hour rows, then its month from at most 31 day rows. On PostgreSQL a transaction-level advisory
  lock per location (taken before the buckets are written) serialises writers of one location,
  so a recomputation never misses a concurrent writer's bucket; SQLite has one writer anyway.
- :func:`rebuild`, from the buckets with pandas (``manage.py rebuild_rollups``, history
  backfill, and a location's time zone change).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.db.models.signals import post_save, pre_save

from devices.models import Location
from metering.models import (
    BUCKET,
    FLOWS,
    MIN_SECONDS_FOR_POWER,
    LocationEnergy,
    LocationEnergyDay,
    LocationEnergyHour,
    LocationEnergyMonth,
)

SUMS = (*FLOWS, "seconds")
COLUMNS = (*SUMS, "buckets", "always_on_w")
HOUR = timedelta(hours=1)
# Advisory lock namespace on PostgreSQL ("ROLL"), the location's id being the second key.
LOCK_CLASS = 0x524F4C4C


# ----------------------------------------------------------------------------- local periods


def hour_start(moment: datetime, zone: ZoneInfo) -> datetime:
    """UTC instant at which the local hour containing ``moment`` starts."""
    offset_s = moment.astimezone(zone).utcoffset().total_seconds()
    return (moment - timedelta(seconds=(moment.timestamp() + offset_s) % 3600)).astimezone(UTC)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """UTC instant of the local midnight starting ``day`` (as the usage card's periods have it)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


# ----------------------------------------------------------------------------- incremental


def lock(location_id: int) -> None:
    """Serialise rollup writers of one location until the transaction ends (PostgreSQL only)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, location_id % 2**31])


def update_after_write(location_id: int, zone: ZoneInfo, starts: Iterable[datetime]) -> None:
    """Recompute the hour, day and month rows containing the buckets at ``starts`` (UTC).

    Call it inside the transaction that wrote the buckets, after :func:`lock`.
    """
    hours = sorted({hour_start(start, zone) for start in starts})
    days = sorted({hour.astimezone(zone).date() for hour in hours})
    months = sorted({day.replace(day=1) for day in days})
    with connection.cursor() as cursor:
        for hour in hours:
            _upsert_from(
                cursor, LocationEnergyHour, "start", hour, LocationEnergy, "start", hour, hour + HOUR, location_id
            )
        for day in days:
            bounds = (local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone))
            _upsert_from(cursor, LocationEnergyDay, "day", day, LocationEnergyHour, "start", *bounds, location_id)
        for month in months:
            _upsert_from(
                cursor,
                LocationEnergyMonth,
                "month",
                month,
                LocationEnergyDay,
                "day",
                month,
                next_month(month),
                location_id,
            )


def _upsert_from(cursor, target, key: str, key_value, source, source_key: str, low, high, location_id: int) -> None:
    """Set ``target``'s row (location, key) to the totals of ``source`` rows in [low, high)."""
    q = connection.ops.quote_name
    if source is LocationEnergy:
        count = "COUNT(*)"
        always_on = f"MIN(CASE WHEN {q('seconds')} >= %s THEN {q('consumption_wh')} / ({q('seconds')} / 3600.0) END)"
        params = [MIN_SECONDS_FOR_POWER]
    else:
        count = f"SUM({q('buckets')})"
        always_on = f"MIN({q('always_on_w')})"
        params = []
    adapt = connection.ops.adapt_datetimefield_value if key == "start" else connection.ops.adapt_datefield_value
    adapt_source = (
        connection.ops.adapt_datetimefield_value if source_key == "start" else connection.ops.adapt_datefield_value
    )
    table = q(target._meta.db_table)
    columns = ", ".join(q(c) for c in ("location_id", key, *COLUMNS))
    sums = ", ".join(f"SUM({q(c)})" for c in SUMS)
    updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in COLUMNS)
    sql = (
        f"INSERT INTO {table} ({columns}) "
        f"SELECT {q('location_id')}, %s, {sums}, {count}, {always_on} FROM {q(source._meta.db_table)} "
        f"WHERE {q('location_id')} = %s AND {q(source_key)} >= %s AND {q(source_key)} < %s "
        f"GROUP BY {q('location_id')} "
        f"ON CONFLICT ({q('location_id')}, {q(key)}) DO UPDATE SET {updates}"
    )
    cursor.execute(sql, [adapt(key_value), *params, location_id, adapt_source(low), adapt_source(high)])


# ----------------------------------------------------------------------------- rebuild


def rebuild(location: Location, start: datetime | None = None, end: datetime | None = None) -> int:
    """Rebuild the rollups of the local months overlapping [start, end) (default: all history)
    from the 5-minute buckets. Returns the number of hour rows written."""
    zone = location.zoneinfo
    with transaction.atomic():
        lock(location.pk)
        buckets = LocationEnergy.objects.filter(location=location)
        if start is None or end is None:
            LocationEnergyHour.objects.filter(location=location).delete()
            LocationEnergyDay.objects.filter(location=location).delete()
            LocationEnergyMonth.objects.filter(location=location).delete()
            first = buckets.order_by("start").values_list("start", flat=True).first()
            if first is None:
                return 0
            last = buckets.order_by("-start").values_list("start", flat=True).first()
            start, end = first, last + BUCKET
        first_month = start.astimezone(zone).date().replace(day=1)
        end_month = next_month((end - timedelta(microseconds=1)).astimezone(zone).date().replace(day=1))
        low, high = local_midnight(first_month, zone), local_midnight(end_month, zone)
        LocationEnergyHour.objects.filter(location=location, start__gte=low, start__lt=high).delete()
        LocationEnergyDay.objects.filter(location=location, day__gte=first_month, day__lt=end_month).delete()
        LocationEnergyMonth.objects.filter(location=location, month__gte=first_month, month__lt=end_month).delete()
        hours, days, months = rollup_frames(_bucket_frame(location.pk, low, high), zone)
        LocationEnergyHour.objects.bulk_create(_rows(LocationEnergyHour, location, "start", hours), batch_size=2000)
        LocationEnergyDay.objects.bulk_create(_rows(LocationEnergyDay, location, "day", days), batch_size=2000)
        LocationEnergyMonth.objects.bulk_create(_rows(LocationEnergyMonth, location, "month", months), batch_size=2000)
    return len(hours)


def rebuild_all(location_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Rebuild every location's rollups (or those of ``location_ids``); hour rows per location."""
    locations = Location.objects.order_by("pk")
    if location_ids is not None:
        locations = locations.filter(pk__in=list(location_ids))
    return {location.pk: rebuild(location) for location in locations}


def _bucket_frame(location_id: int, start: datetime, end: datetime) -> pd.DataFrame:
    """Buckets in [start, end) with a UTC ``start`` column: one query, no model instances."""
    q = connection.ops.quote_name
    sql = (
        f"SELECT {q('start')}, {', '.join(q(c) for c in SUMS)} FROM {q(LocationEnergy._meta.db_table)} "
        f"WHERE {q('location_id')} = %s AND {q('start')} >= %s AND {q('start')} < %s ORDER BY {q('start')}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(sql, [location_id, adapt(start), adapt(end)])
        frame = pd.DataFrame.from_records(cursor.fetchall(), columns=["start", *SUMS])
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    frame[list(SUMS)] = frame[list(SUMS)].astype(float)
    return frame


def rollup_frames(buckets: pd.DataFrame, zone: ZoneInfo) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Hour, day and month totals of ``buckets`` (a UTC ``start`` column and :data:`SUMS`).

    Hours are keyed by their UTC start, days and months by local dates; each level is summed
    from the one below, as :func:`update_after_write` does.
    """
    if buckets.empty:
        empty = pd.DataFrame(columns=list(COLUMNS))
        return empty, empty, empty
    utc = pd.DatetimeIndex(buckets["start"]).as_unit("ns")
    local_wall = utc.tz_convert(zone).tz_localize(None)
    offset_ns = (local_wall - utc.tz_localize(None)).asi8
    utc_ns = utc.asi8
    hour_ns = utc_ns - (utc_ns + offset_ns) % (3600 * 10**9)
    power = buckets["consumption_wh"] / (buckets["seconds"] / 3600)
    frame = buckets[list(SUMS)].assign(buckets=1, always_on_w=power.where(buckets["seconds"] >= MIN_SECONDS_FOR_POWER))
    hours = _total(frame, pd.DatetimeIndex(hour_ns, tz=UTC))
    hour_wall = hours.index.tz_convert(zone).tz_localize(None)
    days = _total(hours, np.asarray(hour_wall.normalize().date))
    months = _total(days, np.asarray([d.replace(day=1) for d in days.index]))
    return hours, days, months


def _total(frame: pd.DataFrame, keys) -> pd.DataFrame:
    grouped = frame.groupby(keys, sort=True)
    totals = grouped[[*SUMS, "buckets"]].sum()
    totals["always_on_w"] = grouped["always_on_w"].min()
    return totals


def _rows(model, location: Location, key: str, frame: pd.DataFrame) -> list:
    rows = []
    for key_value, values in zip(frame.index, frame[list(COLUMNS)].itertuples(index=False)):
        fields = dict(zip(COLUMNS, values))
        fields["buckets"] = int(fields["buckets"])
        if pd.isna(fields["always_on_w"]):
            fields["always_on_w"] = None
        if key == "start":
            key_value = key_value.to_pydatetime()
        rows.append(model(location=location, **{key: key_value}, **fields))
    return rows


# ----------------------------------------------------------------------------- reading


def read(location: Location, level: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Rollup rows of ``level`` (hour, day, month) in the local period [start, end), indexed by
    each row's local start (as :func:`metering.history.resample` indexes its rows)."""
    zone = location.zoneinfo
    if level == "hour":
        rows = LocationEnergyHour.objects.filter(location=location, start__gte=start, start__lt=end)
        key = "start"
    elif level == "day":
        rows = LocationEnergyDay.objects.filter(
            location=location, day__gte=start.astimezone(zone).date(), day__lt=end.astimezone(zone).date()
        )
        key = "day"
    elif level == "month":
        rows = LocationEnergyMonth.objects.filter(
            location=location, month__gte=start.astimezone(zone).date(), month__lt=end.astimezone(zone).date()
        )
        key = "month"
    else:
        raise ValueError(f"unknown rollup level {level!r}; use hour, day or month")
    records = list(rows.values_list(key, *COLUMNS))
    frame = pd.DataFrame.from_records(records, columns=[key, *COLUMNS])
    if key == "start":
        index = pd.DatetimeIndex(pd.to_datetime(frame.pop(key), utc=True)).tz_convert(zone)
    else:
        index = local_midnights(pd.DatetimeIndex(pd.to_datetime(frame.pop(key))), zone)
    frame.index = index.rename("start")
    return frame.astype(float)


def local_midnights(days: pd.DatetimeIndex, zone) -> pd.DatetimeIndex:
    """Naive local dates as the instants their days start: a midnight that a clock change skips
    moves to the first hour that exists, one it repeats (America/Havana) is its first time."""
    return days.tz_localize(zone, ambiguous=np.ones(len(days), dtype=bool), nonexistent="shift_forward")


# ----------------------------------------------------------------------------- time zone change


def _remember_timezone(sender, instance: Location, update_fields=None, **kwargs) -> None:
    unchanged = instance.pk is None or (update_fields is not None and "timezone" not in update_fields)
    instance._timezone_before = (
        None if unchanged else Location.objects.filter(pk=instance.pk).values_list("timezone", flat=True).first()
    )


def _rebuild_on_timezone_change(sender, instance: Location, created: bool, **kwargs) -> None:
    """Local hours, days and months move with the time zone: rebuild them in the same transaction."""
    before = getattr(instance, "_timezone_before", None)
    if not created and before is not None and before != instance.timezone:
        rebuild(instance)


pre_save.connect(_remember_timezone, sender=Location, dispatch_uid="rollups-remember-timezone")
post_save.connect(_rebuild_on_timezone_change, sender=Location, dispatch_uid="rollups-rebuild-on-timezone")

"""Hour, day and month rollups in local time, checked against resampling the 5-minute buckets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from metering import history, rollups
from metering.ingest.process import write_bucket
from metering.models import LocationEnergy, LocationEnergyDay, LocationEnergyHour, LocationEnergyMonth
from tests.factories import make_location

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
KOLKATA = ZoneInfo("Asia/Kolkata")
# (zone, first local day, last local day): around the spring and autumn changes, across a month
# end, and a half-hour zone whose local hours start at :30 UTC.
SPANS = {
    "spring": ("Europe/Brussels", date(2026, 3, 28), date(2026, 4, 1)),
    "autumn": ("Europe/Brussels", date(2026, 10, 24), date(2026, 11, 1)),
    "half-hour": ("Asia/Kolkata", date(2026, 3, 30), date(2026, 4, 1)),
}
LEVELS = {"hour": "hour", "day": "day", "month": "month"}


def varied_buckets(zone: ZoneInfo, first: date, last: date, seed: int = 1) -> list[dict]:
    """Every 5-minute bucket of the local days first..last, but for gaps: varied flows, some
    buckets partly filled (too short for always-on)."""
    rng = np.random.default_rng(seed)
    start = rollups.local_midnight(first, zone)
    end = rollups.local_midnight(last + timedelta(days=1), zone)
    buckets = []
    moment = start
    while moment < end:
        if rng.random() > 0.03:  # a gap now and then
            seconds = 300.0 if rng.random() > 0.1 else float(rng.integers(10, 239))
            consumption = float(rng.uniform(20, 4000)) * seconds / 3600
            solar = float(rng.uniform(0, 3000)) * seconds / 3600
            used = min(consumption, solar)
            buckets.append(
                {
                    "start": moment,
                    "seconds": seconds,
                    "consumption_wh": consumption,
                    "solar_wh": solar,
                    "grid_import_wh": consumption - used,
                    "grid_export_wh": solar - used,
                    "battery_charge_wh": float(rng.uniform(0, 5)),
                    "battery_discharge_wh": float(rng.uniform(0, 5)),
                    "self_consumption_wh": used,
                    "self_supplied_wh": used,
                }
            )
        moment += timedelta(minutes=5)
    return buckets


def store(location, buckets: list[dict]) -> None:
    LocationEnergy.objects.bulk_create([LocationEnergy(location=location, **bucket) for bucket in buckets])


def reference(location, level: str, start: datetime, end: datetime) -> pd.DataFrame:
    """:func:`metering.history.resample` of the buckets, periods without buckets left out."""
    buckets = history.location_buckets(location, start, end)
    rule = history.RESOLUTIONS[level]
    table = history.resample(buckets, level)
    table["seconds"] = buckets["seconds"].resample(rule).sum()
    table["buckets"] = buckets["seconds"].resample(rule).count()
    return table[table["buckets"] > 0]


def assert_rollups_match(location, first: date, last: date) -> None:
    zone = location.zoneinfo
    start = rollups.local_midnight(first.replace(day=1), zone)
    end = rollups.local_midnight(rollups.next_month(last.replace(day=1)), zone)
    for level in LEVELS:
        got = rollups.read(location, level, start, end)
        want = reference(location, level, start, end)
        assert list(got.index) == list(want.index), level
        for column in (*history.FLOWS, "seconds", "buckets", "always_on_w"):
            np.testing.assert_allclose(got[column], want[column], rtol=1e-12, atol=1e-9, err_msg=f"{level} {column}")


def location_in(zone_name: str, serial_prefix: str = "T"):
    location, _ = make_location(serial_prefix=serial_prefix)
    if zone_name != location.timezone:
        location.timezone = zone_name
        location.save()
    return location


def setup_of(location) -> SimpleNamespace:
    """The parts of :class:`metering.installed.Installed` that ``write_bucket`` reads."""
    return SimpleNamespace(location_id=location.pk, timezone=location.timezone, load_ids={}, inputs={})


def as_written(bucket: dict, share: float) -> dict:
    values = {key: value * share for key, value in bucket.items() if key != "start"}
    return {"start": bucket["start"].timestamp(), "location": values}


@pytest.mark.parametrize("span", SPANS)
def test_it_rebuilds_rollups_equal_to_resampled_buckets(span):
    zone_name, first, last = SPANS[span]
    location = location_in(zone_name)
    store(location, varied_buckets(ZoneInfo(zone_name), first, last))
    rollups.rebuild(location)
    assert_rollups_match(location, first, last)


@pytest.mark.parametrize("span", SPANS)
def test_it_keeps_rollups_equal_to_resampled_buckets_as_buckets_are_written(span):
    zone_name, first, last = SPANS[span]
    location = location_in(zone_name)
    buckets = varied_buckets(ZoneInfo(zone_name), first, last)
    setup = setup_of(location)
    # Each bucket in two writes (the pending bucket's flush every 30 s, then the rest), the
    # second writes in a shuffled order: late frames for older buckets.
    for bucket in buckets:
        write_bucket(setup, as_written(bucket, 0.25))
    for index in np.random.default_rng(2).permutation(len(buckets)):
        write_bucket(setup, as_written(buckets[index], 0.75))
    assert_rollups_match(location, first, last)


def test_it_has_23_and_25_hour_rows_on_the_dst_days_adding_up_to_the_day():
    location = location_in("Europe/Brussels")
    for day, hours in ((date(2026, 3, 29), 23), (date(2026, 10, 25), 25)):
        store(location, varied_buckets(BRUSSELS, day, day))
        rollups.rebuild(location)
        start, end = rollups.local_midnight(day, BRUSSELS), rollups.local_midnight(day + timedelta(days=1), BRUSSELS)
        hour_rows = rollups.read(location, "hour", start, end)
        day_row = LocationEnergyDay.objects.get(location=location, day=day)
        assert len(hour_rows) == hours
        assert day_row.consumption_wh == pytest.approx(hour_rows["consumption_wh"].sum(), rel=1e-12)
        assert day_row.always_on_w == hour_rows["always_on_w"].min()


def test_it_starts_half_hour_zone_hours_at_half_past_utc():
    location = location_in("Asia/Kolkata")
    store(location, varied_buckets(KOLKATA, date(2026, 6, 1), date(2026, 6, 1)))
    rollups.rebuild(location)
    starts = list(LocationEnergyHour.objects.filter(location=location).values_list("start", flat=True))
    assert len(starts) == 24
    assert {start.minute for start in starts} == {30}
    assert starts[0] == datetime(2026, 5, 31, 18, 30, tzinfo=UTC)


def test_it_updates_the_rollups_when_a_late_bucket_is_written():
    location = location_in("Europe/Brussels")
    setup = setup_of(location)
    noon = datetime(2026, 6, 1, 12, tzinfo=BRUSSELS)
    write_bucket(setup, {"start": noon.timestamp(), "location": {"consumption_wh": 50.0, "seconds": 300.0}})
    # The next bucket so far: 30 s of samples, too few for always-on.
    write_bucket(setup, {"start": noon.timestamp() + 300, "location": {"consumption_wh": 1.0, "seconds": 30.0}})
    hour = LocationEnergyHour.objects.get(location=location)
    assert (hour.consumption_wh, hour.buckets, hour.always_on_w) == (51.0, 2, pytest.approx(600.0))
    # The rest of it arrives: now it is the lowest power of the hour, the day and the month.
    write_bucket(setup, {"start": noon.timestamp() + 300, "location": {"consumption_wh": 24.0, "seconds": 270.0}})
    # A late frame for an hour earlier.
    write_bucket(setup, {"start": noon.timestamp() - 3600, "location": {"consumption_wh": 40.0, "seconds": 300.0}})
    hours = list(LocationEnergyHour.objects.filter(location=location).values_list("consumption_wh", "always_on_w"))
    assert hours == [(40.0, pytest.approx(480.0)), (75.0, pytest.approx(300.0))]
    for row in (LocationEnergyDay.objects.get(), LocationEnergyMonth.objects.get()):
        assert (row.consumption_wh, row.buckets, row.seconds) == (115.0, 3, 900.0)
        assert row.always_on_w == pytest.approx(300.0)
    assert LocationEnergyDay.objects.get().day == date(2026, 6, 1)
    assert LocationEnergyMonth.objects.get().month == date(2026, 6, 1)


def test_it_rebuilds_rollups_with_the_command(capsys):
    location = location_in("Europe/Brussels")
    other = location_in("Europe/Brussels", serial_prefix="O")
    store(location, varied_buckets(BRUSSELS, date(2026, 3, 29), date(2026, 3, 29)))
    store(other, varied_buckets(BRUSSELS, date(2026, 3, 30), date(2026, 3, 30)))
    call_command("rebuild_rollups", str(location.pk))
    assert "1 location(s): 23 hour rows" in capsys.readouterr().out
    assert not LocationEnergyHour.objects.filter(location=other).exists()
    LocationEnergyHour.objects.filter(location=location).update(consumption_wh=0.0)  # made stale

    call_command("rebuild_rollups")
    assert "2 location(s): 47 hour rows" in capsys.readouterr().out
    assert_rollups_match(location, date(2026, 3, 29), date(2026, 3, 29))
    assert_rollups_match(other, date(2026, 3, 30), date(2026, 3, 30))
    with pytest.raises(CommandError, match="no location with id 999999"):
        call_command("rebuild_rollups", "999999")


def test_it_rebuilds_rollups_when_the_time_zone_changes():
    location = location_in("Europe/Brussels")
    buckets = varied_buckets(BRUSSELS, date(2026, 6, 1), date(2026, 6, 2))
    setup = setup_of(location)
    for bucket in buckets:
        write_bucket(setup, as_written(bucket, 1.0))
    assert {start.minute for start in LocationEnergyHour.objects.values_list("start", flat=True)} == {0}

    location.timezone = "Asia/Kolkata"
    location.save()
    assert {start.minute for start in LocationEnergyHour.objects.values_list("start", flat=True)} == {30}
    # The Brussels days' buckets span three Kolkata days now.
    assert list(LocationEnergyDay.objects.values_list("day", flat=True)) == [date(2026, 6, d) for d in (1, 2, 3)]
    assert_rollups_match(location, date(2026, 6, 1), date(2026, 6, 3))


def test_it_fills_rollups_when_history_is_backfilled():
    location = location_in("Europe/Brussels")
    start = datetime(2026, 10, 24, tzinfo=BRUSSELS).astimezone(UTC)  # steps of absolute time
    rows = [(start + timedelta(minutes=5 * k), {"Grid": 300.0 + k % 50, "Heat pump": 100.0}, {}) for k in range(900)]
    history.backfill(location, rows)
    assert_rollups_match(location, date(2026, 10, 24), date(2026, 10, 27))
    assert LocationEnergyDay.objects.get(day=date(2026, 10, 25)).buckets == 300


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_rollups_of_concurrent_writers_of_one_location_whole():
    """Two ingest transactions write two buckets of one hour: the second waits for the first
    (PostgreSQL advisory lock), so its recomputation includes the first's bucket."""
    import threading

    from django.db import connection, connections, transaction

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    location = location_in("Europe/Brussels")
    setup = setup_of(location)
    noon = datetime(2026, 6, 1, 12, tzinfo=BRUSSELS).timestamp()
    first_wrote, may_commit = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                write_bucket(setup, {"start": noon, "location": {"consumption_wh": 10.0, "seconds": 300.0}})
                first_wrote.set()
                may_commit.wait(10)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            with transaction.atomic():
                write_bucket(setup, {"start": noon + 300, "location": {"consumption_wh": 20.0, "seconds": 300.0}})
        finally:
            connections.close_all()

    one = threading.Thread(target=first)
    one.start()
    assert first_wrote.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)
    assert two.is_alive()  # waiting for the first writer's lock
    may_commit.set()
    one.join(10), two.join(10)
    hour = LocationEnergyHour.objects.get(location=location)
    assert (hour.consumption_wh, hour.buckets) == (30.0, 2)
    assert LocationEnergyMonth.objects.get(location=location).consumption_wh == 30.0

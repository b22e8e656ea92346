"""History in the location's time zone: 5-minute buckets resampled with pandas."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from metering.history import location_buckets, resample, series, summarise
from metering.models import LocationEnergy
from tests.factories import make_location

pytestmark = pytest.mark.django_db
BRUSSELS = ZoneInfo("Europe/Brussels")


def fill(location, start_local: datetime, end_local: datetime, **per_bucket_wh: float) -> int:
    start = start_local.astimezone(ZoneInfo("UTC"))
    end = end_local.astimezone(ZoneInfo("UTC"))
    rows = []
    t = start
    while t < end:
        rows.append(LocationEnergy(location=location, start=t, seconds=300, **per_bucket_wh))
        t += timedelta(minutes=5)
    LocationEnergy.objects.bulk_create(rows)
    return len(rows)


@pytest.mark.parametrize(("day", "hours"), [(29, 23), (30, 24)])
def test_it_gives_a_spring_forward_day_23_hours_whose_totals_add_up(day, hours):
    location, _ = make_location()
    start = datetime(2026, 3, day, tzinfo=BRUSSELS)
    end = datetime(2026, 3, day + 1, tzinfo=BRUSSELS)
    buckets = fill(location, start, end, consumption_wh=10.0)
    assert buckets == hours * 12

    hourly = series(location, start, end, "hour")
    assert len(hourly) == hours
    assert hourly["consumption_wh"].sum() == pytest.approx(hours * 120.0)
    assert (hourly["consumption_wh"] == 120.0).all()

    daily = series(location, start, end, "day")
    assert len(daily) == 1
    assert daily.index[0] == start
    assert daily["consumption_wh"].iloc[0] == pytest.approx(hours * 120.0)


def test_it_gives_a_fall_back_day_25_hours():
    location, _ = make_location()
    start, end = datetime(2026, 10, 25, tzinfo=BRUSSELS), datetime(2026, 10, 26, tzinfo=BRUSSELS)
    fill(location, start, end, consumption_wh=10.0)
    hourly = series(location, start, end, "hour")
    assert len(hourly) == 25
    assert series(location, start, end, "day")["consumption_wh"].iloc[0] == pytest.approx(25 * 120.0)


def test_it_cuts_days_at_local_midnight_not_utc():
    location, _ = make_location()
    # 23:00–01:00 local on 1–2 July is 21:00–23:00 UTC: all of it belongs to two local days.
    fill(
        location,
        datetime(2026, 7, 1, 23, tzinfo=BRUSSELS),
        datetime(2026, 7, 2, 1, tzinfo=BRUSSELS),
        consumption_wh=5.0,
    )
    daily = series(location, datetime(2026, 7, 1, tzinfo=BRUSSELS), datetime(2026, 7, 3, tzinfo=BRUSSELS), "day")
    assert list(daily["consumption_wh"]) == [60.0, 60.0]


def test_it_resamples_months_and_quarters_in_local_time():
    location, _ = make_location()
    fill(location, datetime(2026, 3, 31, 22, tzinfo=BRUSSELS), datetime(2026, 4, 1, 2, tzinfo=BRUSSELS), solar_wh=1.0)
    start, end = datetime(2026, 1, 1, tzinfo=BRUSSELS), datetime(2026, 7, 1, tzinfo=BRUSSELS)
    monthly = series(location, start, end, "month")
    assert monthly.loc[monthly.index.month == 3, "solar_wh"].iloc[0] == pytest.approx(24.0)
    assert monthly.loc[monthly.index.month == 4, "solar_wh"].iloc[0] == pytest.approx(24.0)
    quarterly = series(location, start, end, "quarter")
    assert list(quarterly["solar_wh"]) == [24.0, 24.0]
    with pytest.raises(ValueError, match="unknown resolution 'week'"):
        resample(location_buckets(location, start, end), "week")


def test_it_derives_self_consumption_self_sufficiency_and_always_on():
    location, _ = make_location()
    day = datetime(2026, 6, 21, tzinfo=BRUSSELS)
    # Night: 200 W from the grid. Noon: 3 kW solar, 1 kW used, 2 kW exported.
    fill(location, day, day + timedelta(hours=1), consumption_wh=200 / 12, grid_import_wh=200 / 12)
    fill(
        location,
        day + timedelta(hours=12),
        day + timedelta(hours=13),
        consumption_wh=1000 / 12,
        solar_wh=3000 / 12,
        grid_export_wh=2000 / 12,
        self_consumption_wh=1000 / 12,
        self_supplied_wh=1000 / 12,
    )
    summary = summarise(location_buckets(location, day, day + timedelta(days=1)))
    assert summary.consumption_wh == pytest.approx(1200)
    assert summary.self_consumption == pytest.approx(1 / 3)
    assert summary.self_sufficiency == pytest.approx(1000 / 1200)
    assert summary.always_on_w == pytest.approx(200)


def test_it_summarises_an_empty_period_without_inventing_ratios():
    location, _ = make_location()
    day = datetime(2026, 6, 21, tzinfo=BRUSSELS)
    summary = summarise(location_buckets(location, day, day + timedelta(days=1)))
    assert summary.consumption_wh == 0
    assert summary.self_consumption is None and summary.self_sufficiency is None and summary.always_on_w is None


def test_it_leaves_partly_filled_buckets_out_of_always_on():
    location, _ = make_location()
    day = datetime(2026, 6, 21, tzinfo=BRUSSELS)
    fill(location, day, day + timedelta(hours=1), consumption_wh=300 / 12)
    LocationEnergy.objects.create(
        location=location, start=(day + timedelta(hours=2)).astimezone(ZoneInfo("UTC")), consumption_wh=0.5, seconds=20
    )
    buckets = location_buckets(location, day, day + timedelta(days=1))
    assert summarise(buckets).always_on_w == pytest.approx(300)
    assert resample(buckets, "day")["always_on_w"].iloc[0] == pytest.approx(300)

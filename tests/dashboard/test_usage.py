"""The usage card: calendar periods in the location's time zone, the chart and its CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from dashboard import usage
from metering import history

pytestmark = pytest.mark.django_db

SPRING_FORWARD = date(2026, 3, 29)  # Europe/Brussels: 02:00 CET -> 03:00 CEST
FALL_BACK = date(2026, 10, 25)  # Europe/Brussels: 03:00 CEST -> 02:00 CET


def constant_history(location, start: datetime, end: datetime, grid_w: float = 1200.0) -> int:
    """Every 5-minute bucket in [start, end) with the grid drawing ``grid_w``."""
    rows = []
    moment = start.astimezone(UTC)
    while moment < end:
        rows.append((moment, {"Grid": grid_w, "Heat pump": grid_w / 2}, {}))
        moment += timedelta(minutes=5)
    return history.backfill(location, rows)


def page_figure(content: bytes) -> dict:
    match = re.search(rb'<script id="usage-figure" type="application/json">(.*?)</script>', content, re.S)
    assert match, "the page has no usage figure"
    return json.loads(match.group(1))


def test_it_uses_local_midnights_so_a_spring_dst_day_has_23_hours(house):
    location, _ = house
    period = usage.period_for(location, "day", SPRING_FORWARD, today=date(2030, 1, 1))
    assert period.start.isoformat() == "2026-03-29T00:00:00+01:00"
    assert period.end.isoformat() == "2026-03-30T00:00:00+02:00"
    assert period.end.astimezone(UTC) - period.start.astimezone(UTC) == timedelta(hours=23)

    constant_history(location, period.start, period.end)
    hourly = history.series(location, period.start, period.end, "hour")
    assert len(hourly) == 23
    assert list(hourly.index.hour[:4]) == [0, 1, 3, 4]
    table, summary = usage.usage_table(location, period, has_solar=False)
    assert len(table) == 23 * 12
    assert summary.consumption_wh == pytest.approx(1200 * 23)


def test_it_has_25_hours_with_distinct_labels_on_the_autumn_dst_day(house):
    location, _ = house
    period = usage.period_for(location, "day", FALL_BACK, today=date(2030, 1, 1))
    constant_history(location, period.start, period.end)
    table, _ = usage.usage_table(location, period, has_solar=False)
    assert len(table) == 25 * 12
    figure = usage.usage_figure(table, period)
    labels = figure["data"][0]["x"]
    assert len(set(labels)) == len(labels) == 300
    assert "02:00 CEST" in labels and "02:00 CET" in labels


def test_it_has_the_dst_day_with_23_hourly_rows_in_the_week_view(house):
    location, _ = house
    period = usage.period_for(location, "week", SPRING_FORWARD, today=date(2030, 1, 1))
    assert period.first_day == date(2026, 3, 23)  # the Monday
    constant_history(location, period.start, period.end)
    table, _ = usage.usage_table(location, period, has_solar=False)
    per_day = table.groupby(table.index.date).size()
    assert per_day[SPRING_FORWARD] == 23
    assert len(table) == 7 * 24 - 1
    assert table["Consumption [kWh]"].dropna().eq(1.2).all()  # 1200 W for an hour


def test_it_plots_average_kw_per_5_minutes_for_a_day_and_kwh_for_longer_periods(house):
    location, _ = house
    day = usage.period_for(location, "day", date(2026, 11, 20), today=date(2026, 11, 25))
    constant_history(location, day.start, day.end, grid_w=1200.0)
    table, summary = usage.usage_table(location, day, has_solar=False)
    assert list(table.columns) == ["Consumption [kW]", "Grid import [kW]", "Grid export [kW]", "Always-on [kW]"]
    assert table["Consumption [kW]"].eq(1.2).all()
    assert table["Always-on [kW]"].eq(1.2).all()
    assert summary.always_on_w == pytest.approx(1200)

    month = usage.period_for(location, "month", date(2026, 11, 20), today=date(2026, 11, 25))
    table, _ = usage.usage_table(location, month, has_solar=False)
    assert list(table.columns) == ["Consumption [kWh]", "Grid import [kWh]", "Grid export [kWh]", "Always-on [W]"]
    assert len(table) == 30
    consumption = table["Consumption [kWh]"]
    assert consumption.iloc[19] == pytest.approx(28.8)  # 20 November
    assert consumption.drop(consumption.index[19]).isna().all()  # nothing stored is not zero
    year = usage.period_for(location, "year", date(2026, 11, 20), today=date(2026, 11, 25))
    assert len(usage.usage_table(location, year, has_solar=False)[0]) == 12


def test_it_averages_power_over_the_seconds_a_bucket_holds(house):
    from metering.models import LocationEnergy

    location, _ = house
    day = usage.period_for(location, "day", date(2026, 11, 20), today=date(2026, 11, 25))
    constant_history(location, day.start, day.start + timedelta(hours=1), grid_w=600.0)
    # The bucket still being filled: 30 s of samples at 1,200 W so far.
    LocationEnergy.objects.filter(start=(day.start + timedelta(minutes=55)).astimezone(UTC)).update(
        consumption_wh=10.0, grid_import_wh=10.0, seconds=30.0
    )
    table, summary = usage.usage_table(location, day, has_solar=False)
    assert table["Consumption [kW]"].iloc[11] == pytest.approx(1.2)
    assert table["Consumption [kW]"].iloc[10] == pytest.approx(0.6)
    assert summary.always_on_w == pytest.approx(600)  # the 30-second bucket does not count


def test_it_navigates_to_previous_and_next_periods(house):
    location, _ = house
    period = usage.period_for(location, "month", date(2026, 1, 15), today=date(2026, 11, 25))
    assert (period.previous, period.next) == (date(2025, 12, 1), date(2026, 2, 1))
    assert usage.period_for(location, "day", date(2026, 11, 25), today=date(2026, 11, 25)).next is None
    assert usage.period_for(location, "year", date(2026, 6, 1), today=date(2026, 11, 25)).title == "2026"
    assert (
        usage.period_for(location, "week", date(2026, 11, 25), today=date(2026, 11, 25)).title
        == "Week 48, 23–29 Nov 2026"
    )


def test_it_downloads_exactly_the_plotted_data_as_csv(client, house, owner):
    location, _ = house
    period = usage.period_for(location, "day", date(2026, 3, 29), today=date(2030, 1, 1))
    constant_history(location, period.start, period.start + timedelta(hours=5), grid_w=900.0)
    client.force_login(owner)

    page = client.get(f"/locations/{location.pk}/", {"period": "day", "date": "2026-03-29"})
    figure = page_figure(page.content)
    response = client.get(f"/locations/{location.pk}/usage.csv", {"period": "day", "date": "2026-03-29"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="usage-' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header, body = rows[0], rows[1:]
    assert header == [
        "Start (Europe/Brussels)",
        "Consumption [kW]",
        "Grid import [kW]",
        "Grid export [kW]",
        "Always-on [kW]",
    ]
    assert body[0][0] == "2026-03-29T00:00:00+01:00"
    assert body[36][0] == "2026-03-29T04:00:00+02:00"  # 03:00 CET is 04:00 CEST
    assert len(body) == 276
    plotted = {trace["name"]: trace["y"] for trace in figure["data"]}
    for column, name in enumerate(["Consumption", "Grid import", "Grid export", "Always-on"], start=1):
        from_csv = [None if row[column] == "" else float(row[column]) for row in body]
        assert from_csv == plotted[name], name
    assert plotted["Consumption"][0] == 0.9 and plotted["Consumption"][60] is None


def test_it_renders_period_navigation_that_works_without_javascript(client, house, owner):
    location, _ = house
    client.force_login(owner)
    response = client.get(f"/locations/{location.pk}/", {"period": "week", "date": "2026-03-25", "kind": "relay"})
    html = response.content.decode()
    assert "Week 13, 23–29 Mar 2026" in html
    # Links keep the other cards' parameters (the events filter) and are plain hrefs too.
    assert f'href="/locations/{location.pk}/?period=week&amp;date=2026-03-16&amp;kind=relay"' in html
    assert f'hx-get="/locations/{location.pk}/?period=week&amp;date=2026-03-30&amp;kind=relay"' in html
    assert "No usage recorded for Week 13" in html


def test_it_falls_back_to_today_for_a_malformed_period_or_date(client, house, owner):
    location, _ = house
    client.force_login(owner)
    response = client.get(f"/locations/{location.pk}/", {"period": "decade", "date": "yesterday"})
    assert response.status_code == 200
    assert 'aria-current="page">Day</a>' in response.content.decode()
    csv_response = client.get(f"/locations/{location.pk}/usage.csv", {"period": "decade"})
    assert csv_response.status_code == 200


def test_it_summarises_self_consumption_and_self_sufficiency(client, house, owner):
    location, _ = house
    from devices.models import Load

    Load.objects.create(location=location, name="Solar", kind="solar", position=2)
    period = usage.period_for(location, "day", date(2026, 6, 1), today=date(2030, 1, 1))
    rows = [
        (period.start.astimezone(UTC) + timedelta(minutes=5 * k), {"Grid": -500.0, "Solar": 1500.0}, {})
        for k in range(12)
    ]
    history.backfill(location, rows)
    client.force_login(owner)
    html = client.get(f"/locations/{location.pk}/", {"period": "day", "date": "2026-06-01"}).content.decode()
    # Solar 1500 W, export 500 W: two thirds of the solar is used on site, all consumption is solar.
    assert re.search(r"Self-consumption</abbr></dt><dd>67 %", html)
    assert re.search(r"Self-sufficiency</abbr></dt><dd>100 %", html)
    assert "Solar [kW]" in html


@pytest.mark.parametrize(
    ("day", "period"), [("9999-12-31", "year"), ("0001-01-01", "day"), ("1999-12-31", "week"), ("2200-01-01", "month")]
)
def test_it_refuses_a_date_out_of_range_with_400_and_a_message(client, house, owner, day, period):
    location, _ = house
    client.force_login(owner)
    params = {"period": period, "date": day}
    page = client.get(f"/locations/{location.pk}/", params)
    partial = client.get(f"/locations/{location.pk}/", params, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="card-usage")
    csv_response = client.get(f"/locations/{location.pk}/usage.csv", params)
    for response in (page, partial, csv_response):
        assert response.status_code == 400
        assert "Usage is shown for dates from 2000-01-01 to " in response.content.decode()
        assert f"not {day}." in response.content.decode()
    with pytest.raises(ValueError, match="is outside 2000-01-01"):
        usage.period_for(location, period, date.fromisoformat(day), today=date(2026, 1, 1))


def test_it_shows_the_first_and_the_last_day_it_allows(client, house, owner):
    location, _ = house
    client.force_login(owner)
    last = usage.last_day(datetime.now(location.zoneinfo).date())
    for day in (usage.FIRST_DAY, last):
        for period in usage.PERIODS:
            params = {"period": period, "date": day.isoformat()}
            assert client.get(f"/locations/{location.pk}/", params).status_code == 200, params
            assert client.get(f"/locations/{location.pk}/usage.csv", params).status_code == 200, params


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Brussels", SPRING_FORWARD),
        ("Europe/Brussels", FALL_BACK),
        ("Asia/Kolkata", date(2026, 3, 31)),
        ("America/Havana", date(2025, 11, 2)),  # clocks go from 01:00 back to 00:00: midnight twice
    ],
)
def test_it_gives_the_same_card_and_csv_from_rollups_as_from_the_buckets(client, house, owner, zone, day):
    from metering import rollups
    from tests.metering.test_rollups import store, varied_buckets

    location, _ = house
    location.timezone = zone
    location.save()
    store(location, varied_buckets(location.zoneinfo, day - timedelta(days=9), day + timedelta(days=9)))
    rollups.rebuild(location)
    client.force_login(owner)
    for name in usage.PERIODS:
        period = usage.period_for(location, name, day, today=date(2030, 1, 1))
        table, summary = usage.usage_table(location, period, use_rollups=True)
        reference, expected = usage.usage_table(location, period, use_rollups=False)
        pd.testing.assert_frame_equal(table, reference)
        for field in ("consumption_wh", "solar_wh", "grid_import_wh", "grid_export_wh", "self_consumption"):
            assert getattr(summary, field) == pytest.approx(getattr(expected, field), rel=1e-12), (name, field)
        assert summary.always_on_w == expected.always_on_w
        # The house has no solar load: the download leaves its column out.
        plain, _ = usage.usage_table(location, period, has_solar=False, use_rollups=False)
        response = client.get(f"/locations/{location.pk}/usage.csv", {"period": name, "date": day.isoformat()})
        assert response.content.decode() == usage.usage_csv(plain, location), name


def test_it_adds_the_dst_day_hours_of_the_week_up_to_the_day_of_the_month(house):
    location, _ = house
    month = usage.period_for(location, "month", SPRING_FORWARD, today=date(2030, 1, 1))
    constant_history(location, month.start, month.end, grid_w=1500.0)
    week = usage.period_for(location, "week", SPRING_FORWARD, today=date(2030, 1, 1))
    hours, _ = usage.usage_table(location, week, has_solar=False)
    days, _ = usage.usage_table(location, month, has_solar=False)
    dst_hours = hours[hours.index.date == SPRING_FORWARD]["Consumption [kWh]"]
    assert len(dst_hours) == 23
    assert days.loc[days.index.date == SPRING_FORWARD, "Consumption [kWh]"].item() == pytest.approx(dst_hours.sum())
    assert dst_hours.sum() == pytest.approx(1.5 * 23)

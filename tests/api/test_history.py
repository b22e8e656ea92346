"""Energy history at the real system's levels (5min, hour, day, month, quarter) in the
location's local time, as JSON and CSV, with clear 400s for requests it cannot answer."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from dashboard.api import history as api_history
from metering import history

pytestmark = pytest.mark.django_db

BRUSSELS = "Europe/Brussels"
SPRING_FORWARD = "2026-03-29"  # 02:00 CET -> 03:00 CEST
FALL_BACK = "2026-10-25"  # 03:00 CEST -> 02:00 CET
HOURS = 5 / 60  # of a 5-minute bucket


def local(text: str) -> datetime:
    return pd.Timestamp(text).tz_localize(BRUSSELS).to_pydatetime()


def fill(location, start: datetime, end: datetime, grid_w=lambda moment: 1200.0) -> int:
    """Every 5-minute bucket in [start, end), the grid drawing ``grid_w(bucket start)``."""
    rows = []
    moment = start.astimezone(UTC)
    while moment < end:
        rows.append((moment, {"Grid": grid_w(moment)}, {}))
        moment += timedelta(minutes=5)
    return history.backfill(location, rows)


def url(location, suffix: str = "") -> str:
    return f"/api/v1/locations/{location.pk}/history{suffix}"


def test_it_gives_276_five_minute_and_23_hourly_rows_on_the_spring_dst_day(api, house):
    location, _ = house
    fill(location, local("2026-03-28"), local("2026-03-31"))
    day = {"from": SPRING_FORWARD, "to": "2026-03-30"}
    five = api.get(url(location), level="5min", **day).json()
    assert len(five["rows"]) == 276
    assert five["rows"][0]["start"] == "2026-03-29T00:00:00+01:00"
    assert five["rows"][24]["start"] == "2026-03-29T03:00:00+02:00"  # 02:00-02:55 do not exist
    assert five["rows"][0]["consumption_wh"] == pytest.approx(1200 * HOURS)
    assert five["rows"][0]["seconds"] == 300
    hours = api.get(url(location), level="hour", **day).json()["rows"]
    assert len(hours) == 23
    assert all(row["consumption_wh"] == pytest.approx(1200.0) for row in hours)
    days = api.get(url(location), level="day", **day).json()["rows"]
    assert days == [{**days[0], "start": "2026-03-29T00:00:00+01:00"}]
    assert days[0]["consumption_wh"] == pytest.approx(23 * 1200.0)


def test_it_gives_25_hours_with_distinct_starts_on_the_autumn_dst_day(api, house):
    location, _ = house
    fill(location, local("2026-10-25"), local("2026-10-26"))
    rows = api.get(url(location), level="hour", **{"from": FALL_BACK, "to": "2026-10-26"}).json()["rows"]
    assert len(rows) == 25
    assert [r["start"] for r in rows[2:4]] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]


def test_it_sums_quarters_between_local_midnights_across_a_clock_change(api, house):
    """Q1 2026 in Brussels ends at 2026-04-01 00:00 CEST (22:00 UTC on 31 March) and holds the
    spring-forward day; the power differs per bucket, so a bucket in the wrong quarter shows."""
    location, _ = house
    start, end = local("2026-03-25"), local("2026-04-05")

    def power(moment: datetime) -> float:
        return 1000.0 + (moment.timestamp() // 300) % 7 * 100.0

    fill(location, start, end, power)
    answer = api.get(url(location), level="quarter", **{"from": "2026-01-01", "to": "2026-07-01"}).json()
    assert [row["start"] for row in answer["rows"]] == ["2026-01-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00"]

    def expected_wh(low: datetime, high: datetime) -> float:
        total, moment = 0.0, low.astimezone(UTC)
        while moment < high:
            total += power(moment) * HOURS
            moment += timedelta(minutes=5)
        return total

    q1, q2 = answer["rows"]
    assert q1["consumption_wh"] == pytest.approx(expected_wh(start, local("2026-04-01")), rel=1e-9)
    assert q2["consumption_wh"] == pytest.approx(expected_wh(local("2026-04-01"), end), rel=1e-9)
    assert q1["seconds"] == (7 * 24 - 1) * 3600  # 25-31 March local, one hour short
    # The reference: pandas resampling the 5-minute buckets by local quarter.
    reference = history.resample(history.location_buckets(location, start, end), "quarter")
    assert [q1["consumption_wh"], q2["consumption_wh"]] == pytest.approx(list(reference["consumption_wh"]), rel=1e-9)
    assert [q1["always_on_w"], q2["always_on_w"]] == pytest.approx(list(reference["always_on_w"]))


def test_it_lists_every_bucket_of_the_range_with_null_where_nothing_is_stored(api, house):
    location, _ = house
    fill(location, local("2026-05-02"), local("2026-05-03"))
    rows = api.get(url(location), level="day", **{"from": "2026-05-01", "to": "2026-05-04"}).json()["rows"]
    assert [r["start"][:10] for r in rows] == ["2026-05-01", "2026-05-02", "2026-05-03"]
    assert rows[0]["consumption_wh"] is None and rows[2]["consumption_wh"] is None
    assert rows[1]["consumption_wh"] == pytest.approx(24 * 1200.0)


def test_it_takes_local_times_and_whole_buckets_starting_in_the_range(api, house):
    location, _ = house
    fill(location, local("2026-05-01"), local("2026-05-02"))
    rows = api.get(url(location), level="hour", **{"from": "2026-05-01T10:30", "to": "2026-05-01T13:00"}).json()
    assert [r["start"] for r in rows["rows"]] == ["2026-05-01T11:00:00+02:00", "2026-05-01T12:00:00+02:00"]
    assert rows["from"] == "2026-05-01T10:30:00+02:00"


def test_it_gives_months(api, house):
    location, _ = house
    fill(location, local("2026-02-27"), local("2026-03-02"))
    rows = api.get(url(location), level="month", **{"from": "2026-02-01", "to": "2026-04-01"}).json()["rows"]
    assert [r["start"] for r in rows] == ["2026-02-01T00:00:00+01:00", "2026-03-01T00:00:00+01:00"]
    assert [r["consumption_wh"] for r in rows] == pytest.approx([2 * 24 * 1200.0, 24 * 1200.0])


def test_it_downloads_the_same_rows_as_csv_with_units_in_the_headers(api, house):
    location, _ = house
    fill(location, local("2026-03-29"), local("2026-03-30"))
    params = {"level": "hour", "from": SPRING_FORWARD, "to": "2026-03-30"}
    response = api.get(url(location, ".csv"), **params)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="history-' in response["Content-Disposition"]
    table = list(csv.reader(io.StringIO(response.content.decode())))
    assert table[0] == [
        "Start (Europe/Brussels)",
        "Consumption [Wh]",
        "Solar [Wh]",
        "Grid import [Wh]",
        "Grid export [Wh]",
        "Battery charge [Wh]",
        "Battery discharge [Wh]",
        "Self-consumption [Wh]",
        "Self-supplied [Wh]",
        "Always-on [W]",
        "Coverage [s]",
    ]
    rows = api.get(url(location), **params).json()["rows"]
    assert len(table) == 1 + len(rows) == 24
    for line, row in zip(table[1:], rows):
        assert line[0] == row["start"]
        assert [float(cell) if cell else None for cell in line[1:]] == [row[key] for key in api_history.KEYS]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"level": "week", "from": "2026-01-01", "to": "2026-01-08"}, "level", "level"),
        ({"level": "day", "from": "yesterday", "to": "2026-01-08"}, "from", "must be a date"),
        ({"level": "day", "from": "2026-01-08", "to": "2026-01-01"}, "to", "later than from"),
        ({"level": "day", "from": "2026-01-08", "to": "2026-01-08"}, "to", "later than from"),
        ({"level": "5min", "from": "2026-01-01", "to": "2026-02-02"}, "to", "at most 31 days"),
        ({"level": "hour", "from": "2025-01-01", "to": "2026-01-03"}, "to", "at most 366 days"),
        ({"level": "day", "from": "1999-12-31", "to": "2000-01-03"}, "from", "between 2000-01-01"),
        ({"level": "day", "from": "2026-01-01", "to": "2999-01-01"}, "to", "between 2000-01-01"),
        ({"level": "day", "to": "2026-01-08"}, "from", "from"),
        ({"level": "day", "from": "2026-01-01" + "0" * 5000, "to": "2026-01-08"}, "from", "at most 32 characters"),
        ({"from": "2026-01-01", "to": "2026-01-08"}, "level", "level"),
    ],
)
def test_it_refuses_a_request_it_cannot_answer_with_400_and_the_reason(api, house, params, field, message):
    location, _ = house
    for suffix in ("", ".csv"):
        response = api.get(url(location, suffix), **params)
        assert response.status_code == 400, response.content
        assert response.json()["field"] == field
        assert message in response.json()["error"]


def test_it_hides_another_users_history(api, neighbour):
    other, _ = neighbour
    params = {"level": "day", "from": "2026-01-01", "to": "2026-01-02"}
    assert api.get(url(other), **params).status_code == 404
    assert api.get(url(other, ".csv"), **params).status_code == 404

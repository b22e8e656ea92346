"""Usage history benchmark: ``python -m tools.bench_history [--runs 15] [--postgres]
[--locations 200] [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]``.

Builds a year of demo-like history — every 5-minute bucket of 2024 in Europe/Brussels, a leap
year: 105,408 buckets — for one location in a throwaway SQLite database (a temporary
``VAR_DIR``), and with ``--postgres`` for ``--locations`` locations in a throwaway PostgreSQL
database (``bench_history``, created on the server of ``--postgres-url`` and dropped at the end).
Buckets are inserted in bulk (executemany on SQLite, COPY on PostgreSQL), then the rollups are
rebuilt (:func:`metering.rollups.rebuild`; on PostgreSQL the first location's, copied to the
others, which have the same history).

Then, through the Django test client as a signed-in owner, it times the usage card's partial
(``/locations/<id>/`` with ``HX-Target: card-usage``) and its CSV for the day, week, month and
year periods containing 31 March 2024 (the spring daylight-saving day), ``--runs`` times each
after two warm-up requests: first the old 5-minute path (``usage_table(..., use_rollups=False)``,
the baseline), then the rollups. It prints the median and p95 of each next to the 150 ms
target, checks from the CSVs that both DST days' totals equal the sums of their hours (week
view) and of their 5-minute rows (day view), and times ``write_bucket`` with and without its
rollup update on the loaded database.

Each database runs in its own child process (Django's settings are per process). Loopback
only, bounded by ``--runs``; about a minute on SQLite, several on PostgreSQL with 200 locations.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np

TARGET_MS = 150.0
ZONE = ZoneInfo("Europe/Brussels")
YEAR = 2024
DAY = date(2024, 3, 31)  # spring forward: 23 hours
AUTUMN_DAY = date(2024, 10, 27)  # fall back: 25 hours
PERIODS = ("day", "week", "month", "year")
BENCH_DB = "bench_history"


def demo_year() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """UTC bucket starts of local 2024 and each bucket's flows (Wh): the demo house's day-night
    profile (tests/dashboard/demo.py) with solar, a heat pump, a kitchen and an EV charger."""
    import pandas as pd

    start = datetime(YEAR, 1, 1, tzinfo=ZONE).astimezone(UTC)
    end = datetime(YEAR + 1, 1, 1, tzinfo=ZONE).astimezone(UTC)
    utc = pd.date_range(start, end, freq="5min", inclusive="left")
    local = utc.tz_convert(ZONE)
    local_hour = np.asarray(local.hour + local.minute / 60)
    day_of_year = np.asarray(local.day_of_year)
    starts = utc.tz_localize(None).to_numpy().astype("datetime64[us]")
    n = len(starts)
    rng = np.random.default_rng(7)
    season = 0.55 + 0.45 * np.sin(np.pi * (day_of_year - 80) / 183).clip(-1, 1)
    solar_w = np.maximum(np.sin(np.pi * (local_hour - 8) / 9), 0) * 3200 * (0.8 + 0.2 * rng.random(n)) * season
    heat_pump_w = np.where(((6 <= local_hour) & (local_hour < 8)) | ((17 <= local_hour) & (local_hour < 21)), 1400, 300)
    kitchen_w = np.where(
        ((12 <= local_hour) & (local_hour < 13)) | ((18 <= local_hour) & (local_hour < 19.5)), 1800, 60
    )
    ev_w = np.where(local_hour >= 22, 7200, 0)
    consumption_w = 230 + 40 * rng.random(n) + heat_pump_w + kitchen_w + ev_w
    used_w = np.minimum(consumption_w, solar_w)
    hours = 300 / 3600
    flows = {
        "consumption_wh": consumption_w * hours,
        "solar_wh": solar_w * hours,
        "grid_import_wh": (consumption_w - used_w) * hours,
        "grid_export_wh": (solar_w - used_w) * hours,
        "battery_charge_wh": np.zeros(n),
        "battery_discharge_wh": np.zeros(n),
        "self_consumption_wh": used_w * hours,
        "self_supplied_wh": used_w * hours,
        "seconds": np.full(n, 300.0),
    }
    return starts, flows


# ----------------------------------------------------------------------------- parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed requests per period, path and kind")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL (--postgres-url)")
    parser.add_argument("--locations", type=int, default=200, help="locations with a year each on PostgreSQL")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 200 or not 1 <= args.locations <= 1000:
        parser.error("--runs must be 1..200 and --locations 1..1000")
    if args.backend:
        return run_backend(args)
    backends = ["sqlite", *(["postgres"] if args.postgres else [])]
    status = 0
    for backend in backends:
        command = [sys.executable, "-m", "tools.bench_history", "--backend", backend, "--runs", str(args.runs)]
        command += ["--locations", str(args.locations), "--postgres-url", args.postgres_url]
        status |= subprocess.run(command, timeout=3600).returncode
    return status


# ----------------------------------------------------------------------------- child


def run_backend(args) -> int:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings_test"
    for name in ("REDIS_URL", "MQTT_URL"):
        os.environ.pop(name, None)
    workdir = tempfile.TemporaryDirectory(prefix="bench-history-")
    os.environ["VAR_DIR"] = workdir.name
    if args.backend == "sqlite":
        os.environ.pop("DATABASE_URL", None)
        locations = 1
    else:
        server = args.postgres_url.rsplit("/", 1)[0]
        _admin(args.postgres_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)", f"CREATE DATABASE {BENCH_DB}")
        os.environ["DATABASE_URL"] = f"{server}/{BENCH_DB}"
        locations = args.locations
    try:
        return _run(args.backend, locations, args.runs)
    finally:
        if args.backend == "postgres":
            from django.db import connections

            connections.close_all()
            _admin(args.postgres_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        workdir.cleanup()


def _admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _run(backend: str, count: int, runs: int) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    print(f"\n== {backend}: {count} location(s) with a year of history each ({connection.vendor})", flush=True)
    began = time.perf_counter()
    owner, locations = _make_locations(count)
    starts, flows = demo_year()
    timings = _load(locations, starts, flows)
    total = time.perf_counter() - began
    print(
        f"generated {count * len(starts):,} buckets in {timings['buckets']:.1f} s, rollups in "
        f"{timings['rollups']:.1f} s (rebuild of one location {timings['rebuild']:.2f} s); {total:.1f} s in all",
        flush=True,
    )
    location = locations[len(locations) // 2]
    failures = _time_periods(owner, location, runs)
    failures += _check_dst_days(owner, location)
    _time_write_bucket(location)
    return 1 if failures else 0


def _make_locations(count: int):
    from django.contrib.auth.models import User

    from devices.models import Load
    from tools.fixtures import make_location

    owner = User.objects.create_user("bench-owner", password="x")
    locations = []
    for index in range(count):
        location, _ = make_location(name=f"House {index}", serial_prefix=f"B{index}", members={owner: "owner"})
        Load.objects.create(location=location, name="Solar", kind="solar", position=2)
        locations.append(location)
    return owner, locations


def _load(locations, starts: np.ndarray, flows: dict[str, np.ndarray]) -> dict[str, float]:
    from django.db import connection, transaction

    from metering import rollups
    from metering.models import FLOWS, LocationEnergy, LocationEnergyDay, LocationEnergyHour, LocationEnergyMonth

    fields = (*FLOWS, "seconds")  # LocationEnergy's columns written here
    table = LocationEnergy._meta.db_table
    columns = ", ".join(("location_id", "start", *fields))
    timings = {}
    began = time.perf_counter()
    if connection.vendor == "sqlite":
        texts = np.datetime_as_string(starts, unit="s")
        rows = [
            (locations[0].pk, text.replace("T", " "), *values)
            for text, *values in zip(texts, *(flows[c].tolist() for c in fields))
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            placeholders = ", ".join(["%s"] * (2 + len(fields)))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", rows)
    else:
        texts = np.char.add(np.datetime_as_string(starts, unit="s"), "+00")
        lines = ["\t".join(parts) for parts in zip(texts, *(np.char.mod("%.17g", flows[c]) for c in fields))]
        body = ("\n".join(lines) + "\n").encode()
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg's own cursor: COPY
            for location in locations:
                prefix = f"{location.pk}\t".encode()
                data = prefix + body[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
                with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    copy.write(data)
            cursor.execute(f"ANALYZE {table}")
    timings["buckets"] = time.perf_counter() - began

    began = time.perf_counter()
    rollups.rebuild(locations[0])
    timings["rebuild"] = time.perf_counter() - began
    if len(locations) > 1:
        ids = ", ".join(str(location.pk) for location in locations[1:])
        with transaction.atomic(), connection.cursor() as cursor:
            for model, key in (
                (LocationEnergyHour, "start"),
                (LocationEnergyDay, "day"),
                (LocationEnergyMonth, "month"),
            ):
                names = ", ".join((key, *fields, "buckets", "always_on_w"))
                cursor.execute(
                    f"INSERT INTO {model._meta.db_table} (location_id, {names}) "
                    f"SELECT other.id, {names} FROM {model._meta.db_table} "
                    f"CROSS JOIN (SELECT id FROM devices_location WHERE id IN ({ids})) AS other "
                    f"WHERE location_id = %s",
                    [locations[0].pk],
                )
                cursor.execute(f"ANALYZE {model._meta.db_table}")
    timings["rollups"] = time.perf_counter() - began
    return timings


def _client(owner):
    from django.test import Client

    client = Client()
    client.force_login(owner)
    return client


def _get(client, location, period: str, kind: str, day: date = DAY):
    params = {"period": period, "date": day.isoformat()}
    if kind == "card":
        response = client.get(f"/locations/{location.pk}/", params, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="card-usage")
    else:
        response = client.get(f"/locations/{location.pk}/usage.csv", params)
    if response.status_code != 200:
        raise RuntimeError(f"{kind} {period}: HTTP {response.status_code}")
    return response


def _time_periods(owner, location, runs: int) -> int:
    import functools

    from dashboard import usage

    client = _client(owner)
    rollup_table = usage.usage_table
    results = {}
    for path, table in (("5-min buckets", functools.partial(rollup_table, use_rollups=False)), ("rollups", None)):
        usage.usage_table = table or rollup_table
        try:
            for period in PERIODS:
                for kind in ("card", "csv"):
                    for _ in range(2):
                        _get(client, location, period, kind)
                    times = []
                    for _ in range(runs):
                        began = time.perf_counter()
                        _get(client, location, period, kind)
                        times.append((time.perf_counter() - began) * 1000)
                    results[path, period, kind] = (float(np.median(times)), float(np.percentile(times, 95)))
        finally:
            usage.usage_table = rollup_table
    print(f"\nusage card partial and CSV, {runs} runs each, milliseconds (target ≤ {TARGET_MS:.0f} ms)")
    print(f"{'period':<7}{'kind':<6}{'before: median':>16}{'p95':>8}{'after: median':>16}{'p95':>8}   target")
    failures = 0
    for period in PERIODS:
        for kind in ("card", "csv"):
            before, after = results["5-min buckets", period, kind], results["rollups", period, kind]
            ok = after[1] <= TARGET_MS
            failures += not ok
            print(
                f"{period:<7}{kind:<6}{before[0]:>16.1f}{before[1]:>8.1f}{after[0]:>16.1f}{after[1]:>8.1f}   "
                f"≤ {TARGET_MS:.0f} {'ok' if ok else 'MISSED'}"
            )
    return failures


def _csv(client, location, period: str, day: date) -> list[list[str]]:
    return list(csv.reader(io.StringIO(_get(client, location, period, "csv", day).content.decode())))


def _check_dst_days(owner, location) -> int:
    """Each DST day's consumption (month view) = its hours (week view) = its 5-minute rows (day)."""
    client = _client(owner)
    failures = 0
    for day, hours_expected in ((DAY, 23), (AUTUMN_DAY, 25)):
        month = {row[0][:10]: float(row[1]) for row in _csv(client, location, "month", day)[1:] if row[1]}
        hours = [float(row[1]) for row in _csv(client, location, "week", day)[1:] if row[0][:10] == day.isoformat()]
        fives = [float(row[1]) for row in _csv(client, location, "day", day)[1:]]
        day_kwh = month[day.isoformat()]
        five_kwh = sum(fives) * 5 / 60  # average kW over 5 minutes
        ok = (
            len(hours) == hours_expected
            and len(fives) == hours_expected * 12
            and abs(sum(hours) - day_kwh) <= 0.0005 * len(hours) + 1e-9
            and abs(five_kwh - day_kwh) <= 0.0005 * len(fives) * 5 / 60 + 1e-9
        )
        failures += not ok
        print(
            f"DST check {day}: {len(hours)} hour rows sum to {sum(hours):.3f} kWh, {len(fives)} 5-minute rows to "
            f"{five_kwh:.3f} kWh, the month view's day {day_kwh:.3f} kWh: {'ok' if ok else 'MISMATCH'}"
        )
    return failures


def _time_write_bucket(location) -> None:
    """write_bucket's cost per call with and without the rollup update, on the loaded database."""
    from types import SimpleNamespace

    from django.db import transaction

    from metering import rollups
    from metering.ingest import process

    setup = SimpleNamespace(location_id=location.pk, timezone=location.timezone, load_ids={}, inputs={})
    first = datetime(YEAR, 6, 1, 12, tzinfo=UTC).timestamp()
    figures = {}
    update, lock = rollups.update_after_write, rollups.lock
    for label, patched in (("without rollups", True), ("with rollups", False)):
        if patched:
            rollups.update_after_write, rollups.lock = (lambda *a, **k: None), (lambda *a, **k: None)
        try:
            times = []
            for k in range(200):
                bucket = {"start": first + 300 * (k % 24), "location": {"consumption_wh": 1.0, "seconds": 30.0}}
                began = time.perf_counter()
                with transaction.atomic():
                    process.write_bucket(setup, bucket)
                times.append((time.perf_counter() - began) * 1000)
            figures[label] = (float(np.median(times)), float(np.percentile(times, 95)))
        finally:
            rollups.update_after_write, rollups.lock = update, lock
    print(
        "write_bucket (own transaction, one location bucket): "
        + "; ".join(f"{label} median {m:.2f} ms, p95 {p:.2f} ms" for label, (m, p) in figures.items())
    )


if __name__ == "__main__":
    sys.exit(main())

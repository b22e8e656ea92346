"""Energy history: 5-minute buckets in the database, resampled with pandas in the location's
time zone (so a daylight-saving day has 23 or 25 hours and its totals still add up).

This is the reference; the usage card reads the hour, day and month rollups that
:mod:`metering.rollups` keeps of the same buckets (docs/history.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from devices.models import DigitalInput, Load, Location
from metering import rollups
from metering.core import flow_totals
from metering.models import BUCKET, FLOWS, MIN_SECONDS_FOR_POWER, InputCount, LoadEnergy, LocationEnergy

# Resolution names → pandas offsets, applied on a local-time index.
RESOLUTIONS = {"5min": "5min", "hour": "h", "day": "D", "month": "MS", "quarter": "QS"}


def location_buckets(location: Location, start: datetime, end: datetime) -> pd.DataFrame:
    """The location's 5-minute buckets in [start, end), indexed by local start time."""
    rows = LocationEnergy.objects.filter(location=location, start__gte=start, start__lt=end).values(
        "start", *FLOWS, "seconds"
    )
    frame = pd.DataFrame.from_records(list(rows), columns=["start", *FLOWS, "seconds"])
    index = pd.DatetimeIndex(pd.to_datetime(frame.pop("start"), utc=True), name="start")
    frame.index = index.tz_convert(location.timezone)
    return frame.astype(float)


def resample(buckets: pd.DataFrame, resolution: str) -> pd.DataFrame:
    """Sum energy per period of ``resolution`` in the index's (local) time zone.

    Adds ``always_on_w``: the lowest 5-minute average consumption power seen in the period.
    """
    try:
        rule = RESOLUTIONS[resolution]
    except KeyError:
        raise ValueError(f"unknown resolution {resolution!r}; use one of {', '.join(RESOLUTIONS)}") from None
    sums = buckets[list(FLOWS)].resample(rule).sum()
    sums["always_on_w"] = consumption_power_w(buckets).resample(rule).min()
    return sums


def consumption_power_w(buckets: pd.DataFrame) -> pd.Series:
    """Average consumption power of each well-covered bucket (W); partial buckets are left out."""
    covered = buckets[buckets["seconds"] >= MIN_SECONDS_FOR_POWER]
    return covered["consumption_wh"] / (covered["seconds"] / 3600)


def series(location: Location, start: datetime, end: datetime, resolution: str) -> pd.DataFrame:
    return resample(location_buckets(location, start, end), resolution)


@dataclass(frozen=True)
class Summary:
    consumption_wh: float
    solar_wh: float
    grid_import_wh: float
    grid_export_wh: float
    self_consumption: float | None  # share of solar used on site
    self_sufficiency: float | None  # share of consumption not drawn from the grid
    always_on_w: float | None


def summarise(buckets: pd.DataFrame) -> Summary:
    power = consumption_power_w(buckets)
    return summary_of(buckets[list(FLOWS)].sum(), power.min() if len(power) else None)


def summary_of(total: pd.Series, always_on_w: float | None) -> Summary:
    """The summary of a period from its flow totals and its lowest well-covered power."""
    solar, consumption = float(total["solar_wh"]), float(total["consumption_wh"])
    return Summary(
        consumption_wh=consumption,
        solar_wh=solar,
        grid_import_wh=float(total["grid_import_wh"]),
        grid_export_wh=float(total["grid_export_wh"]),
        self_consumption=float(total["self_consumption_wh"]) / solar if solar > 0 else None,
        self_sufficiency=float(total["self_supplied_wh"]) / consumption if consumption > 0 else None,
        always_on_w=None if always_on_w is None or pd.isna(always_on_w) else float(always_on_w),
    )


# ----------------------------------------------------------------------------- backfill

BackfillRow = tuple[datetime, dict[str, float], dict[str, int]]


def backfill(
    location: Location,
    rows: Iterable[BackfillRow],
    progress: Callable[[int], None] | None = None,
    batch: int = 2000,
) -> int:
    """Write simulated history: per 5-minute bucket the mean power of each load (W) and the
    pulses of each input. Replaces existing buckets at the same starts and rebuilds the
    rollups of the months written (:func:`metering.rollups.rebuild`). Returns buckets written.
    """
    loads = {load.name: load for load in Load.objects.filter(location=location)}
    inputs = {di.ref: di for di in DigitalInput.objects.filter(module__location=location).select_related("module")}
    hours = BUCKET.total_seconds() / 3600
    location_rows: list[LocationEnergy] = []
    load_rows: list[LoadEnergy] = []
    input_rows: list[InputCount] = []
    written = 0
    first: datetime | None = None
    last: datetime | None = None

    def flush() -> None:
        LocationEnergy.objects.bulk_create(
            location_rows, update_conflicts=True, unique_fields=["location", "start"], update_fields=[*FLOWS, "seconds"]
        )
        LoadEnergy.objects.bulk_create(
            load_rows, update_conflicts=True, unique_fields=["load", "start"], update_fields=["import_wh", "export_wh"]
        )
        InputCount.objects.bulk_create(
            input_rows, update_conflicts=True, unique_fields=["input", "start"], update_fields=["pulses"]
        )
        location_rows.clear(), load_rows.clear(), input_rows.clear()

    for start, power_w, pulses in rows:
        start = start.astimezone(UTC)
        first = start if first is None or start < first else first
        last = start if last is None or start > last else last
        kinds = {name: loads[name].kind for name in power_w if name in loads}
        flows = flow_totals({name: power_w[name] for name in kinds}, kinds)
        location_rows.append(
            LocationEnergy(
                location=location,
                start=start,
                seconds=BUCKET.total_seconds(),
                consumption_wh=flows["consumption_w"] * hours,
                solar_wh=max(flows["solar_w"], 0.0) * hours,
                grid_import_wh=flows["grid_import_w"] * hours,
                grid_export_wh=flows["grid_export_w"] * hours,
                battery_charge_wh=flows["battery_charge_w"] * hours,
                battery_discharge_wh=flows["battery_discharge_w"] * hours,
                self_consumption_wh=flows["self_consumption_w"] * hours,
                self_supplied_wh=flows["self_supplied_w"] * hours,
            )
        )
        for name, p_w in power_w.items():
            if name in loads:
                load_rows.append(
                    LoadEnergy(
                        load=loads[name], start=start, import_wh=max(p_w, 0.0) * hours, export_wh=max(-p_w, 0.0) * hours
                    )
                )
        for ref, count in pulses.items():
            if ref in inputs and count:
                input_rows.append(InputCount(input=inputs[ref], start=start, pulses=int(count)))
        written += 1
        if len(location_rows) >= batch:
            flush()
            if progress:
                progress(written)
    flush()
    if first is not None:
        rollups.rebuild(location, first, last + BUCKET)
    if progress:
        progress(written)
    return written

"""Stored metering state: per Power Box ingest state with its energy registers, and history.

Energy registers live on the Power Box's state row and are written in the same transaction
that records a frame's ``seq``, so a restart neither resets them nor counts a frame twice.
History is kept in 5-minute buckets (UTC starts), rolled up into hours, days and months of the
location's local time as the buckets are written (:mod:`metering.rollups`), so long periods read
a few rows; :mod:`metering.history` resamples buckets with pandas as the reference.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models

from devices.models import DigitalInput, Load, Location, PowerBox


class PowerBoxState(models.Model):
    powerbox = models.OneToOneField(PowerBox, on_delete=models.CASCADE, related_name="state")
    last_seq = models.BigIntegerField(null=True, blank=True)
    last_t = models.FloatField(null=True, blank=True, help_text="Unix time of the first sample of the newest frame.")
    last_end_t = models.FloatField(
        null=True, blank=True, help_text="Unix time just after the newest frame's last sample."
    )
    # Bit k set = frame (last_seq - 1 - k) was received; lets late frames in, duplicates out.
    seen_window = models.TextField(default="0", blank=True)
    frames = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    gaps = models.BigIntegerField(default=0)
    # {"ct": {ref: [import_wh, export_wh]}, "load": {name: [import_wh, export_wh]}}
    registers = models.JSONField(default=dict, blank=True)
    # {ref: {"state": 0|1, "pulses": n, "t": unix, "since": unix}}
    inputs = models.JSONField(default=dict, blank=True)
    # Energy of the current 5-minute bucket not yet written to the bucket tables.
    pending_bucket = models.JSONField(default=dict, blank=True)
    offline_reported = models.BooleanField(default=False)
    # Configured CT modules absent from the newest frame (diagnosed once per absence).
    missing_modules = models.JSONField(default=list, blank=True)
    # The numbering before the last restart of seq ({"last_seq", "seen", "last_t", "last_end_t",
    # "jumped_to"}): frames that go on from it after one outlier seq take it back (docs/ingest.md).
    previous_numbering = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "Power Box ingest state"

    def __str__(self) -> str:
        return f"state of {self.powerbox}"


# History is kept in buckets of this length (metering.history, metering.rollups).
BUCKET = timedelta(minutes=5)
# A bucket with less data than this (the one being filled, or one cut by a gap) says little
# about the lowest power of the house.
MIN_SECONDS_FOR_POWER = 0.8 * BUCKET.total_seconds()
# LocationEnergy's energy columns, one per flow.
FLOWS = (
    "consumption_wh",
    "solar_wh",
    "grid_import_wh",
    "grid_export_wh",
    "battery_charge_wh",
    "battery_discharge_wh",
    "self_consumption_wh",
    "self_supplied_wh",
)


class LocationEnergy(models.Model):
    """Totals of one location over one 5-minute bucket, by flow."""

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="energy")
    start = models.DateTimeField(help_text="UTC start of the 5-minute bucket")
    consumption_wh = models.FloatField(default=0.0)
    solar_wh = models.FloatField(default=0.0)
    grid_import_wh = models.FloatField(default=0.0)
    grid_export_wh = models.FloatField(default=0.0)
    battery_charge_wh = models.FloatField(default=0.0)
    battery_discharge_wh = models.FloatField(default=0.0)
    self_consumption_wh = models.FloatField(default=0.0, help_text="Solar energy used on site")
    self_supplied_wh = models.FloatField(default=0.0, help_text="Consumption not drawn from the grid")
    seconds = models.FloatField(default=0.0, help_text="Seconds of samples behind these figures")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["location", "start"], name="one_energy_bucket_per_location")]
        ordering = ["start"]


class EnergyRollup(models.Model):
    """Totals of a location's 5-minute buckets over a period of its local time (hour, day, month).

    Kept by :mod:`metering.rollups`: recomputed from the level below whenever a bucket is
    written, rebuilt from the buckets by ``manage.py rebuild_rollups``.
    """

    consumption_wh = models.FloatField(default=0.0)
    solar_wh = models.FloatField(default=0.0)
    grid_import_wh = models.FloatField(default=0.0)
    grid_export_wh = models.FloatField(default=0.0)
    battery_charge_wh = models.FloatField(default=0.0)
    battery_discharge_wh = models.FloatField(default=0.0)
    self_consumption_wh = models.FloatField(default=0.0)
    self_supplied_wh = models.FloatField(default=0.0)
    seconds = models.FloatField(default=0.0, help_text="Seconds of samples behind these figures")
    buckets = models.IntegerField(default=0, help_text="Stored 5-minute buckets in the period")
    always_on_w = models.FloatField(
        null=True, blank=True, help_text="Lowest average consumption power of a well-covered 5-minute bucket"
    )

    class Meta:
        abstract = True


class LocationEnergyHour(EnergyRollup):
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="energy_hours")
    start = models.DateTimeField(help_text="UTC instant at which the local hour starts")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["location", "start"], name="one_energy_hour_per_location")]
        ordering = ["start"]


class LocationEnergyDay(EnergyRollup):
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="energy_days")
    day = models.DateField(help_text="Local date")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["location", "day"], name="one_energy_day_per_location")]
        ordering = ["day"]


class LocationEnergyMonth(EnergyRollup):
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="energy_months")
    month = models.DateField(help_text="First local date of the month")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["location", "month"], name="one_energy_month_per_location")]
        ordering = ["month"]


class LoadEnergy(models.Model):
    load = models.ForeignKey(Load, on_delete=models.CASCADE, related_name="energy")
    start = models.DateTimeField()
    import_wh = models.FloatField(default=0.0)
    export_wh = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["load", "start"], name="one_energy_bucket_per_load")]
        ordering = ["start"]


class InputCount(models.Model):
    input = models.ForeignKey(DigitalInput, on_delete=models.CASCADE, related_name="counts")
    start = models.DateTimeField()
    pulses = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["input", "start"], name="one_count_bucket_per_input")]
        ordering = ["start"]


class RelayCommand(models.Model):
    """A switch request for a relay. The relay's state changes only when the device acknowledges."""

    PENDING, DONE, FAILED = "pending", "done", "failed"

    relay = models.ForeignKey("devices.Relay", on_delete=models.CASCADE, related_name="commands")
    on = models.BooleanField()
    until = models.DateTimeField(null=True, blank=True, help_text="Switch off again at this time")
    requested_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="relay_commands"
    )
    # The automation that asked (metering.automations); None: a person (dashboard, API, integration).
    automation = models.ForeignKey(
        "metering.Automation", null=True, blank=True, on_delete=models.SET_NULL, related_name="commands"
    )
    # Kept when that automation is deleted: its switches never count as switches by hand.
    by_automation = models.BooleanField(default=False, editable=False)
    requested_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, default=PENDING)

    class Meta:
        ordering = ["-requested_at", "-pk"]

    def as_message(self) -> dict:
        return {
            "type": "command",
            "id": str(self.pk),
            "relay": self.relay.ref,
            "on": self.on,
            "until": self.until.timestamp() if self.until else None,
        }


# Automations are models of this app, kept in their own package.
from metering.automations.models import Automation, AutomationState  # noqa: E402

__all__ = [
    "Automation",
    "AutomationState",
    "EnergyRollup",
    "InputCount",
    "LoadEnergy",
    "LocationEnergy",
    "LocationEnergyDay",
    "LocationEnergyHour",
    "LocationEnergyMonth",
    "PowerBoxState",
    "RelayCommand",
]

"""Stored metering state: per Power Box ingest state with its energy registers, and history.

Energy registers live on the Power Box's state row and are written in the same transaction
that records a frame's ``seq``, so a restart neither resets them nor counts a frame twice.
History is kept in 5-minute buckets (UTC starts); coarser series are resampled with pandas
in the location's time zone (:mod:`metering.history`).
"""

from __future__ import annotations

from django.db import models

from devices.models import DigitalInput, Load, Location, PowerBox


class PowerBoxState(models.Model):
    powerbox = models.OneToOneField(PowerBox, on_delete=models.CASCADE, related_name="state")
    last_seq = models.BigIntegerField(null=True, blank=True)
    last_t = models.FloatField(null=True, blank=True, help_text="Unix time of the first sample of the newest frame.")
    last_end_t = models.FloatField(null=True, blank=True, help_text="Unix time just after the newest frame's last sample.")
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

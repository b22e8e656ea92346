"""Automations of a location: "when <quantity> is above/below <value> for <duration>, switch <relay>
on or off", and the state each keeps between frames.

Every bound and cross-field rule is in :meth:`Automation.clean` (with the field validators), so
the page's form (:class:`metering.automations.forms.AutomationForm`) and any API that calls
``full_clean()`` refuse the same input with the same messages. The evaluation itself is pure
(:mod:`metering.automations.evaluation`); :meth:`Automation.rule` turns a row into its input.
"""

from __future__ import annotations

from datetime import time as clock_time

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from devices.models import DigitalInput, Load, Location, Relay
from metering.automations.evaluation import NEEDS_INPUT, NEEDS_LOAD, QUANTITIES, Rule, RuleState, format_value

# Bounds of what an automation may say (CTs go up to 10,000 A; 1 MW is far beyond a house).
POWER_LIMIT_W = 1_000_000.0
CURRENT_LIMIT_A = 10_000.0
RATE_LIMIT_PER_H = 1_000_000.0
DURATION_LIMIT_S = 24 * 3600
MINUTES_LIMIT = 24 * 60

QUANTITY_CHOICES = [
    ("grid_export", "Grid export (W)"),
    ("grid_import", "Grid import (W)"),
    ("load_power", "A load's power (W)"),
    ("grid_current", "Grid current on any phase (A)"),
    ("input_state", "An input's state (0 open / 1 closed)"),
    ("input_rate", "An input's rate (its unit per hour)"),
    ("clock", "The clock only (within the hours)"),
]
assert {key for key, _ in QUANTITY_CHOICES} == set(QUANTITIES)

# quantity -> (lowest, highest) value a threshold may take, in the quantity's unit.
THRESHOLD_BOUNDS = {
    "grid_export": (0.0, POWER_LIMIT_W),
    "grid_import": (0.0, POWER_LIMIT_W),
    "load_power": (-POWER_LIMIT_W, POWER_LIMIT_W),
    "grid_current": (0.0, CURRENT_LIMIT_A),
    "input_state": (0.0, 1.0),
    "input_rate": (0.0, RATE_LIMIT_PER_H),
    "clock": (0.0, 0.0),
}


class Automation(models.Model):
    ABOVE, BELOW = "above", "below"
    ON, OFF = "on", "off"

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="automations")
    name = models.CharField(max_length=80)
    enabled = models.BooleanField(default=True)
    template = models.CharField(max_length=24, blank=True, help_text="The ready-made template it started from.")

    quantity = models.CharField("when", max_length=16, choices=QUANTITY_CHOICES, default="grid_export")
    load = models.ForeignKey(
        Load, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="For a load's power."
    )
    input = models.ForeignKey(
        DigitalInput,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="For an input's state or rate.",
    )
    direction = models.CharField("is", max_length=5, choices=[(ABOVE, "above"), (BELOW, "below")], default=ABOVE)
    threshold = models.FloatField(
        "threshold", default=0.0, help_text="In the quantity's unit: W, A, or the input's unit per hour."
    )
    release = models.FloatField(
        "release threshold",
        null=True,
        blank=True,
        help_text="Hysteresis: the rule ends only past this value (at or below the threshold for 'above', "
        "at or above it for 'below'). Empty: the threshold itself.",
    )
    duration_s = models.PositiveIntegerField(
        "for (s)",
        default=0,
        validators=[MaxValueValidator(DURATION_LIMIT_S)],
        help_text="How long the condition, and its end, must last, in seconds.",
    )
    hours_from = models.TimeField("only from", null=True, blank=True, help_text="Local time of the location.")
    hours_until = models.TimeField("until", null=True, blank=True, help_text="Local time; may be past midnight.")

    relay = models.ForeignKey(Relay, on_delete=models.CASCADE, related_name="automations")
    action = models.CharField("switch", max_length=3, choices=[(ON, "on"), (OFF, "off")], default=ON)
    # The lengths the Output module supports (metering.relays.TIMED_MINUTES) are the form's choices.
    on_minutes = models.PositiveSmallIntegerField(
        "for (min)",
        null=True,
        blank=True,
        help_text="Switch on for this long only (a timed switch-on the Output module supports); empty: until "
        "switched off.",
    )
    revert = models.BooleanField("switch back when the condition ends", default=False)
    min_on_minutes = models.PositiveIntegerField(
        "minimum on time (min)", default=0, validators=[MaxValueValidator(MINUTES_LIMIT)]
    )
    min_off_minutes = models.PositiveIntegerField(
        "minimum off time (min)", default=0, validators=[MaxValueValidator(MINUTES_LIMIT)]
    )
    may_override_manual = models.BooleanField(
        "may override a manual switch",
        default=False,
        help_text="Otherwise it leaves a relay alone that someone switched by hand within the window.",
    )
    manual_window_minutes = models.PositiveIntegerField(
        "manual switch window (min)",
        default=60,
        validators=[MinValueValidator(0), MaxValueValidator(MINUTES_LIMIT)],
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["location", "name"], name="automation_names_unique_per_location")
        ]

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------------------ validation

    def clean(self) -> None:
        super().clean()
        errors: dict[str, list[str]] = {}

        def refuse(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        location_id = self.location_id
        if self.relay_id is not None and location_id is not None:
            if self.relay.module.location_id != location_id:
                refuse("relay", "Choose a relay of this location's Output modules.")
        if self.quantity in NEEDS_LOAD:
            if self.load_id is None:
                refuse("load", "Choose the load whose power is watched.")
            elif self.load.location_id != location_id:
                refuse("load", "Choose a load of this location.")
        elif self.load_id is not None:
            self.load = None  # only a load's power names a load
        if self.quantity in NEEDS_INPUT:
            if self.input_id is None:
                refuse("input", "Choose the input that is watched.")
            elif self.input.module.location_id != location_id:
                refuse("input", "Choose an input of this location's Input modules.")
            elif self.quantity == "input_rate" and self.input.mode != "pulse":
                refuse("input", "Only a pulse-counting input has a rate; this one reports a state.")
        elif self.input_id is not None:
            self.input = None

        if self.quantity == "input_state":
            self.threshold, self.release = 0.5, None  # above: closed (1), below: open (0)
        elif self.quantity == "clock":
            self.threshold, self.release, self.direction = 0.0, None, self.ABOVE
            if self.hours_from is None or self.hours_until is None:
                refuse("hours_from", "The clock alone needs the hours: fill in 'only from' and 'until'.")
        else:
            self._check_thresholds(refuse)

        if (self.hours_from is None) != (self.hours_until is None):
            refuse("hours_until" if self.hours_until is None else "hours_from", "Give both hours, or neither.")
        elif self.hours_from is not None and self.hours_from == self.hours_until:
            refuse("hours_until", "'Until' must differ from 'only from' (leave both empty for any hour).")
        if self.on_minutes is not None and self.action != self.ON:
            refuse("on_minutes", "A timed switch is only for switching on.")
        if errors:
            raise ValidationError(errors)

    def _check_thresholds(self, refuse) -> None:
        low, high = THRESHOLD_BOUNDS[self.quantity]
        unit = self.unit
        for field, value in (("threshold", self.threshold), ("release", self.release)):
            if value is None:
                continue
            if value != value or not low <= value <= high:  # NaN included
                refuse(field, f"Give a value from {low:,.0f} to {high:,.0f} {unit}.")
        if self.release is None or self.threshold is None:
            return
        if self.direction == self.ABOVE and self.release > self.threshold:
            refuse(
                "release", f"For 'above', the release must be at or below the threshold ({self.threshold:g} {unit})."
            )
        if self.direction == self.BELOW and self.release < self.threshold:
            refuse(
                "release", f"For 'below', the release must be at or above the threshold ({self.threshold:g} {unit})."
            )

    # ------------------------------------------------------------------------ reading

    @property
    def unit(self) -> str:
        return self.rule().unit

    def rule(self, timezone: str | None = None) -> Rule:
        """The pure rule :func:`metering.automations.evaluation.evaluate` runs."""
        hours: tuple[clock_time, clock_time] | None = None
        if self.hours_from is not None and self.hours_until is not None:
            hours = (self.hours_from, self.hours_until)
        subject, subject_unit = "", ""
        if self.quantity in NEEDS_LOAD and self.load is not None:
            subject = self.load.name
        if self.quantity in NEEDS_INPUT and self.input is not None:
            subject, subject_unit = self.input.ref, self.input.unit
        return Rule(
            quantity=self.quantity,
            above=self.direction == self.ABOVE,
            threshold=float(self.threshold or 0.0),
            release=self.release,
            duration_s=float(self.duration_s or 0),
            switch_on=self.action == self.ON,
            revert=self.revert,
            on_minutes=self.on_minutes,
            min_on_s=60.0 * (self.min_on_minutes or 0),
            min_off_s=60.0 * (self.min_off_minutes or 0),
            may_override_manual=self.may_override_manual,
            manual_window_s=60.0 * (self.manual_window_minutes or 0),
            subject=subject,
            subject_unit=subject_unit,
            hours=hours,
            timezone=timezone or self.location.timezone,
        )

    def sentence(self) -> str:
        """The automation in words, with units: "When grid export is above 1,500 W for 300 s, ..."."""
        rule = self.rule()
        parts = []
        if self.quantity == "clock":
            parts.append("Every day")
        else:
            what = rule.label
            if self.quantity == "input_state":
                parts.append(f"When {what} is {'closed (1)' if rule.above else 'open (0)'}")
            else:
                limit = format_value(rule.threshold, rule.unit)
                release = ""
                if self.release is not None and self.release != self.threshold:
                    release = f" (until {'below' if rule.above else 'above'} {format_value(self.release, rule.unit)})"
                parts.append(f"When {what} is {self.direction} {limit}{release}")
            if self.duration_s:
                parts[-1] += f" for {self.duration_s} s"
        if rule.hours:
            parts.append(f"between {rule.hours[0]:%H:%M} and {rule.hours[1]:%H:%M} ({self.location.timezone})")
        timed = f" for {self.on_minutes} min" if self.on_minutes else ""
        parts.append(f"switch {self.relay.name} {self.action}{timed}")
        text = ", ".join(parts)
        if self.revert:
            text += f", and {'off' if self.action == self.ON else 'on'} again when it ends"
        return text + "."


class AutomationState(models.Model):
    """What an automation remembers between frames (:class:`evaluation.RuleState`), in the
    database so that a frame metered by another process carries on from it. Written only when it
    changes (a condition starts or stops holding, a switch is asked for), not on every frame."""

    automation = models.OneToOneField(Automation, on_delete=models.CASCADE, primary_key=True, related_name="state")
    active = models.BooleanField(default=False)
    since = models.FloatField(null=True, blank=True, help_text="Unix time the pending change began to hold.")
    want = models.BooleanField(null=True, blank=True, help_text="Relay state still to reach (on = true).")
    asked_at = models.FloatField(null=True, blank=True, help_text="Unix time it last asked for that state.")
    asks = models.PositiveSmallIntegerField(default=0)
    fired_at = models.FloatField(null=True, blank=True, help_text="Unix time it last asked for a switch.")

    FIELDS = ("active", "since", "want", "asked_at", "asks", "fired_at")

    def as_rule_state(self) -> RuleState:
        return RuleState(**{name: getattr(self, name) for name in self.FIELDS})

    @staticmethod
    def values_of(state: RuleState) -> dict:
        return {name: getattr(state, name) for name in AutomationState.FIELDS}

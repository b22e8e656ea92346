"""The manual's ready-made automations (self-consumption, smart EV charging, overload
protection) as initial values of :class:`metering.automations.forms.AutomationForm`.

A preset only fills the form in: the user checks the relay, the load and the numbers, and saves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time as clock_time

from devices.models import Location, Relay


@dataclass(frozen=True)
class Preset:
    slug: str
    title: str
    summary: str
    values: dict
    relay_words: str = ""  # a relay whose name matches is chosen; else the first relay

    def initial(self, location: Location) -> dict:
        """The form's initial values for ``location`` (its relays decide the default relay)."""
        initial = {"name": self.title, **self.values}
        relay = pick_relay(location, self.relay_words)
        if relay is not None:
            initial["relay"] = relay.pk
        return initial


def pick_relay(location: Location, words: str) -> Relay | None:
    relays = list(Relay.objects.filter(module__location=location).select_related("module"))
    if words:
        pattern = re.compile(words, re.IGNORECASE)
        for relay in relays:
            if pattern.search(relay.name):
                return relay
    return relays[0] if relays else None


PRESETS: dict[str, Preset] = {
    preset.slug: preset
    for preset in (
        Preset(
            "self-consumption",
            "Self-consumption",
            "Switch a load on when the solar surplus (grid export) exceeds a power for a few minutes, "
            "and off again when it falls below.",
            {
                "quantity": "grid_export",
                "direction": "above",
                "threshold": 1500.0,
                "release": 200.0,
                "duration_s": 300,
                "action": "on",
                "revert": True,
                "min_on_minutes": 10,
                "min_off_minutes": 10,
                "manual_window_minutes": 60,
            },
            relay_words=r"boiler|heater|water",
        ),
        Preset(
            "ev-surplus",
            "EV charging on solar surplus",
            "Charge the car only on solar surplus: on when the export exceeds a charger's minimum power "
            "(6 A on three phases is about 4.1 kW; one phase 1.4 kW), off when it is gone.",
            {
                "quantity": "grid_export",
                "direction": "above",
                "threshold": 1400.0,
                "release": 100.0,
                "duration_s": 300,
                "action": "on",
                "revert": True,
                "min_on_minutes": 15,
                "min_off_minutes": 10,
                "manual_window_minutes": 120,
            },
            relay_words=r"\bev\b|car|charg",
        ),
        Preset(
            "ev-off-peak",
            "EV charging in off-peak hours",
            "Charge the car only in off-peak hours, in the location's time zone: on when they start, "
            "off when they end.",
            {
                "quantity": "clock",
                "hours_from": clock_time(22, 0),
                "hours_until": clock_time(7, 0),
                "duration_s": 0,
                "action": "on",
                "revert": True,
                "manual_window_minutes": 120,
            },
            relay_words=r"\bev\b|car|charg",
        ),
        Preset(
            "overload",
            "Overload protection",
            "Switch a load off when the grid current on any phase exceeds the main fuse's limit for "
            "a few seconds. It does not switch it back on by itself, and it overrides a manual switch.",
            {
                "quantity": "grid_current",
                "direction": "above",
                "threshold": 25.0,
                "release": 20.0,
                "duration_s": 10,
                "action": "off",
                "revert": False,
                "may_override_manual": True,
                "manual_window_minutes": 0,
            },
            relay_words=r"\bev\b|car|charg|boiler|heat",
        ),
    )
}

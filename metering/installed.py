"""What ingest needs to know about a location's installation, read once and cached.

Loading the installation touches a dozen tables; ingest needs it for every frame, so each
process keeps it. Any change to an installation bumps a version number in the shared cache
(Redis when configured), which every process compares on each frame (reading it at most once
a second): a change reaches this process at once and every other within a second.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save

from devices import catalogue
from devices.models import (
    CtInput,
    CtModule,
    DigitalInput,
    Gateway,
    InputModule,
    Load,
    LoadCt,
    Location,
    OutputModule,
    PowerBox,
    Relay,
)
from metering.core import CtChannel, MeterConfig

# Kept at most this long even without a change (a safety net for edits that bypass the ORM).
CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class InstalledInput:
    pk: int
    ref: str
    name: str
    mode: str
    unit: str
    pulses_per_unit: float | None


@dataclass(frozen=True)
class Installed:
    location_id: int
    timezone: str
    topology: str
    powerbox_id: int | None
    powerbox_serial: str | None
    gateway_serial: str | None
    meter: MeterConfig
    load_ids: dict[str, int]
    load_kinds: dict[str, str]
    ct_refs: frozenset[str]
    module_serials: frozenset[str]
    inputs: dict[str, InstalledInput] = field(default_factory=dict)
    # The row itself, for pages that render the location's cards after every frame; read only.
    location: Location | None = field(default=None, compare=False, repr=False)

    @property
    def voltage_refs(self) -> tuple[str, ...]:
        return catalogue.TOPOLOGY_VOLTAGES[self.topology]

    def meter_with(self, channels: tuple[CtChannel, ...]) -> MeterConfig:
        """The meter configuration restricted to ``channels`` (a frame lacking some CTs)."""
        return MeterConfig(topology=self.meter.topology, nominal_hz=self.meter.nominal_hz, channels=channels)


_cache: dict[int, tuple[float, int, Installed]] = {}
_lock = threading.Lock()
VERSION_KEY = "installation-version"


# The shared version is read at most this often: with Redis each read is a round trip, and a
# frame needs it several times (token, installation, cards). A change made in this process
# counts at once; one made in another process within this time.
VERSION_READ_EVERY_S = 1.0
_version_read: tuple[float, int] | None = None  # (monotonic time, version) of the last read


def version() -> int:
    """The installation version every process compares its cached copies with."""
    global _version_read
    now = time.monotonic()
    held = _version_read
    if held is not None and now - held[0] < VERSION_READ_EVERY_S:
        return held[1]
    current = cache.get(VERSION_KEY, 0)
    _version_read = (now, current)
    return current


def installed(location_id: int) -> Installed:
    now = time.monotonic()
    current = version()
    hit = _cache.get(location_id)
    if hit and hit[1] == current and now - hit[0] < CACHE_SECONDS:
        return hit[2]
    value = _load(location_id)
    with _lock:
        _cache[location_id] = (now, current, value)
    return value


def forget(location_id: int | None = None) -> None:
    """Drop cached installations here, and make every other process reload at its next frame."""
    with _lock:
        if location_id is None:
            _cache.clear()
        else:
            _cache.pop(location_id, None)
    global _version_read
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # not set yet
        cache.add(VERSION_KEY, 1, timeout=None)
    _version_read = None  # after the change, so no read here can hold the old version


def _load(location_id: int) -> Installed:
    location = Location.objects.get(pk=location_id)
    powerbox = PowerBox.objects.filter(location=location).first()
    gateway = Gateway.objects.filter(location=location).first()
    load_cts = (
        LoadCt.objects.filter(load__location=location)
        .select_related("load", "ct_input__module")
        .order_by("load__position", "load__pk", "position", "pk")
    )
    channels = tuple(
        CtChannel(ct=lc.ct_input.ref, load=lc.load.name, kind=lc.load.kind, phase=lc.phase, reversed=lc.reversed)
        for lc in load_cts
    )
    loads = list(Load.objects.filter(location=location))
    ct_inputs = CtInput.objects.filter(module__powerbox__location=location).select_related("module")
    inputs = {
        di.ref: InstalledInput(di.pk, di.ref, di.name, di.mode, di.unit, di.pulses_per_unit)
        for di in DigitalInput.objects.filter(module__location=location).select_related("module")
    }
    serials = set(CtModule.objects.filter(powerbox__location=location).values_list("serial", flat=True))
    serials |= set(InputModule.objects.filter(location=location).values_list("serial", flat=True))
    serials |= set(OutputModule.objects.filter(location=location).values_list("serial", flat=True))
    return Installed(
        location_id=location.pk,
        timezone=location.timezone,
        topology=location.topology,
        powerbox_id=powerbox.pk if powerbox else None,
        powerbox_serial=powerbox.serial if powerbox else None,
        gateway_serial=gateway.serial if gateway else None,
        meter=MeterConfig(topology=location.topology, nominal_hz=float(location.frequency_hz), channels=channels),
        load_ids={load.name: load.pk for load in loads},
        load_kinds={load.name: load.kind for load in loads},
        ct_refs=frozenset(ci.ref for ci in ct_inputs),
        module_serials=frozenset(serials),
        inputs=inputs,
        location=location,
    )


def _forget_on_change(sender, instance, **kwargs) -> None:
    forget()


for _model in (Location, Gateway, PowerBox, CtModule, CtInput, InputModule, DigitalInput, OutputModule, Relay, Load, LoadCt):
    post_save.connect(_forget_on_change, sender=_model, dispatch_uid=f"installed-forget-save-{_model.__name__}")
    post_delete.connect(_forget_on_change, sender=_model, dispatch_uid=f"installed-forget-delete-{_model.__name__}")

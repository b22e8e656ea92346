"""What ingest needs to know about a location's installation, read once and cached.

Loading the installation touches a dozen tables; ingest needs it for every frame, so each
process keeps it. Any change to an installation bumps a version number in the shared cache
(Redis when configured), which every process compares on each frame (reading it at most once
a second): a change reaches this process at once and every other within a second.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import transaction
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
CACHE_SPREAD_S = 60.0


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


class Kept:
    """Values read from the database and kept in this process, per key, for at most
    ``max_age_s`` and only while no installation changes (:func:`version` stays the same):
    installations here, gateways by token, the cards' daily totals.

    An entry may carry a ``stamp`` (a day, a 5-minute bucket): when the stamp moves on the
    entry is loaded again and replaced, so a key holds one entry however long the process runs.
    ``load()`` returning None is kept only with ``keep_none`` (an unknown token must not be).
    With ``spread_s`` an entry is kept up to that much less, at random: keys loaded together
    (every location's first frame after a restart) then do not all expire in the same second.
    """

    def __init__(self, max_age_s: float, *, keep_none: bool = True, spread_s: float = 0.0) -> None:
        self.max_age_s = max_age_s
        self.keep_none = keep_none
        self.spread_s = spread_s
        self._version: int | None = None
        self._entries: dict[Hashable, tuple[Hashable, float, Any]] = {}  # key -> (stamp, time, value)
        self._lock = threading.Lock()
        _all_kept.add(self)

    def get(self, key: Hashable, load: Callable[[], Any], stamp: Hashable = None) -> Any:
        now, current = time.monotonic(), version()
        with self._lock:
            if current != self._version:
                self._entries.clear()  # an installation changed: anything kept may be stale
                self._version = current
            hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp and now - hit[1] < self.max_age_s:
            return hit[2]
        value = load()
        if value is not None or self.keep_none:
            with self._lock:
                if self._version == current:  # not if a change came in while loading
                    self._entries[key] = (stamp, now - random.uniform(0.0, self.spread_s), value)
        return value

    def peek(self, key: Hashable) -> Any:
        """The value kept for ``key`` if it is still young, else None; no I/O at all (the
        shared version is not read), so safe on an event loop. It may be stale: confirm it."""
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and time.monotonic() - hit[1] < self.max_age_s:
            return hit[2]
        return None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_all_kept: weakref.WeakSet[Kept] = weakref.WeakSet()
_installations = Kept(CACHE_SECONDS, spread_s=CACHE_SPREAD_S)


def installed(location_id: int) -> Installed:
    return _installations.get(location_id, lambda: _load(location_id))


def forget() -> None:
    """Drop everything kept here, and make every other process reload at its next frame."""
    global _version_read
    for kept in list(_all_kept):
        kept.clear()
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
    # Again once the change is committed: what another thread loaded in between read the rows
    # as they were, and would be kept as current (a relay's old state, for automations).
    transaction.on_commit(forget)


for _model in (
    Location,
    Gateway,
    PowerBox,
    CtModule,
    CtInput,
    InputModule,
    DigitalInput,
    OutputModule,
    Relay,
    Load,
    LoadCt,
):
    post_save.connect(_forget_on_change, sender=_model, dispatch_uid=f"installed-forget-save-{_model.__name__}")
    post_delete.connect(_forget_on_change, sender=_model, dispatch_uid=f"installed-forget-delete-{_model.__name__}")

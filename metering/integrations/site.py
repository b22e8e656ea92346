"""What the integrations publish about a location, as plain values (no Django).

:class:`Site` is the location's installation as the outside world sees it: its stable ids
(the location's UUID, relay ids), its loads and their CTs in publishing order, its inputs and
relays. :mod:`metering.integrations.publisher` builds it from the database; the payload
builders (:mod:`.smappee`, :mod:`.homeassistant`) take it with the live values (SPEC 5.3) and
the stored energy registers, and return topics and payloads.
"""

from __future__ import annotations

from dataclasses import dataclass

# The letters of a CT module's inputs, in bus order (inputIndex 0, 1, ...).
INPUT_LETTERS = "ABCD"
PHASE_INDEX = {"L1": 0, "L2": 1, "L3": 2}


@dataclass(frozen=True)
class Channel:
    """One CT of a load, with its place in the published channel lists."""

    publish_index: int
    load: str
    kind: str
    ct: str  # "<module serial>/<letter>"
    ct_type: str
    phase: str  # L1, L2, L3
    reversed: bool = False

    @property
    def module_serial(self) -> str:
        return self.ct.rsplit("/", 1)[0]

    @property
    def input_index(self) -> int:
        return INPUT_LETTERS.index(self.ct.rsplit("/", 1)[1])


@dataclass(frozen=True)
class SiteLoad:
    pk: int
    name: str
    kind: str


@dataclass(frozen=True)
class SiteInput:
    pk: int
    ref: str
    name: str
    mode: str  # "pulse" or "status"
    unit: str = ""


@dataclass(frozen=True)
class SiteRelay:
    pk: int
    ref: str
    name: str
    is_on: bool = False
    changed_at_ms: int | None = None


@dataclass(frozen=True)
class Site:
    location_id: int
    uuid: str
    name: str
    timezone: str
    topology: str
    gateway_serial: str
    gateway_model: str = "Infinity Genius (MOD-GW-1)"  # the gateway's model, in words
    loads: tuple[SiteLoad, ...] = ()
    channels: tuple[Channel, ...] = ()
    inputs: tuple[SiteInput, ...] = ()
    relays: tuple[SiteRelay, ...] = ()
    voltage_phases: tuple[str, ...] = ("L1", "L2", "L3")
    software: str = "infinity-dashboard"


def phase_voltages(site: Site, values: dict) -> dict[str, float]:
    """The voltage of each phase of the topology that the live values measured (V).

    Line-to-neutral where the topology has a neutral; in delta (3P), where there is none, the
    line-to-line voltage each CT's phase refers to (SPEC 3).
    """
    found: dict[str, float] = {}
    for load in values.get("loads") or ():
        for phase in load.get("phases") or ():
            name = phase.get("phase")
            if name in found or name not in site.voltage_phases:
                continue
            voltage = phase.get("v_ln") if phase.get("v_ln") is not None else phase.get("v_ll")
            if voltage is not None:
                found[name] = float(voltage)
    return {name: found[name] for name in site.voltage_phases if name in found}


def phase_readings(values: dict) -> dict[str, dict]:
    """The live reading of each CT (by reference), as SPEC 5.3 lists them under their load."""
    return {
        phase["ct"]: phase
        for load in values.get("loads") or ()
        for phase in load.get("phases") or ()
        if isinstance(phase, dict) and phase.get("ct")
    }

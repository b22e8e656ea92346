"""A simulated house behind a Power Box: instantaneous voltage and current waveforms, input
module readings and relays, built from an installation (SPEC 5.1). Pure numpy, no Django.

Physics
-------
The grid delivers phase potentials ``e_k`` (fundamental plus 1.2 % 3rd and 1.5 % 5th
harmonic, about 1.9 % THD; the frequency wanders within +-0.05 Hz of nominal and the phase is
continuous from frame to frame). A device draws power over *branches*: between a line and the
neutral (star, 1P, 2P+N), between two lines (2P+N 240 V loads, single-phase loads in delta),
or as one leg of a balanced three-phase load (three-wire in delta, so without triplen
harmonics). A branch current is a fundamental at the device's displacement angle from its
branch voltage, sized so that the fundamental active power is the device's power, plus the
device's current harmonics. Line currents are the sums over branches (+ into the line a
branch starts from, - into the line it returns by).

Frames carry what the Power Box measures (SPEC 3, 5.2): ``e_k`` against N, or ``e_1 - e_3``
and ``e_2 - e_3`` in delta (so a 3P frame holds L1 and L2, line to line); and per CT input the
current of the conductor it is clamped around, with 0.1 % noise and a small DC offset.

Which conductor a CT is clamped around
--------------------------------------
* A load with one CT is a single-phase load on the CT's phase: line to neutral, or in delta
  per the manual's table (``L1`` -> between L1 and L3, ``L2`` -> L2 and L3, ``L3`` -> L1 and
  L2 with the clamp around L1). The device is wired on that phase.
* A load with several CTs is a multi-phase load (three-phase; 240 V between L1 and L2 in
  2P+N) and each CT is clamped around the line its phase names.
* ``grid`` CTs see everything the house draws on their line (generation negative, so the
  grid goes negative = export at noon); ``consumption`` CTs see everything but solar and
  battery; ``circuit``/``appliance`` CTs see their own devices; ``solar`` and ``battery`` CTs
  face the other way, so production and discharging are positive.

Commissioning faults
--------------------
``reverse={"CTH-0001/C"}``: that clamp is mounted against the arrow without the
configuration knowing: its samples are negated. A CT marked ``"reversed": true`` in the
installation is a clamp mounted backwards that the *server* negates, so the simulator emits
its negated current too; both together cancel out.

``miswire={"CTH-0001/D": "L3"}``: that CT physically sits on another phase than configured.
For a single-CT load the load itself is on that phase (its current follows that phase's
voltage, and the grid CTs see it there); for a multi-CT load the clamp sits around that line
instead of the configured one. Neither changes :meth:`House.bucket_energy`, which reports the
physical truth per load.

Behaviour
---------
Loads are mapped to profiles (:mod:`tools.simulator.profiles`) by kind and name: ``solar``
and ``battery`` by kind, circuits and appliances by keywords ("heat pump", "ev"/"car"/
"charger", "kitchen"/"cook", "fridge", "boiler", "pump"), anything else a generic circuit.
A base load, a fridge and an induction hob run unmetered when no load claims them.
A relay switches its own device: "Boiler"/"heater" 2 kW resistive, "pump" 400 W at PF 0.8,
others 1 kW resistive; it joins the load of the same name or keyword (the boiler appliance
then draws 2 kW while its relay is on), or runs unmetered on L1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from devices import catalogue
from tools.simulator import profiles as pr

__all__ = ["House", "Signature", "Totals"]

LINES = ("L1", "L2", "L3")
_STAR_ANGLES = {"L1": 0.0, "L2": -2 * math.pi / 3, "L3": 2 * math.pi / 3}
_SPLIT_ANGLES = {"L1": 0.0, "L2": math.pi, "L3": 0.0}
# Single-phase loads in delta (SPEC 3): configured phase -> (line in, line out, clamped line).
_DELTA_SINGLE = {"L1": ("L1", "L3", "L1"), "L2": ("L2", "L3", "L2"), "L3": ("L1", "L2", "L1")}
_DEFAULT_HZ = {"1P": 50, "3P+N": 50, "3P": 50, "2P+N": 60, "3P+N-208": 60}
# Nominal rms of the phase potentials; in delta the virtual star of a 230 V line-to-line system.
_NOMINAL_V = {"1P": 230.0, "3P+N": 230.0, "3P": 230.0 / math.sqrt(3), "2P+N": 120.0, "3P+N-208": 120.0}

#: Voltage harmonics: (order, ratio to the fundamental, phase in rad). THD ~1.9 %.
VOLTAGE_HARMONICS = ((3, 0.012, 0.5), (5, 0.015, 2.0))
#: Frequency drift: two slow sinusoids, (amplitude Hz, period s); together at most 0.05 Hz.
FREQUENCY_DRIFT = ((0.03, 317.0), (0.02, 1871.0))
#: Cumulative pulse counters count from this instant (2024-01-01 UTC) so they carry on across
#: restarts of the simulator.
COUNTER_EPOCH = 1_704_067_200.0
#: Cells of Unix time in which the smooth part of a counted flow (gas heating, grid import)
#: is taken as constant.
COUNTER_CELL_S = 300.0


@dataclass(frozen=True)
class Signature:
    """How a device draws its current: true power factor ``pf`` = P / (V I) on a clean
    voltage (lagging) and current harmonics as (order, ratio to the fundamental, phase rad)."""

    pf: float
    harmonics: tuple[tuple[int, float, float], ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.pf <= 1:
            raise ValueError(f"pf must be in (0, 1], got {self.pf}")
        if self.pf * math.sqrt(1 + self.thd**2) > 1 + 1e-12:
            raise ValueError(f"pf {self.pf} is impossible with a current THD of {self.thd:.3f}")

    @property
    def thd(self) -> float:
        return math.sqrt(sum(r * r for _, r, _ in self.harmonics))

    @property
    def displacement_rad(self) -> float:
        """Angle by which the fundamental lags: cos(phi1) = pf * sqrt(1 + THD^2)."""
        return math.acos(min(1.0, self.pf * math.sqrt(1 + self.thd**2)))


RESISTIVE = Signature(1.0)
ELECTRONICS = Signature(0.9, ((3, 0.10, 0.3), (5, 0.06, 1.1), (7, 0.03, 2.0)))
COMPRESSOR = Signature(0.8, ((3, 0.04, 0.5), (5, 0.03, 1.0)))
HEAT_PUMP = Signature(0.7, ((3, 0.06, 0.4), (5, 0.04, 0.9)))
#: An induction hob's rectifier: current THD ~30 %.
INDUCTION = Signature(0.93, ((3, 0.22, 0.2), (5, 0.16, 0.8), (7, 0.10, 1.4), (9, 0.06, 2.1), (11, 0.04, 2.7)))
CHARGER = Signature(0.99, ((3, 0.03, 0.2), (5, 0.02, 0.6)))
INVERTER = Signature(0.999, ((5, 0.015, 0.3), (7, 0.01, 0.9)))
CIRCUIT = Signature(0.95, ((3, 0.12, 0.3), (5, 0.07, 0.9), (7, 0.04, 1.6)))
PUMP = Signature(0.8, ((3, 0.03, 0.4),))


@dataclass(frozen=True)
class Branch:
    """Part ``share`` of a device's power drawn from line ``a`` and returned by line ``b``
    (``None``: by the neutral, or the virtual star point of a balanced three-wire load)."""

    a: str
    b: str | None
    share: float
    three_wire: bool = False


@dataclass
class Device:
    name: str
    profile: pr.Profile | None
    signature: Signature
    branches: tuple[Branch, ...]
    load: str | None
    role: str = "consumer"  # "consumer", "solar" or "battery"
    relay: str | None = None
    relay_power_w: float = 0.0


@dataclass(frozen=True)
class CtSpec:
    ref: str
    load: str
    kind: str
    phase: str
    reversed: bool


@dataclass(frozen=True)
class InputSpec:
    ref: str
    name: str
    source: str  # "gas", "water", "electricity" or "door"
    unit: str
    unit_size: float  # the unit in SI-ish base units (m3, kWh)
    pulses_per_unit: float


@dataclass(frozen=True)
class Totals:
    """House power at an instant (W): consumption, solar production, battery discharge
    (negative while charging) and grid import (negative = export)."""

    consumption_w: float
    solar_w: float
    battery_w: float
    grid_w: float


@dataclass
class _Counter:
    volume: float  # in the input's unit; for a door: openings
    t: float


_KEYWORDS = (
    ("heat_pump", re.compile(r"heat\s*-?\s*pump|warmtepomp|pompe à chaleur")),
    ("ev", re.compile(r"\bev\b|\bcar\b|charger|wallbox|vehicle|\bauto\b")),
    ("kitchen", re.compile(r"kitchen|cook|induction|\bhob\b|stove|keuken|cuisine")),
    ("fridge", re.compile(r"fridge|freezer|refrigerator|koelkast|frigo")),
    ("boiler", re.compile(r"boiler|water\s*heater|heater|ballon|chauffe")),
    ("pump", re.compile(r"pump")),
)


def behaviour_of(name: str) -> str:
    """The behaviour a circuit or appliance gets from its name; "generic" if nothing matches."""
    lowered = name.lower()
    for behaviour, pattern in _KEYWORDS:
        if pattern.search(lowered):
            return behaviour
    return "generic"


class House:
    """A house streaming what its Power Box and Input modules would measure.

    Parameters
    ----------
    installation : dict
        The installation file (SPEC 5.1): ``location`` (topology, frequency, timezone),
        ``powerbox``, ``ct_hubs``, ``solid_core_cts``, ``input_modules``,
        ``output_modules``, ``loads``.
    seed : int
        Everything random (appliance schedules, clouds, noise) follows from it.
    miswire : mapping of CT reference to phase, optional
        CTs that physically sit on another phase than configured (see the module docstring).
    reverse : iterable of CT references, optional
        CTs physically mounted against the arrow (their samples are negated).
    cloudiness : float in [0, 1], optional
        Fix the sky for every day (0 = clear, 1 = overcast); by default each day draws one.
    noise : bool
        Add measurement noise and sensor DC offsets (default True).

    Raises
    ------
    ValueError
        The installation is not usable, naming the JSON path: unknown topology, a CT phase
        the topology does not have, a miswired or reversed CT that does not exist...
    """

    def __init__(
        self,
        installation: Mapping[str, Any],
        *,
        seed: int = 0,
        miswire: Mapping[str, str] | None = None,
        reverse: Iterable[str] = (),
        cloudiness: float | None = None,
        noise: bool = True,
    ) -> None:
        self.seed = int(seed) & 0xFFFFFFFF
        self.noise = noise
        location = installation.get("location") or {}
        self.topology = location.get("topology", "")
        if self.topology not in catalogue.TOPOLOGIES:
            raise ValueError(
                f"location.topology: unknown topology {self.topology!r}; expected one of "
                + ", ".join(catalogue.TOPOLOGIES)
            )
        self.frequency_hz = float(location.get("frequency") or _DEFAULT_HZ[self.topology])
        if self.frequency_hz not in (50.0, 60.0):
            raise ValueError(f"location.frequency: must be 50 or 60, got {self.frequency_hz:g}")
        try:
            self.tz = ZoneInfo(location.get("timezone") or "Europe/Brussels")
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"location.timezone: unknown time zone {location.get('timezone')!r}") from None
        if cloudiness is not None and not 0 <= cloudiness <= 1:
            raise ValueError(f"cloudiness must be between 0 and 1, got {cloudiness}")
        self.phases = catalogue.TOPOLOGY_PHASES[self.topology]
        self.voltage_keys = catalogue.TOPOLOGY_VOLTAGES[self.topology]
        self.powerbox_serial = (installation.get("powerbox") or {}).get("serial", "PB-0001")
        self.gateway_serial = (installation.get("gateway") or {}).get("serial", "GW-0001")

        self.ct_ratings = self._read_cts(installation)
        self.loads, self.cts = self._read_loads(installation)
        self.ct_refs = tuple(self.ct_ratings)
        self.miswire = self._check_miswire(miswire or {})
        self.reverse = frozenset(reverse)
        for ref in self.reverse:
            if ref not in self.ct_ratings:
                raise ValueError(f"reverse: unknown CT {ref!r}")
        self.inputs = self._read_inputs(installation)
        self.relays, self._relay_alias = self._read_relays(installation)
        self._relay_state: dict[str, tuple[bool, float | None]] = {ref: (False, None) for ref in self.relays}

        self.place = pr.place_of(self.tz)
        self.cloudiness = cloudiness
        self.devices: list[Device] = []
        self._build_devices()
        self._ct_conductor = {ref: self._conductor_of(spec) for ref, spec in self.cts.items()}
        self._showers = pr.Showers(self.seed)
        self._water = pr.WaterFlow(self.seed, self._showers)
        has_heat_pump = any(isinstance(d.profile, pr.HeatPump) for d in self.devices)
        self._gas = pr.GasFlow(self.seed, self._showers, self._cooking, has_heat_pump)
        self._doors = {
            ref: pr.DoorContact(self.seed, f"door {ref}") for ref, s in self.inputs.items() if s.source == "door"
        }
        self._counters: dict[str, _Counter] = {}
        self._offsets = self._sensor_offsets()

    # ------------------------------------------------------------------------ installation

    def _read_cts(self, installation: Mapping[str, Any]) -> dict[str, float]:
        ratings: dict[str, float] = {}
        for key, letters in (("ct_hubs", catalogue.CT_HUB_INPUTS), ("solid_core_cts", catalogue.SOLID_CORE_INPUTS)):
            for i, module in enumerate(installation.get(key) or []):
                serial = module.get("serial")
                if not serial:
                    raise ValueError(f"{key}[{i}].serial: missing")
                inputs = module.get("inputs")
                if not isinstance(inputs, dict):  # a solid-core CT may just name its type
                    inputs = {letter: module.get("type") or module.get("ct_type") for letter in letters}
                for letter, ct_type in inputs.items():
                    if ct_type:
                        ratings[f"{serial}/{letter}"] = catalogue.CT_TYPES.get(ct_type, 100.0)
        return ratings

    def _read_loads(self, installation: Mapping[str, Any]) -> tuple[dict[str, dict], dict[str, CtSpec]]:
        loads: dict[str, dict] = {}
        cts: dict[str, CtSpec] = {}
        for i, load in enumerate(installation.get("loads") or []):
            name, kind = load.get("name"), load.get("kind")
            if not name:
                raise ValueError(f"loads[{i}].name: missing")
            if kind not in catalogue.LOAD_KINDS:
                raise ValueError(
                    f"loads[{i}].kind: unknown kind {kind!r}; expected one of {', '.join(catalogue.LOAD_KINDS)}"
                )
            specs = []
            for j, ct in enumerate(load.get("cts") or []):
                ref, phase = ct.get("ct"), ct.get("phase")
                if phase not in self.phases:
                    raise ValueError(
                        f"loads[{i}].cts[{j}].phase: {phase!r} is not a phase of {self.topology} "
                        f"({', '.join(self.phases)})"
                    )
                if not ref or "/" not in ref:
                    raise ValueError(f"loads[{i}].cts[{j}].ct: expected '<module serial>/<input>', got {ref!r}")
                spec = CtSpec(ref=ref, load=name, kind=kind, phase=phase, reversed=bool(ct.get("reversed")))
                specs.append(spec)
                cts[ref] = spec
                self.ct_ratings.setdefault(ref, 100.0)
            loads[name] = {"name": name, "kind": kind, "cts": tuple(specs)}
        return loads, cts

    def _check_miswire(self, miswire: Mapping[str, str]) -> dict[str, str]:
        for ref, phase in miswire.items():
            if ref not in self.ct_ratings:
                raise ValueError(f"miswire: unknown CT {ref!r}")
            if phase not in self.phases:
                raise ValueError(f"miswire: {phase!r} is not a phase of {self.topology} ({', '.join(self.phases)})")
        return dict(miswire)

    def _read_inputs(self, installation: Mapping[str, Any]) -> dict[str, InputSpec]:
        specs = {}
        for module in installation.get("input_modules") or []:
            for number, cfg in (module.get("inputs") or {}).items():
                ref = f"{module['serial']}/{number}"
                specs[ref] = _input_spec(ref, cfg or {})
        return specs

    def _read_relays(self, installation: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        names: dict[str, str] = {}
        alias: dict[str, str] = {}
        for module in installation.get("output_modules") or []:
            serial = module["serial"]
            outputs = module.get("outputs") or {}
            if module.get("mode") == "combined":
                # One switched circuit on both relays: either reference switches it.
                first = f"{serial}/1"
                name = (outputs.get("1") or outputs.get("2") or {}).get("name") or "Output"
                names[first] = name
                alias[first] = alias[f"{serial}/2"] = first
                continue
            for number, cfg in outputs.items():
                ref = f"{serial}/{number}"
                names[ref] = (cfg or {}).get("name") or f"Output {number}"
                alias[ref] = ref
        return names, alias

    # ----------------------------------------------------------------------------- wiring

    def _branches(self, phases: list[str]) -> tuple[Branch, ...]:
        """Wiring of a device whose CTs (or placement) name ``phases``."""
        unique = sorted(set(phases)) or ["L1"]
        if self.topology == "1P":
            return (Branch("L1", None, 1.0),)
        if len(unique) == 1:
            if self.topology == "3P":
                a, b, _ = _DELTA_SINGLE[unique[0]]
                return (Branch(a, b, 1.0),)
            return (Branch(unique[0], None, 1.0),)
        if self.topology == "2P+N":
            return (Branch("L1", "L2", 1.0),)
        if self.topology == "3P":
            return tuple(Branch(line, None, 1 / 3, three_wire=True) for line in LINES)
        return tuple(Branch(line, None, 1 / len(unique)) for line in unique)

    def _spread(self, shares: Mapping[str, float]) -> tuple[Branch, ...]:
        """Single-phase branches on several phases with unequal shares (unmetered loads)."""
        usable = {p: s for p, s in shares.items() if p in self.phases}
        total = sum(usable.values())
        branches = []
        for phase, share in usable.items():
            (single,) = self._branches([phase])
            branches.append(Branch(single.a, single.b, share / total))
        return tuple(branches)

    def _load_phases(self, load: dict) -> list[str]:
        cts = load["cts"]
        if len(cts) == 1:
            return [self.miswire.get(cts[0].ref, cts[0].phase)]
        return [ct.phase for ct in cts]

    def _conductor_of(self, spec: CtSpec) -> str:
        phase = self.miswire.get(spec.ref, spec.phase)
        if self.topology == "1P":
            return "L1"
        if len(self.loads[spec.load]["cts"]) == 1 and self.topology == "3P":
            return _DELTA_SINGLE[phase][2]
        return phase

    def _add(
        self, name: str, profile: pr.Profile | None, signature: Signature, branches, load: str | None, **kw
    ) -> Device:
        device = Device(name, profile, signature, tuple(branches), load, **kw)
        self.devices.append(device)
        return device

    def _build_devices(self) -> None:
        seed = self.seed
        claimed: set[str] = set()
        self._cooking: pr.Induction | None = None
        for load in self.loads.values():
            name, kind = load["name"], load["kind"]
            branches = self._branches(self._load_phases(load))
            stream = f"load {name}"
            if kind == "solar":
                peak_w = (
                    6000.0 if len(branches) == 3 else 5000.0 if self.topology == "2P+N" and branches[0].b else 4000.0
                )
                profile = pr.Solar(seed, stream, peak_w, self.place, self.cloudiness)
                self._add(name, profile, INVERTER, branches, name, role="solar")
            elif kind == "battery":
                self._add(name, None, INVERTER, branches, name, role="battery")
            elif kind in ("circuit", "appliance"):
                behaviour = behaviour_of(name)
                claimed.add(behaviour)
                if behaviour == "heat_pump":
                    self._add(name, pr.HeatPump(seed, stream), HEAT_PUMP, branches, name)
                elif behaviour == "ev":
                    three_phase = len(branches) == 3
                    line_v = 2 * _NOMINAL_V[self.topology] if branches[0].b else _NOMINAL_V[self.topology]
                    rated_w = 11_000.0 if three_phase else 7_400.0 if line_v >= 200 else 1_900.0
                    self._add(name, pr.ElectricVehicle(seed, stream, rated_w), CHARGER, branches, name)
                elif behaviour == "kitchen":
                    self._cooking = pr.Induction(seed, stream)
                    self._add(name, self._cooking, INDUCTION, branches, name)
                    self._add(name + " kettle", pr.Kettle(seed, stream + " kettle"), RESISTIVE, branches, name)
                    self._add(name + " standby", pr.Constant(seed, stream, 15.0), ELECTRONICS, branches, name)
                elif behaviour == "fridge":
                    self._add(name, pr.Fridge(seed, stream), COMPRESSOR, branches, name)
                elif behaviour == "boiler":
                    self._add(name, pr.Boiler(seed, stream), RESISTIVE, branches, name)
                elif behaviour == "pump":
                    self._add(name, pr.PoolPump(seed, stream), PUMP, branches, name)
                else:
                    self._add(name, pr.GenericCircuit(seed, stream), CIRCUIT, branches, name)

        # What no load claims runs unmetered: only the grid (and consumption) CTs see it.
        base = self._spread({"L1": 0.45, "L2": 0.30, "L3": 0.25})
        self._add("base load", pr.BaseLoad(seed, "base"), ELECTRONICS, base, None)
        if "fridge" not in claimed:
            self._add(
                "fridge",
                pr.Fridge(seed, "fridge"),
                COMPRESSOR,
                self._branches(["L2" if "L2" in self.phases else "L1"]),
                None,
            )
        if "kitchen" not in claimed:
            self._cooking = pr.Induction(seed, "cooking")
            hob = self._branches(["L1", "L2"] if self.topology == "2P+N" else ["L3" if "L3" in self.phases else "L1"])
            self._add("induction hob", self._cooking, INDUCTION, hob, None)

        for ref, relay_name in self.relays.items():
            behaviour = behaviour_of(relay_name)
            power_w, signature = {"boiler": (2000.0, RESISTIVE), "pump": (400.0, PUMP)}.get(
                behaviour, (1000.0, RESISTIVE)
            )
            target = self._relay_target(relay_name, behaviour)
            if target is not None and target.load is not None and target.role == "consumer":
                # The relay switches that load's device: on = the relay's power, off = its schedule.
                target.relay, target.relay_power_w = ref, power_w
                continue
            self._add(
                f"relay {relay_name}", None, signature, self._branches(["L1"]), None, relay=ref, relay_power_w=power_w
            )

    def _relay_target(self, relay_name: str, behaviour: str) -> Device | None:
        by_name = [d for d in self.devices if d.load and d.name.lower() == relay_name.lower()]
        if by_name:
            return by_name[0]
        if behaviour in ("boiler", "pump"):
            for device in self.devices:
                if device.load and device.name == device.load and behaviour_of(device.name) == behaviour:
                    return device
        return None

    def _sensor_offsets(self) -> dict[str, float]:
        offsets = {}
        for i, (ref, rating) in enumerate(self.ct_ratings.items()):
            offsets[ref] = (
                (float(pr.hash_uniform(self.seed, pr.stream_id("ct offset " + ref), i)[0]) - 0.5) * 4e-4 * rating
            )
        for key in self.voltage_keys:
            offsets["V" + key] = (float(pr.hash_uniform(self.seed, pr.stream_id("v offset " + key), 0)[0]) - 0.5) * 0.3
        return offsets

    # ----------------------------------------------------------------------------- relays

    def set_relay(self, ref: str, on: bool, until: float | None = None) -> None:
        """Switch an Output module relay (``"OUT-0001/1"``); ``until`` (Unix s) ends a timed on.

        Raises ``ValueError`` for a relay the installation does not have.
        """
        if ref not in self._relay_alias:
            known = ", ".join(self._relay_alias) or "none"
            raise ValueError(f"unknown relay {ref!r} (relays of this installation: {known})")
        self._relay_state[self._relay_alias[ref]] = (bool(on), None if until is None else float(until))

    def relay_name(self, ref: str) -> str:
        """The name the installation gives the relay (or the combined output) ``ref``."""
        return self.relays[self._relay_alias[ref]]

    def relay_is_on(self, ref: str, t: float) -> bool:
        return bool(self._relays_on(self._relay_alias[ref], np.array([float(t)]))[0])

    def _relays_on(self, ref: str, t: np.ndarray) -> np.ndarray:
        on, until = self._relay_state[ref]
        if not on:
            return np.zeros(t.shape, dtype=bool)
        return np.ones(t.shape, dtype=bool) if until is None else t < until

    # ----------------------------------------------------------------------------- powers

    def _device_powers(self, lt: pr.LocalTime, with_relays: bool = True) -> list[np.ndarray]:
        """Per device, its power in the load direction (W): consumers > 0, solar < 0, battery
        < 0 while discharging."""
        powers: list[np.ndarray | None] = []
        for device in self.devices:
            if device.role == "battery":
                powers.append(None)
                continue
            p = device.profile.power_w(lt) if device.profile is not None else np.zeros_like(lt.t)
            if device.relay is not None and with_relays:
                p = np.where(self._relays_on(device.relay, lt.t), device.relay_power_w, p)
            powers.append(-p if device.role == "solar" else p)
        batteries = [i for i, d in enumerate(self.devices) if d.role == "battery"]
        if batteries:
            net = np.sum([p for p in powers if p is not None], axis=0)
            hour = lt.hour
            charge = np.where((net < -50) & (hour >= 8) & (hour < 18), np.minimum(-net, 3000.0), 0.0)
            discharge = np.where(((hour >= 17) | (hour < 1)) & (net > 0), np.minimum(net, 2500.0), 0.0)
            for i in batteries:
                powers[i] = (charge - discharge) / len(batteries)
        return powers  # type: ignore[return-value]

    def _load_powers(self, powers: list[np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        zero = np.zeros_like(powers[0])
        kinds = {"consumption": zero.copy(), "solar": zero.copy(), "battery": zero.copy(), "grid": zero.copy()}
        own = {name: zero.copy() for name in self.loads}
        for device, p in zip(self.devices, powers, strict=True):
            kinds["grid"] += p
            if device.role == "consumer":
                kinds["consumption"] += p
            else:
                kinds[device.role] -= p
            if device.load is not None:
                own[device.load] += -p if device.role in ("solar", "battery") else p
        by_load = {}
        for name, load in self.loads.items():
            kind = load["kind"]
            by_load[name] = kinds[kind] if kind in ("grid", "consumption") else own[name]
        return by_load, kinds

    def power_series(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`load_powers_w` at many Unix times at once: load name -> array of W."""
        return self._load_powers(self._device_powers(pr.local_time(t, self.tz)))[0]

    def load_powers_w(self, t: float) -> dict[str, float]:
        """True mean power of every load at Unix time ``t`` (W), signed as the server reports
        it: grid import > 0, solar production > 0, battery discharge > 0."""
        powers = self._device_powers(pr.local_time(t, self.tz))
        return {name: float(p[0]) for name, p in self._load_powers(powers)[0].items()}

    def totals(self, t: float) -> Totals:
        """The house's consumption, solar, battery and grid power at Unix time ``t`` (W)."""
        kinds = self._load_powers(self._device_powers(pr.local_time(t, self.tz)))[1]
        return Totals(*(float(kinds[k][0]) for k in ("consumption", "solar", "battery", "grid")))

    # ----------------------------------------------------------------------------- frames

    def frame(
        self, t_start_unix: float, duration_s: float = 1.0, fs_hz: float = 6400.0
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, tuple[int, int]]]:
        """Samples of one frame: ``(voltages, currents, inputs)``.

        ``voltages`` holds the channels the topology measures (SPEC 5.2), ``currents`` every CT
        input of the installation (amps, an unused input reads noise), ``inputs`` per Input
        module input its ``(state, cumulative pulses)`` at the end of the frame. Appliance
        powers are taken at the middle of the frame. Pulse counters advance with each frame
        and never go back.
        """
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        if not (math.isfinite(fs_hz) and fs_hz > 0):
            raise ValueError(f"fs_hz must be positive, got {fs_hz}")
        n = int(round(duration_s * fs_hz))
        if n < 1:
            raise ValueError(f"a frame of {duration_s} s at {fs_hz} Hz holds no sample")
        t0 = float(t_start_unix)
        t_mid = t0 + duration_s / 2
        magnitudes = self._phase_magnitudes(t_mid)
        angles = _SPLIT_ANGLES if self.topology == "2P+N" else _STAR_ANGLES
        basis = _Basis(self._theta(t0, n, fs_hz))

        e = {line: self._potential(basis, magnitudes[line], angles[line]) for line in LINES}
        if self.topology == "3P":
            voltages = {"L1": e["L1"] - e["L3"], "L2": e["L2"] - e["L3"]}
        else:
            voltages = {key: e[key] for key in self.voltage_keys}

        powers = self._device_powers(pr.local_time(t_mid, self.tz))
        zero = np.zeros(n)
        grid = {line: zero.copy() for line in LINES}
        consumers = {line: zero.copy() for line in LINES}
        own = {name: {line: zero.copy() for line in LINES} for name in self.loads}
        for device, p in zip(self.devices, powers, strict=True):
            power_w = float(p[0])
            if power_w == 0.0:
                continue
            for branch in device.branches:
                i = self._branch_current(basis, device.signature, branch, power_w * branch.share, magnitudes, angles)
                for line, sign in ((branch.a, 1.0), (branch.b, -1.0)):
                    if line is None:
                        continue
                    grid[line] += sign * i
                    if device.role == "consumer":
                        consumers[line] += sign * i
                    if device.load is not None:
                        own[device.load][line] += sign * i

        rng = np.random.default_rng([self.seed, 0x5EED, int(round(t0 * 1000)) & 0xFFFFFFFFFFFF, n])
        currents = {}
        for ref, rating in self.ct_ratings.items():
            spec = self.cts.get(ref)
            if spec is None:
                i = zero.copy()
            else:
                source = grid if spec.kind == "grid" else consumers if spec.kind == "consumption" else own[spec.load]
                sign = -1.0 if spec.kind in ("solar", "battery") else 1.0
                if spec.reversed:
                    sign = -sign
                if ref in self.reverse:
                    sign = -sign
                i = sign * source[self._ct_conductor[ref]]
            if self.noise:
                sigma = 1e-3 * float(np.sqrt(np.mean(i * i))) + 1e-4 * rating
                i = i + self._offsets[ref] + rng.normal(0.0, sigma, n)
            currents[ref] = i
        if self.noise:
            for key, v in voltages.items():
                sigma = 1e-3 * float(np.sqrt(np.mean(v * v)))
                voltages[key] = v + self._offsets["V" + key] + rng.normal(0.0, sigma, n)
        return voltages, currents, self._read_input_states(t0 + duration_s)

    def frame_doc(
        self, t_start_unix: float, seq: int, duration_s: float = 1.0, fs_hz: float = 6400.0
    ) -> dict[str, Any]:
        """One frame as the SPEC 5.2 JSON document (volts to 0.01 V, amps to 0.1 mA)."""
        voltages, currents, inputs = self.frame(t_start_unix, duration_s, fs_hz)
        return {
            "v": 1,
            "powerbox": self.powerbox_serial,
            "seq": int(seq),
            "t": float(t_start_unix),
            "fs": fs_hz,
            "voltages": {k: np.round(v, 2).tolist() for k, v in voltages.items()},
            "currents": {k: np.round(i, 4).tolist() for k, i in currents.items()},
            "inputs": {ref: {"state": state, "pulses": pulses} for ref, (state, pulses) in inputs.items()},
        }

    def _phase_magnitudes(self, t: float) -> dict[str, float]:
        """Rms of each phase potential's fundamental: 1-3 % above nominal, wandering slowly,
        with a fixed small unbalance (none in split phase, where L2 = -L1)."""
        nominal = _NOMINAL_V[self.topology]
        level = 1.02 + 0.01 * (
            2 * float(pr.smooth_noise(self.seed, pr.stream_id("voltage"), np.array([t]), 600.0)[0]) - 1
        )
        magnitudes = {}
        for k, line in enumerate(LINES):
            unbalance = (
                0.0
                if self.topology == "2P+N"
                else 0.008 * (float(pr.hash_uniform(self.seed, pr.stream_id("unbalance"), k)[0]) - 0.5)
            )
            magnitudes[line] = nominal * level * (1 + unbalance)
        return magnitudes

    def _theta(self, t0: float, n: int, fs_hz: float) -> np.ndarray:
        """Phase of the grid's fundamental (rad) at ``n`` samples from ``t0``: continuous
        across frames, its derivative wandering within +-0.05 Hz of nominal."""
        day0 = math.floor(t0 / pr.DAY_S) * pr.DAY_S  # whole cycles per day at 50 and 60 Hz
        offsets = np.arange(n) / fs_hz
        theta = 2 * np.pi * self.frequency_hz * ((t0 - day0) + offsets)
        t = t0 + offsets
        for k, (amplitude_hz, period_s) in enumerate(FREQUENCY_DRIFT):
            phase0 = 2 * np.pi * float(pr.hash_uniform(self.seed, pr.stream_id("drift"), k)[0])
            theta -= amplitude_hz * period_s * np.cos(2 * np.pi * np.mod(t, period_s) / period_s + phase0)
        return theta

    @staticmethod
    def _potential(basis: _Basis, v_rms: float, angle: float) -> np.ndarray:
        wave = basis.sin(1, angle)
        for order, ratio, phase in VOLTAGE_HARMONICS:
            wave = wave + ratio * basis.sin(order, order * angle + phase)
        return math.sqrt(2) * v_rms * wave

    def _branch_current(
        self,
        basis: _Basis,
        signature: Signature,
        branch: Branch,
        power_w: float,
        magnitudes: Mapping[str, float],
        angles: Mapping[str, float],
    ) -> np.ndarray:
        ref = magnitudes[branch.a] * np.exp(1j * angles[branch.a])
        if branch.b is not None:
            ref -= magnitudes[branch.b] * np.exp(1j * angles[branch.b])
        phi = signature.displacement_rad
        i1_rms = power_w / (abs(ref) * math.cos(phi))
        angle = float(np.angle(ref)) - phi
        wave = basis.sin(1, angle)
        for order, ratio, phase in signature.harmonics:
            if branch.three_wire and order % 3 == 0:
                continue
            wave = wave + ratio * basis.sin(order, order * angle + phase)
        return math.sqrt(2) * i1_rms * wave

    # ----------------------------------------------------------------------------- inputs

    def _smooth_rate(self, spec: InputSpec, lt: pr.LocalTime, with_relays: bool) -> np.ndarray:
        """The eventless part of an input's flow, in base units (m3, kWh) per second."""
        if spec.source == "gas":
            return self._gas.smooth_rate(lt)
        if spec.source == "electricity":
            grid_w = self._load_powers(self._device_powers(lt, with_relays))[1]["grid"]
            return np.maximum(grid_w, 0.0) / 3.6e6
        return np.zeros_like(lt.t)

    def _amounts(self, spec: InputSpec, edges: np.ndarray, with_relays: bool = True) -> np.ndarray:
        """What an input counts (in its unit) in each interval between consecutive Unix times
        ``edges``. Events (showers, cooking, water draws) are integrated exactly; the smooth
        part (space heating, grid import) flows at the rate of the middle of each
        :data:`COUNTER_CELL_S` cell of Unix time. Both make the amount over an interval
        independent of how it is cut, so counters agree between frames, history and restarts.
        """
        edges = np.asarray(edges, dtype=np.float64)
        amounts = np.zeros(edges.size - 1)
        if spec.source in ("gas", "water"):
            flow = self._gas if spec.source == "gas" else self._water
            cumulative = flow.event_cumulative(pr.local_time(edges, self.tz).x)
            amounts += np.diff(cumulative) / (1000.0 if spec.source == "water" else 1.0)
        if spec.source in ("gas", "electricity"):
            first = math.floor(edges[0] / COUNTER_CELL_S)
            cells = np.arange(first, math.floor(edges[-1] / COUNTER_CELL_S) + 1)
            rates = self._smooth_rate(spec, pr.local_time((cells + 0.5) * COUNTER_CELL_S, self.tz), with_relays)
            at_cell_start = np.concatenate([[0.0], np.cumsum(rates * COUNTER_CELL_S)])
            k = np.clip(np.floor(edges / COUNTER_CELL_S).astype(np.int64) - first, 0, cells.size - 1)
            cumulative = at_cell_start[k] + rates[k] * (edges - (first + k) * COUNTER_CELL_S)
            amounts += np.diff(cumulative)
        return np.maximum(amounts, 0.0) / spec.unit_size

    def _amount_since_epoch(self, spec: InputSpec, t: float) -> float:
        """Cumulative amount (input unit, or door openings) from :data:`COUNTER_EPOCH` to ``t``:
        the starting point of a counter."""
        if t <= COUNTER_EPOCH:
            return 0.0
        if spec.source == "door":
            x0, x1 = pr.local_time(np.array([COUNTER_EPOCH, t]), self.tz).x
            return float(self._doors[spec.ref].openings.count_starts(float(x0), float(x1)))
        return float(self._amounts(spec, np.array([COUNTER_EPOCH, t]), with_relays=False)[0])

    def _read_input_states(self, t: float) -> dict[str, tuple[int, int]]:
        readings = {}
        lt_now = pr.local_time(t, self.tz)
        for ref, spec in self.inputs.items():
            counter = self._counters.get(ref)
            if counter is None:
                counter = self._counters[ref] = _Counter(self._amount_since_epoch(spec, t), t)
            elif t > counter.t:
                if spec.source == "door":
                    x0 = float(pr.local_time(counter.t, self.tz).x[0])
                    counter.volume += self._doors[ref].openings.count_starts(x0, float(lt_now.x[0]))
                else:
                    counter.volume += float(self._amounts(spec, np.array([counter.t, t]))[0])
                counter.t = t
            if spec.source == "door":
                state, pulses = int(self._doors[ref].is_open(lt_now)[0]), int(counter.volume)
            else:
                state, pulses = 0, int(math.floor(counter.volume * spec.pulses_per_unit + 1e-9))
            readings[ref] = (state, pulses)
        return readings

    # ---------------------------------------------------------------------------- history

    def bucket_energy(
        self, start_utc: datetime, end_utc: datetime, step_s: int = 300
    ) -> Iterator[tuple[datetime, dict[str, float], dict[str, int]]]:
        """History straight from the behaviour model, without waveforms.

        Yields, for every whole bucket of ``step_s`` seconds inside ``[start_utc, end_utc)``
        (aligned on multiples of ``step_s`` in Unix time), ``(bucket_start_utc, load_power_w,
        input_pulses)``: the mean power of every load over the bucket (W, signed like
        :meth:`load_powers_w`) and the pulses every pulse-counting input counted in it.
        Relays are off and ``miswire``/``reverse`` do not apply: this is the physical truth.
        Powers are averaged over 10-second steps; a day of 5-minute buckets takes
        milliseconds.
        """
        for name, value in (("start_utc", start_utc), ("end_utc", end_utc)):
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
        if not step_s > 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        first = math.ceil(start_utc.timestamp() / step_s) * step_s
        count = max(0, math.floor((end_utc.timestamp() - first) / step_s))
        sub = max(1, int(round(step_s / 10.0)))
        dt = step_s / sub
        per_chunk = max(1, int(pr.DAY_S // step_s))
        pulse_inputs = {ref: spec for ref, spec in self.inputs.items() if spec.source != "door"}
        amounts = {ref: self._amount_since_epoch(spec, first) for ref, spec in pulse_inputs.items()}

        for chunk_start in range(0, count, per_chunk):
            nb = min(per_chunk, count - chunk_start)
            t_chunk = first + chunk_start * step_s
            ts = t_chunk + (np.arange(nb * sub) + 0.5) * dt
            lt = pr.local_time(ts, self.tz)
            by_load = self._load_powers(self._device_powers(lt, with_relays=False))[0]
            means = {name: p.reshape(nb, sub).mean(axis=1).tolist() for name, p in by_load.items()}
            pulses: dict[str, list[int]] = {}
            edges = t_chunk + np.arange(nb + 1) * step_s
            for ref, spec in pulse_inputs.items():
                cumulative = amounts[ref] + np.concatenate([[0.0], np.cumsum(self._amounts(spec, edges, False))])
                counts = np.floor(cumulative * spec.pulses_per_unit + 1e-9)
                pulses[ref] = np.diff(counts).astype(np.int64).tolist()
                amounts[ref] = float(cumulative[-1])
            for k in range(nb):
                start = datetime.fromtimestamp(t_chunk + k * step_s, UTC)
                yield start, {name: m[k] for name, m in means.items()}, {ref: c[k] for ref, c in pulses.items()}


class _Basis:
    """sin(h*theta) and cos(h*theta) of one frame, computed once per harmonic order."""

    def __init__(self, theta: np.ndarray) -> None:
        self.theta = theta
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def sin(self, order: int, phase: float) -> np.ndarray:
        """sin(order * theta + phase)."""
        pair = self._cache.get(order)
        if pair is None:
            pair = self._cache[order] = (np.sin(order * self.theta), np.cos(order * self.theta))
        s, c = pair
        return s * math.cos(phase) + c * math.sin(phase)


# Input units: size in base units (m3 for volumes, kWh for energy).
_UNIT_SIZES = {
    "m3": 1.0,
    "m³": 1.0,
    "l": 1e-3,
    "liter": 1e-3,
    "litre": 1e-3,
    "dm3": 1e-3,
    "kwh": 1.0,
    "wh": 1e-3,
    "mwh": 1e3,
}
_NATURAL_UNIT = {"gas": "m3", "water": "l", "electricity": "kWh"}
_DEFAULT_PULSES = {("gas", "m3"): 100.0, ("water", "l"): 1.0, ("water", "m3"): 1000.0, ("electricity", "kwh"): 1000.0}


def _input_spec(ref: str, cfg: Mapping[str, Any]) -> InputSpec:
    name = cfg.get("name") or ref
    unit = (cfg.get("unit") or "").strip()
    lowered, unit_key = name.lower(), unit.lower()
    if cfg.get("mode") == "status":
        return InputSpec(ref, name, "door", "", 1.0, 1.0)
    if "gas" in lowered:
        source = "gas"
    elif "water" in lowered:
        source = "water"
    elif re.search(r"elec|kwh|power|energy", lowered) or unit_key in ("kwh", "wh", "mwh"):
        source = "electricity"
    elif unit_key in ("l", "liter", "litre", "dm3"):
        source = "water"
    else:
        source = "gas"
    if unit_key not in _UNIT_SIZES or (source == "electricity") != (unit_key in ("kwh", "wh", "mwh")):
        unit = _NATURAL_UNIT[source]
        unit_key = unit.lower()
    ppu = cfg.get("pulses_per_unit") or _DEFAULT_PULSES.get((source, unit_key), 1.0)
    return InputSpec(ref, name, source, unit, _UNIT_SIZES[unit_key], float(ppu))

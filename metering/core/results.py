"""Result types of :func:`metering.core.compute_frame`.

Sign conventions (SPEC section 4): P > 0 is power flowing in the direction of the CT's arrow
(from the grid into the board for a grid CT: import); solar P > 0 is production (arrow from
the inverter towards the board); battery P > 0 is discharging. Q > 0 for an inductive load
(current lagging the voltage). PF = P / S carries the sign of P.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from metering.core.config import MeterConfig


def _num(x: float) -> float | None:
    """A plain float for JSON; ``None`` for NaN (a value the topology does not have)."""
    x = float(x)
    return None if math.isnan(x) else x


@dataclass(frozen=True, eq=False)
class Carry:
    """Samples after the last whole cycle of a frame, to prepend to the next frame.

    Opaque to callers: pass ``FrameResult.carry`` to the next :func:`compute_frame` call of the
    same Power Box when that frame's ``seq`` follows without a gap, else pass ``None``. It is
    picklable, so it may be kept in a cache between requests. A carry only fits the
    configuration and sample rate it was made with.

    Attributes
    ----------
    fs_hz : float
    voltage_keys, ct_ids : tuple of str
        Row names of ``voltages`` and ``currents``.
    voltages : ndarray, shape (n_voltages, n)
    currents : ndarray, shape (n_channels, n)
    """

    fs_hz: float
    voltage_keys: tuple[str, ...]
    ct_ids: tuple[str, ...]
    voltages: np.ndarray = field(repr=False)
    currents: np.ndarray = field(repr=False)

    @property
    def n_samples(self) -> int:
        """Number of carried samples (less than about one cycle)."""
        return int(self.voltages.shape[1])


@dataclass(frozen=True, slots=True)
class CtValues:
    """Live values of one CT against its reference voltage (one row of the live card).

    ``v_ln_v`` is ``None`` without a neutral (``3P``); ``v_ll_v`` is ``None`` in ``1P``.
    Energies are this frame's share of the registers (see :func:`compute_frame`).
    """

    ct: str
    load: str
    kind: str
    phase: str
    v_ln_v: float | None
    v_ll_v: float | None
    i_a: float
    p_w: float
    q_var: float
    s_va: float
    pf: float
    energy_import_wh: float
    energy_export_wh: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _CT_FIELDS}


_CT_FIELDS = tuple(f.name for f in fields(CtValues))


@dataclass(frozen=True, slots=True)
class LoadValues:
    """A load: sums over its CTs (its phases).

    ``s_va`` is the arithmetic sum of the phases' apparent powers. The energies are the
    load's net energy of the frame, as import when positive and export when negative.
    """

    name: str
    kind: str
    p_w: float
    q_var: float
    s_va: float
    energy_import_wh: float
    energy_export_wh: float
    phases: tuple[CtValues, ...]

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _LOAD_FIELDS}
        out["phases"] = [phase.to_dict() for phase in self.phases]
        return out


_LOAD_FIELDS = tuple(f.name for f in fields(LoadValues) if f.name != "phases")


@dataclass(frozen=True, slots=True)
class Totals:
    """Location totals by load kind, in W for the window and in Wh for the frame's energy.

    Formulas (X_w from the loads' P, X_wh from their net energy, each clamped per frame):

    * ``grid_w`` = sum of grid loads; ``grid_import_w = max(grid_w, 0)``,
      ``grid_export_w = max(-grid_w, 0)``.
    * ``solar_w`` = sum of solar loads (production > 0); ``battery_w`` = sum of battery loads
      (discharging > 0), split into ``battery_discharge_w`` and ``battery_charge_w``.
    * ``consumption_w`` = sum of ``consumption`` loads when the location has any, else
      ``grid_w + solar_w + battery_w`` (what the house draws). Circuits and appliances are
      sub-meters of consumption: ``submetered_w`` reports their sum, it is not added.
    * ``self_consumption_w = max(max(solar_w, 0) - grid_export_w, 0)``: solar used on site.
    * ``self_supplied_w = max(consumption_w - grid_import_w, 0)``: consumption not from the grid.

    History derives, over any period, with the Wh fields summed per frame:
    self-consumption ratio = sum(self_consumption_wh) / sum(solar_production_wh);
    self-sufficiency ratio = sum(self_supplied_wh) / sum(consumption_wh);
    always-on power = the minimum of consumption_w (averaged per interval, e.g. 5 minutes)
    over the period.
    """

    grid_w: float
    grid_import_w: float
    grid_export_w: float
    solar_w: float
    battery_w: float
    battery_charge_w: float
    battery_discharge_w: float
    consumption_w: float
    submetered_w: float
    self_consumption_w: float
    self_supplied_w: float
    grid_import_wh: float
    grid_export_wh: float
    solar_production_wh: float
    battery_charge_wh: float
    battery_discharge_wh: float
    consumption_wh: float
    self_consumption_wh: float
    self_supplied_wh: float

    def to_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in _TOTALS_FIELDS}


_TOTALS_FIELDS = tuple(f.name for f in fields(Totals))


@dataclass(frozen=True, eq=False)
class CtArrays:
    """Per-CT values as arrays in channel order (the vectorised form of :class:`CtValues`).

    ``v_ln_v`` / ``v_ll_v`` hold NaN where the topology has no such voltage.
    """

    v_ln_v: np.ndarray
    v_ll_v: np.ndarray
    i_a: np.ndarray
    p_w: np.ndarray
    q_var: np.ndarray
    s_va: np.ndarray
    pf: np.ndarray
    energy_import_wh: np.ndarray
    energy_export_wh: np.ndarray


@dataclass(frozen=True, eq=False)
class LoadArrays:
    """Per-load sums as arrays in load order (the vectorised form of :class:`LoadValues`)."""

    p_w: np.ndarray
    q_var: np.ndarray
    s_va: np.ndarray
    energy_import_wh: np.ndarray
    energy_export_wh: np.ndarray


@dataclass(eq=False)
class FrameResult:
    """What one frame yields: live values over its whole cycles and its share of energy.

    Attributes
    ----------
    frequency_hz : float
        Voltage frequency measured over the window.
    window_s : float
        Length of the whole-cycle window the live values are computed over.
    n_cycles : int
        Whole cycles in the window.
    energy_s : float
        Duration of the samples whose energy this frame counts (see :func:`compute_frame`).
    v_ln_v : dict of str to float
        Phase-to-neutral RMS voltage per measured phase (empty for ``3P``).
    v_ll_v : dict of str to float
        Line-to-line RMS voltage per pair, e.g. ``"L1-L2"`` (empty for ``1P``).
    ct : CtArrays
        Per-CT values in channel order; :attr:`cts` gives them as :class:`CtValues`.
    load : LoadArrays
        Per-load sums; :attr:`loads` gives them as :class:`LoadValues`.
    totals : Totals
    carry : Carry
        Pass to the next consecutive frame of the same Power Box.
    config : MeterConfig
    """

    frequency_hz: float
    window_s: float
    n_cycles: int
    energy_s: float
    v_ln_v: dict[str, float]
    v_ll_v: dict[str, float]
    ct: CtArrays
    load: LoadArrays
    totals: Totals
    carry: Carry = field(repr=False)
    config: MeterConfig = field(repr=False)

    @cached_property
    def cts(self) -> tuple[CtValues, ...]:
        """Per-CT values in channel order."""
        a = self.ct
        columns = zip(
            self.config.channels,
            a.v_ln_v.tolist(),
            a.v_ll_v.tolist(),
            a.i_a.tolist(),
            a.p_w.tolist(),
            a.q_var.tolist(),
            a.s_va.tolist(),
            a.pf.tolist(),
            a.energy_import_wh.tolist(),
            a.energy_export_wh.tolist(),
        )
        return tuple(
            CtValues(c.ct, c.load, c.kind, c.phase, _num(vln), _num(vll), i, p, q, s, pf, ei, ee)
            for c, vln, vll, i, p, q, s, pf, ei, ee in columns
        )

    @cached_property
    def loads(self) -> tuple[LoadValues, ...]:
        """Per-load sums in order of first appearance."""
        by_load: dict[str, list[CtValues]] = {}
        for values in self.cts:
            by_load.setdefault(values.load, []).append(values)
        a = self.load
        return tuple(
            LoadValues(name, phases[0].kind, p, q, s, ei, ee, tuple(phases))
            for (name, phases), p, q, s, ei, ee in zip(
                by_load.items(),
                a.p_w.tolist(),
                a.q_var.tolist(),
                a.s_va.tolist(),
                a.energy_import_wh.tolist(),
                a.energy_export_wh.tolist(),
            )
        )

    def ct_values(self, ct: str) -> CtValues:
        """The values of one CT by id."""
        for values in self.cts:
            if values.ct == ct:
                return values
        raise KeyError(ct)

    def load_values(self, name: str) -> LoadValues:
        """The values of one load by name."""
        for values in self.loads:
            if values.name == name:
                return values
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, ints, strings and ``None`` for JSON (no carry)."""
        return {
            "frequency_hz": float(self.frequency_hz),
            "window_s": float(self.window_s),
            "n_cycles": int(self.n_cycles),
            "energy_s": float(self.energy_s),
            "v_ln_v": {k: float(v) for k, v in self.v_ln_v.items()},
            "v_ll_v": {k: float(v) for k, v in self.v_ll_v.items()},
            "cts": [values.to_dict() for values in self.cts],
            "loads": [values.to_dict() for values in self.loads],
            "totals": self.totals.to_dict(),
        }

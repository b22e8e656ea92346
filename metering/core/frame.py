"""From one frame of raw samples to live values and energy: :func:`compute_frame`.

How a frame flows (every sum is over channels at once, no Python loop per CT):

1. the voltages (at most 3 rows) and the currents are each converted once into a
   ``(channels, samples)`` block; a carry's samples stay in their own small block in front;
2. the window of whole cycles comes from the rising edges of the first voltage
   (:mod:`metering.core.cycles`);
3. a basis of ``n_voltages + 3`` rows over the window - the measured voltages, ``cos`` and
   ``sin`` of the fundamental at the measured frequency, and ones - carries the window
   weights; one matrix product of the current block with it gives, per CT,
   ``sum w i v_r``, the fundamental phasor and ``sum w i``; one ``vecdot`` gives
   ``sum w i^2``; the same product of the voltages gives their Gram matrix, phasors and
   means;
4. everything else - DC offsets, RMS, P, Q1, line-to-line voltages, energy, per-load and
   per-kind sums - is algebra on those few numbers per channel
   (``sum (v - <v>)(i - <i>) = sum v i - W <v><i>``), never another pass over the samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from metering.core.config import KINDS, MeterConfig, MeterPlan, plan_for
from metering.core.cycles import Window, basis_grid, find_window, fundamental_basis
from metering.core.results import Carry, CtArrays, FrameResult, LoadArrays, Totals

FS_MIN_HZ = 1_000.0
FS_MAX_HZ = 50_000.0
SECONDS_PER_HOUR = 3600.0

# OpenBLAS multiplies small matrices (M*N*K up to 1e6) with a kernel that skips packing the
# operands; a 28 x 6400 block against 6 basis rows is just above that, and packing costs a
# full extra pass over the currents. Products are therefore summed over column chunks that
# stay under the limit (twice as fast on the reference frame, same result to rounding).
_GEMM_CHUNK_MNK = 1_000_000

_KIND_ROW = {kind: row for row, kind in enumerate(KINDS)}
_NO_VOLTAGE = np.array([np.nan])
_DTYPE = attrgetter("dtype")
_FLOAT32 = np.dtype(np.float32)


def compute_frame(
    voltages: Mapping[str, ArrayLike],
    currents: Mapping[str, ArrayLike],
    fs_hz: float,
    config: MeterConfig,
    carry: Carry | None = None,
) -> FrameResult:
    """Live values and energy of one sample frame of a Power Box (SPEC section 4).

    Parameters
    ----------
    voltages : mapping of str to array_like
        Instantaneous volts of ``"L1"``, ``"L2"``, ``"L3"`` against the reference terminal: N
        where the topology has one, L3 in delta ``3P`` (which therefore sends L1 and L2 only).
        Keys the topology does not use are ignored.
    currents : mapping of str to array_like
        Instantaneous amps per CT id. Every CT of ``config`` must be present; others are
        ignored.
    fs_hz : float
        Sample rate, 1 to 50 kHz.
    config : MeterConfig
        Topology and CT channels.
    carry : Carry, optional
        ``carry`` of the previous frame's result when this frame follows it without a gap
        (consecutive ``seq``); ``None`` after a gap, at start-up or after a configuration
        change. Its samples are prepended to this frame's.

    Returns
    -------
    FrameResult

    Raises
    ------
    ValueError
        Naming the problem and the channel: unknown topology, a phase or kind invalid for it,
        a missing voltage or CT, unequal lengths, empty, non-numeric or non-finite samples, a
        sample rate out of range, no whole cycle in the frame, a carry from another
        configuration.

    Notes
    -----
    *Window.* Live values are computed over the whole cycles between the first and the last
    rising zero crossing of the first voltage channel (or the next one if it has no cycle),
    interpolated to a fraction of a sample; see :mod:`metering.core.cycles`. The samples from
    just before the last crossing onwards are returned in ``carry``.

    *Definitions* (means ``<x>`` are weighted means over the window, IEEE 1459-2010 clause
    3.2, single-phase non-sinusoidal quantities over an integer number of cycles):

    - DC offsets of the sensors are removed first: ``x~ = x - <x>`` for every voltage and
      current, computed algebraically from the same sums, e.g.
      ``<v~ i~> = <v i> - <v><i>``.
    - ``V = sqrt(<v~^2>)`` of the CT's reference voltage (per topology, see
      :mod:`metering.core.config`), ``I = sqrt(<i~^2>)`` (RMS, IEEE 1459 eq. for V and I).
    - ``P = <v~ i~>`` (active power), ``S = V I`` (apparent power), ``PF = P / S``, signed
      like P, and 0 when ``S`` is 0.
    - ``Q1 = V1 I1 sin(theta_v1 - theta_i1)`` (fundamental reactive power, IEEE 1459-2010;
      IEC 62053-24 meters it), positive for a lagging (inductive) current. The fundamental
      phasors come from one matrix product of the window's samples against ``cos`` and
      ``sin`` rows at the measured frequency (a single-bin DFT), not from an FFT.
    - ``V_LN`` is the RMS of the phase voltage and ``V_LL`` the RMS of the instantaneous
      difference of two phases (never sqrt(3) V_LN); in delta ``V_LL`` is the RMS of the
      CT's reference.
    - A reversed CT has its current negated.

    *Energy.* A frame counts the energy of exactly the samples it consumes: from the first
    sample of its buffer (carry included) up to, not including, the first carried sample.
    Chained with ``carry``, every sample is counted once across frames. Per CT the frame's
    energy is ``E = (sum(v i) - n <v><i>) / fs / 3600`` Wh over those ``n`` samples: the
    instantaneous power summed, less the product of the DC offsets measured over the window.
    (Cross terms of an offset with the AC part of the other signal vanish over whole cycles
    and only touch the fraction of a cycle at the edges, which the next frame balances.)
    ``E > 0`` is added to the import register, ``E < 0`` to the export register. Loads sum
    their CTs' net energy before splitting it into import and export.
    """
    plan = _plan(config)
    fs = _check_fs(fs_hz)
    try:
        v_rows = [voltages[key] for key in plan.voltage_keys]
        i_rows = [currents[ct] for ct in plan.ct_ids]
    except (KeyError, TypeError):
        _raise_missing(voltages, currents, plan)
        raise
    n_new, dtype = _check_rows(v_rows, i_rows, plan)
    nv = len(v_rows)
    nc = len(i_rows)
    n_carry = 0
    if carry is not None:
        _check_carry(carry, plan, fs)
        n_carry = carry.n_samples
        dtype = np.result_type(dtype, carry.currents.dtype, carry.voltages.dtype)
    # The carry's samples come first; they stay in their own arrays (joining them to the frame
    # would cost another pass over all currents) and every sum runs over both parts.
    vs = _Split(carry.voltages if n_carry else None, _as_block(v_rows, plan.voltage_keys, "voltage", n_new, dtype))

    # Bad samples (NaN, inf, huge) must end in a ValueError naming the channel, not in
    # floating-point warnings on the way: _check_finite raises once the sums are known.
    with np.errstate(all="ignore"):
        window = _find_window(vs, fs, plan)
        first, last = window.first, window.last
        w_first, w_last = window.w_first, window.w_last
        length = window.length
        width = last - first + 1

        # Basis rows over the window: the measured voltages, cos, sin, 1. The end columns carry the
        # end samples' weights, so every product with the basis is a weighted window sum:
        # sums_v[r] and sums_i[c] = sum over the window of w * x * [v_1 .. v_nv, cos, sin, 1].
        rows, block = basis_grid(width)
        basis_full = np.empty((nv + 3, rows * block), dtype)
        fundamental_basis(basis_full[nv : nv + 2].reshape(2, rows, block), window, fs)
        basis = basis_full[:, :width]
        for part, offset in vs.parts(first, last):
            basis[:nv, offset : offset + part.shape[1]] = part
        basis[nv + 2] = 1.0
        basis[:, 0] *= w_first
        basis[:, -1] *= w_last
        # The currents last: converting them streams all the frame's bytes through the caches.
        i_new = _as_block(i_rows, plan.ct_ids, "current", n_new, dtype)
        cs = _Split(carry.currents if n_carry else None, i_new)
        sums_v = sums_i = sq_i = None
        for (v_part, offset), (i_part, _) in zip(vs.parts(first, last), cs.parts(first, last)):
            basis_part = basis[:, offset : offset + i_part.shape[1]]
            part_v = v_part @ basis_part.T
            part_i = _products(i_part, basis_part)
            part_sq = np.vecdot(i_part, i_part)
            if sums_v is None:
                sums_v, sums_i, sq_i = part_v, part_i, part_sq
            else:
                sums_v += part_v
                sums_i += part_i
                sq_i += part_sq

        # The consumed samples are [0, cut). Against the window they add the columns [0, first)
        # and 1 - w_first of column first, and lack the columns [cut, last) and w_last of column
        # last: a fraction of a cycle at each end.
        cut = window.carry_from
        # The columns after the window weigh 0 here: they only let a NaN there show in edge_vi.
        i_edge = np.concatenate((cs.columns(0, first), cs.columns(cut, cs.n - 1)), axis=1)
        v_edge = np.concatenate((vs.columns(0, first), vs.columns(cut, vs.n - 1)), axis=1)
        weights = np.empty(v_edge.shape[1], dtype)
        weights[:first] = 1.0
        weights[first] = 1.0 - w_first
        end = first + 1 + last - cut  # column of `last` in the edge block
        weights[first + 1 : end] = -1.0
        weights[end] = -w_last
        weights[end + 1 :] = 0.0
        edge_vi = i_edge @ (v_edge * weights).T  # consumed minus window sums of i * v_r
        # sq_i: the vecdot weighed the end columns 1 instead of w_first and w_last.
        i_ends = i_edge[:, first : end + 1 : end - first]  # columns first and last
        sq_i -= (i_ends * i_ends) @ np.array((1.0 - w_first, 1.0 - w_last), dtype)
        _check_finite(vs, sums_v, sq_i, edge_vi, plan, cs)
    if dtype != np.float64:
        sums_v, sums_i, sq_i, edge_vi = (x.astype(np.float64) for x in (sums_v, sums_i, sq_i, edge_vi))

    # Every voltage combination q (references, line-to-line pairs) from the sums with the
    # measured voltages: combo_sums[q] = sum w v_q [v_1 .. v_nv, cos, sin, 1].
    # Phasors need no DC correction: over the window the weighted cos and sin rows sum to
    # under 1e-6 of W/2 (and stay orthogonal to that), so an offset of a few % of the peak
    # moves a phasor by under 1e-7.
    inv = 1.0 / length
    combo_sums = plan.combos @ sums_v
    combo_mean = combo_sums[:, nv + 2] * inv
    combo_ms = np.vecdot(combo_sums[:, :nv], plan.combos) * inv - combo_mean * combo_mean
    combo_rms = np.concatenate((np.sqrt(np.maximum(combo_ms, 0.0)), _NO_VOLTAGE))  # [-1]: none

    # Currents against their references: P = <v i> - <v><i>, Q1 from the phasors.
    ref_sums = combo_sums[plan.ref_index]  # (nc, nv + 3)
    vi = np.vecdot(sums_i[:, :nv], plan.ref_coef)
    mean_i = sums_i[:, nv + 2] * inv
    ref_mean = ref_sums[:, nv + 2] * inv
    p = (vi * inv - ref_mean * mean_i) * plan.sign
    q = (ref_sums[:, nv] * sums_i[:, nv + 1] - ref_sums[:, nv + 1] * sums_i[:, nv]) * (plan.sign * (2.0 * inv * inv))
    i_rms = np.sqrt(np.maximum(sq_i * inv - mean_i * mean_i, 0.0))
    s = combo_rms[plan.ref_index] * i_rms
    energy_wh = (vi + np.vecdot(edge_vi, plan.ref_coef) - cut * ref_mean * mean_i) * (
        plan.sign * (1.0 / (fs * SECONDS_PER_HOUR))
    )
    if nc and np.minimum.reduce(s) > 0.0:
        pf = p / s
    else:  # no current (or no voltage): everything 0, without dividing by 0
        live = s > 0.0
        p, q, energy_wh = p * live, q * live, energy_wh * live
        pf = p / np.where(live, s, 1.0)

    per_ct = np.array((p, q, s, energy_wh))  # (4, nc)
    per_load = per_ct @ plan.load_matrix.T  # (4, n_loads)
    by_kind = (per_load[::3] @ plan.kind_matrix.T).T.tolist()  # per kind: [P, E]
    energies = np.concatenate((per_ct[3], per_load[3]))
    imports = np.maximum(energies, 0.0)
    exports = np.maximum(-energies, 0.0) + 0.0  # + 0.0: no -0.0
    combo_list = combo_rms.tolist()
    return FrameResult(
        frequency_hz=window.frequency_hz,
        window_s=length / fs,
        n_cycles=window.n_cycles,
        energy_s=cut / fs,
        v_ln_v={label: combo_list[row] for label, row in plan.ln_summary},
        v_ll_v={label: combo_list[row] for label, row in plan.ll_summary},
        ct=CtArrays(
            v_ln_v=combo_rms[plan.ln_index],
            v_ll_v=combo_rms[plan.ll_index],
            i_a=i_rms,
            p_w=p,
            q_var=q,
            s_va=s,
            pf=pf,
            energy_import_wh=imports[:nc],
            energy_export_wh=exports[:nc],
        ),
        load=LoadArrays(
            p_w=per_load[0],
            q_var=per_load[1],
            s_va=per_load[2],
            energy_import_wh=imports[nc:],
            energy_export_wh=exports[nc:],
        ),
        totals=_totals(by_kind, plan.has_consumption),
        carry=Carry(fs, plan.voltage_keys, plan.ct_ids, vs.tail(cut), cs.tail(cut)),
        config=config,
    )


def flow_totals(power_w: Mapping[str, float], kinds: Mapping[str, str]) -> dict[str, float]:
    """Location power flows from the power of each load, with the formulas of :class:`Totals`.

    Parameters
    ----------
    power_w : mapping of str to float
        Active power per load name (W), signed as in :func:`compute_frame`.
    kinds : mapping of str to str
        Kind per load name (:data:`metering.core.config.KINDS`); loads without a kind are
        ignored.

    Returns
    -------
    dict of str to float
        The ``*_w`` fields of :class:`Totals`: ``grid_w``, ``grid_import_w``,
        ``grid_export_w``, ``solar_w``, ``battery_w``, ``battery_charge_w``,
        ``battery_discharge_w``, ``consumption_w``, ``submetered_w``, ``self_consumption_w``,
        ``self_supplied_w``. The same formulas apply to energies (Wh) of one interval.
    """
    by_kind = [[0.0, 0.0] for _ in KINDS]
    has_consumption = False
    for name, p in power_w.items():
        kind = kinds.get(name)
        if kind in _KIND_ROW:
            by_kind[_KIND_ROW[kind]][0] += float(p)
            has_consumption |= kind == "consumption"
    totals = _totals(by_kind, has_consumption)
    return {name: getattr(totals, name) for name in Totals.__dataclass_fields__ if name.endswith("_w")}


def _totals(by_kind: list[list[float]], has_consumption: bool) -> Totals:
    """Location totals from per-kind ``[P, E]`` sums (rows in :data:`KINDS` order); formulas
    in :class:`Totals`."""
    grid_w, grid_wh = by_kind[_KIND_ROW["grid"]]
    solar_w, solar_wh = by_kind[_KIND_ROW["solar"]]
    battery_w, battery_wh = by_kind[_KIND_ROW["battery"]]
    if has_consumption:
        consumption_w, consumption_wh = by_kind[_KIND_ROW["consumption"]]
    else:
        consumption_w = grid_w + solar_w + battery_w
        consumption_wh = grid_wh + solar_wh + battery_wh
    submetered_w = by_kind[_KIND_ROW["circuit"]][0] + by_kind[_KIND_ROW["appliance"]][0]
    grid_import_w, grid_export_w = max(0.0, grid_w), max(0.0, -grid_w)
    grid_import_wh, grid_export_wh = max(0.0, grid_wh), max(0.0, -grid_wh)
    solar_production_wh = max(0.0, solar_wh)
    return Totals(
        grid_w=grid_w,
        grid_import_w=grid_import_w,
        grid_export_w=grid_export_w,
        solar_w=solar_w,
        battery_w=battery_w,
        battery_charge_w=max(0.0, -battery_w),
        battery_discharge_w=max(0.0, battery_w),
        consumption_w=consumption_w,
        submetered_w=submetered_w,
        self_consumption_w=max(0.0, max(0.0, solar_w) - grid_export_w),
        self_supplied_w=max(0.0, consumption_w - grid_import_w),
        grid_import_wh=grid_import_wh,
        grid_export_wh=grid_export_wh,
        solar_production_wh=solar_production_wh,
        battery_charge_wh=max(0.0, -battery_wh),
        battery_discharge_wh=max(0.0, battery_wh),
        consumption_wh=consumption_wh,
        self_consumption_wh=max(0.0, solar_production_wh - grid_export_wh),
        self_supplied_wh=max(0.0, consumption_wh - grid_import_wh),
    )


class _Split:
    """Columns of a virtual block ``[head | new]``: the carried samples, then the frame's."""

    __slots__ = ("head", "new", "m")

    def __init__(self, head: np.ndarray | None, new: np.ndarray) -> None:
        self.head = head
        self.new = new
        self.m = 0 if head is None else head.shape[1]

    @property
    def n(self) -> int:
        return self.m + self.new.shape[1]

    def parts(self, lo: int, hi: int) -> list[tuple[np.ndarray, int]]:
        """Columns ``lo..hi`` (inclusive) as ``(view, offset)`` pairs, ``offset`` from ``lo``."""
        m = self.m
        if lo >= m:
            return [(self.new[:, lo - m : hi + 1 - m], 0)]
        if hi < m:
            return [(self.head[:, lo : hi + 1], 0)]
        return [(self.head[:, lo:], 0), (self.new[:, : hi + 1 - m], m - lo)]

    def columns(self, lo: int, hi: int) -> np.ndarray:
        """Columns ``lo..hi`` (inclusive) as one array (a view when they are in one part)."""
        parts = self.parts(lo, hi)
        return parts[0][0] if len(parts) == 1 else np.concatenate((parts[0][0], parts[1][0]), axis=1)

    def row(self, r: int) -> np.ndarray:
        """All the columns of row ``r``."""
        return self.new[r] if self.head is None else np.concatenate((self.head[r], self.new[r]))

    def tail(self, lo: int) -> np.ndarray:
        """A copy of the columns from ``lo`` on."""
        if lo >= self.m:
            return self.new[:, lo - self.m :].copy()
        return np.concatenate((self.head[:, lo:], self.new), axis=1)


def _check_finite(
    vs: _Split, sums_v: np.ndarray, sq_i: np.ndarray, edge_vi: np.ndarray, plan: MeterPlan, cs: _Split
) -> None:
    """Raise naming the channel if a sample of this frame is NaN or infinite.

    A non-finite sample makes a sum it enters non-finite: the window's sums (``sums_v``
    holds every voltage's sum of squares, ``sq_i`` every current's) and the products over the
    columns outside the window (``edge_vi``). Only when a total is not finite are the
    channels searched.
    """
    total = np.add.reduce(sums_v, axis=None) + np.add.reduce(sq_i) + np.add.reduce(edge_vi, axis=None)
    if not cs.new.shape[0]:  # no CT: the voltage columns outside the window are in no product
        total += np.add.reduce(vs.new, axis=None)
    if math.isfinite(total):
        return
    _raise_not_finite(vs.new, plan.voltage_keys, "voltage")
    _raise_not_finite(cs.new, plan.ct_ids, "current")


def _products(block: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``block @ basis.T``, summed over column chunks small enough for OpenBLAS' unpacked kernel."""
    rows, n = block.shape
    chunk = max(1, _GEMM_CHUNK_MNK // max(1, rows * basis.shape[0]))
    if n <= chunk or rows == 0:
        return block @ basis.T
    pieces = -(-n // chunk)
    step = -(-n // pieces)
    out = block[:, :step] @ basis[:, :step].T
    for start in range(step, n, step):
        out += block[:, start : start + step] @ basis[:, start : start + step].T
    return out


def _find_window(vs: _Split, fs: float, plan: MeterPlan) -> Window:
    """The whole-cycle window of the first voltage channel that has one."""
    for row in range(vs.new.shape[0]):
        window = find_window(vs.row(row), fs)
        if window is not None:
            return window
    _raise_not_finite(vs.new, plan.voltage_keys, "voltage")
    raise ValueError(
        f"no whole cycle: voltage {plan.voltage_keys[0]} has fewer than two rising zero crossings "
        f"in {vs.n} samples ({vs.n / fs:.4g} s at {fs:g} Hz)"
    )


_plans: dict[int, tuple[MeterConfig, MeterPlan]] = {}


def _plan(config: MeterConfig) -> MeterPlan:
    """:func:`plan_for` with a cache by identity first (hashing 28 channels costs more)."""
    hit = _plans.get(id(config))
    if hit is not None and hit[0] is config:
        return hit[1]
    plan = plan_for(config)
    if len(_plans) > 256:
        _plans.clear()
    _plans[id(config)] = (config, plan)
    return plan


def _check_fs(fs_hz: float) -> float:
    try:
        fs = float(fs_hz)
    except (TypeError, ValueError):
        raise ValueError(f"fs_hz must be a number, got {fs_hz!r}") from None
    if not (FS_MIN_HZ <= fs <= FS_MAX_HZ):
        raise ValueError(f"fs_hz must be between 1 and 50 kHz, got {fs_hz!r}")
    return fs


def _raise_missing(voltages: Mapping[str, ArrayLike], currents: Mapping[str, ArrayLike], plan: MeterPlan) -> None:
    for name, mapping in (("voltages", voltages), ("currents", currents)):
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{name} must be a mapping of channel names to samples, got {type(mapping).__name__}")
    missing = [key for key in plan.voltage_keys if key not in voltages]
    if missing:
        raise ValueError(
            f"topology {plan.config.topology} needs voltages {', '.join(plan.voltage_keys)}; "
            f"missing {', '.join(missing)}"
        )
    for channel in plan.config.channels:
        if channel.ct not in currents:
            raise ValueError(f"no currents for CT {channel.ct} (load {channel.load!r}) in this frame")
    raise AssertionError("nothing missing")  # pragma: no cover


def _length(x: Any, name: str) -> int:
    try:
        return len(x)
    except TypeError:
        raise ValueError(f"{name} must be an array of samples, got {type(x).__name__}") from None


def _check_rows(v_rows: list[Any], i_rows: list[Any], plan: MeterPlan) -> tuple[int, np.dtype]:
    """Check the lengths and types; return the frame's length and the working dtype.

    The working dtype is float32 when every channel is a float32 array, else float64.
    """
    reference = plan.voltage_keys[0]
    n = _length(v_rows[0], f"voltage {reference}")
    if n == 0:
        raise ValueError(f"voltage {reference} is empty")
    rows = v_rows + i_rows
    try:
        lengths = list(map(len, rows))
    except TypeError:
        lengths = [-1]
    if lengths.count(n) != len(rows):
        names = [f"voltage {key}" for key in plan.voltage_keys] + [f"current {ct}" for ct in plan.ct_ids]
        for name, x in zip(names, rows):
            length = _length(x, name)
            if length != n:
                raise ValueError(f"{name} has {length} samples; voltage {reference} has {n}")
    try:
        dtypes = set(map(_DTYPE, rows))
    except AttributeError:  # lists: read as float64
        dtypes = {getattr(x, "dtype", None) for x in rows}
    if dtypes == {_FLOAT32}:
        return n, np.dtype(np.float32)
    if any(dtype is not None and dtype.kind == "c" for dtype in dtypes):
        names = [f"voltage {key}" for key in plan.voltage_keys] + [f"current {ct}" for ct in plan.ct_ids]
        name = next(name for name, x in zip(names, rows) if np.iscomplexobj(x))
        raise ValueError(f"{name} is not an array of real numbers (complex)")
    return n, np.dtype(np.float64)


def _as_block(rows: list[Any], names: Sequence[str], kind: str, n: int, dtype: np.dtype) -> np.ndarray:
    """The rows of one mapping as one (channels, n) array: its one conversion."""
    if not rows:
        return np.empty((0, n), dtype)
    try:
        block = np.asarray(rows, dtype=dtype)
    except (TypeError, ValueError):
        block = None
    if block is None or block.shape != (len(rows), n):
        for name, row in zip(names, rows):
            _explain_row(row, n, f"{kind} {name}")
        raise ValueError(f"{kind}s could not be read as {len(rows)} arrays of {n} numbers")
    return block


def _explain_row(samples: Any, n: int, name: str) -> None:
    """Raise a ``ValueError`` naming what is wrong with one channel's samples, if anything."""
    try:
        x = np.asarray(samples)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not an array of real numbers") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} is not an array of real numbers (dtype {x.dtype})")
    if x.shape[0] != n:  # pragma: no cover - lengths are checked before
        raise ValueError(f"{name} has {x.shape[0]} samples, expected {n}")


def _raise_not_finite(block: np.ndarray, names: Sequence[str], kind: str) -> None:
    """Raise naming the first channel with a NaN, an infinity or a sample too large to square."""
    for name, row in zip(names, block):
        if not np.isfinite(row).all():
            raise ValueError(f"{kind} {name} contains NaN or infinite values")
    for name, row in zip(names, block):
        peak = float(np.abs(row).max()) if row.size else 0.0
        if peak > 1e150:
            raise ValueError(f"{kind} {name} has values too large to meter ({peak:g})")


def _check_carry(carry: Carry, plan: MeterPlan, fs: float) -> None:
    if not isinstance(carry, Carry):
        raise ValueError(f"carry must be a Carry from a previous FrameResult, got {type(carry).__name__}")
    if carry.fs_hz != fs or carry.voltage_keys != plan.voltage_keys or carry.ct_ids != plan.ct_ids:
        raise ValueError(
            "carry comes from a frame with another configuration or sample rate; pass carry=None "
            "after a configuration change or a gap"
        )

"""From one frame of raw samples to live values and energy: :func:`compute_frame`.

How a frame flows (every sum is over channels at once, no Python loop per CT):

1. the samples are checked once per frame, not per channel, when they are float arrays of
   one length and dtype; when they are consecutive rows of one 2-D array (a frame decoded by
   :mod:`metering.ingest.frames`, or :func:`compute_block`) they are used in place, else the
   currents are copied into one ``(channels, samples)`` block just before they are streamed.
   A carry's samples stay in their own small arrays in front;
2. the voltages (carry, then frame) are copied into the first rows of a basis over the whole
   buffer; the window of whole cycles comes from the rising edges of its first row
   (:mod:`metering.core.cycles`); the other rows are ``cos`` and ``sin`` of the fundamental at
   the measured frequency, and ones;
3. the *core* - the frame's columns inside the window and consumed, where every weight is 1 -
   streams once: one matrix product of the current block with the basis gives, per CT,
   ``sum i v_1 .. i v_nv``, the fundamental phasor and ``sum i``, and ``vecdot`` gives
   ``sum i^2``. The *edges* (the carry, the lead-in, the window's two end samples, the
   samples carried on) are a few hundred columns, multiplied by a basis that holds their
   window and consumption weights;
4. everything else - DC offsets, RMS, P, Q1, line-to-line voltages, energy, per-load and
   per-kind sums - is algebra on those few numbers per channel
   (``sum (v - <v>)(i - <i>) = sum v i - W <v><i>``), in a few products with matrices that
   depend on the configuration only, never another pass over the samples. All that needs
   only the voltages is done before the currents stream: afterwards each kind of small numpy
   call costs several times more, its code and data having left the caches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import repeat
from operator import attrgetter, is_, itemgetter
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
_DTYPE = attrgetter("dtype")
_FLOAT32 = np.dtype(np.float32)
_FAST_DTYPES = (np.dtype(np.float64), _FLOAT32)
_NDARRAY = {np.ndarray}
_NDIM = attrgetter("ndim")
_ONE = {1}
_STRIDES = itemgetter("strides")
_BASE = attrgetter("base")
_INTERFACE = attrgetter("__array_interface__")


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

    *Samples in place.* Arrays of float64 (or float32) are read, never written. When the
    configuration's voltages, or its CTs, are consecutive rows of one 2-D array in the
    configuration's order - as :func:`metering.ingest.frames.decode_binary` hands them out - they
    are used as a view of it; otherwise the currents are copied into one block once.
    """
    plan = _plan(config)
    fs = _check_fs(fs_hz)
    try:
        v_rows = [voltages[key] for key in plan.voltage_keys]
        i_rows = [currents[ct] for ct in plan.ct_ids]
    except (KeyError, TypeError):
        _raise_missing(voltages, currents, plan)
        raise
    blocks = _fast_blocks(v_rows, i_rows)
    if blocks is None:  # lists, other dtypes, bad input: checked one by one, converted once
        n_new, dtype = _check_rows(v_rows, i_rows, plan)
        if carry is not None:
            _check_carry(carry, plan, fs)
        v_block = _as_block(v_rows, plan.voltage_keys, "voltage", n_new, dtype)
        i_block = _as_block(i_rows, plan.ct_ids, "current", n_new, dtype)
    else:
        v_block, i_block = blocks
        if carry is not None:
            _check_carry(carry, plan, fs)
    return _compute(v_block, i_block, fs, config, plan, carry)


def compute_block(
    voltage_block: np.ndarray,
    voltage_keys: Sequence[str],
    current_block: np.ndarray,
    ct_ids: Sequence[str],
    fs_hz: float,
    config: MeterConfig,
    carry: Carry | None = None,
) -> FrameResult:
    """:func:`compute_frame` for samples that are already ``(channels, samples)`` blocks.

    Parameters
    ----------
    voltage_block : ndarray, shape (n_voltages, n)
        One row per name of ``voltage_keys``.
    voltage_keys : sequence of str
        Names of the rows of ``voltage_block``, e.g. ``("L1", "L2", "L3")``.
    current_block : ndarray, shape (n_cts, n)
        One row per CT id of ``ct_ids``.
    ct_ids : sequence of str
        Names of the rows of ``current_block``; CTs the configuration does not have are
        ignored.
    fs_hz, config, carry
        As for :func:`compute_frame`.

    Returns
    -------
    FrameResult

    Raises
    ------
    ValueError
        As :func:`compute_frame`, and when a block has another number of rows than names.

    Notes
    -----
    When the configuration's voltages and CTs are consecutive rows of the blocks, in the
    configuration's order, the blocks are used as they are (no copy); otherwise the rows are
    taken by name and everything goes through :func:`compute_frame`.
    """
    plan = _plan(config)
    fs = _check_fs(fs_hz)
    v_block = _rows_by_name(voltage_block, voltage_keys, plan.voltage_keys)
    i_block = _rows_by_name(current_block, ct_ids, plan.ct_ids)
    if v_block is None or i_block is None or not _fast_pair(v_block, i_block):
        voltages = _named_rows(voltage_block, voltage_keys, "voltage")
        currents = _named_rows(current_block, ct_ids, "current")
        return compute_frame(voltages, currents, fs_hz, config, carry)
    if carry is not None:
        _check_carry(carry, plan, fs)
    return _compute(v_block, i_block, fs, config, plan, carry)


def _compute(
    v_source: np.ndarray | list[np.ndarray],
    i_source: np.ndarray | list[np.ndarray],
    fs: float,
    config: MeterConfig,
    plan: MeterPlan,
    carry: Carry | None,
) -> FrameResult:
    """The frame's results from validated samples in the plan's row order.

    Each source is a ``(channels, n)`` array of float64 or float32 with ``n > 0``, or the
    list of its rows (1-D arrays of one such dtype and length): the voltages are copied into
    the basis, the currents into one block just before they are streamed. Arrays may be
    views of the caller's and are only read.

    Once the currents have streamed through the caches, each kind of small numpy call costs a
    few times more (its code and data come back from memory). So everything that does not
    need the whole currents is done before, and only a few calls on per-CT numbers after.
    """
    nv = len(v_source)
    dtype = v_source[0].dtype
    m = 0 if carry is None else carry.n_samples
    head_v = head_i = None
    if m:
        # The carried samples come first. They stay in their own small arrays: joining them to
        # the frame would cost another pass over all the currents.
        head_v, head_i = carry.voltages, carry.currents
        if head_v.dtype != dtype or head_i.dtype != dtype:
            dtype = np.result_type(dtype, head_v.dtype, head_i.dtype)
    n = m + v_source[0].shape[0]

    # Bad samples (NaN, inf, huge) must end in a ValueError naming the channel, not in
    # floating-point warnings on the way: the checks below raise once the sums are known.
    with np.errstate(all="ignore"):
        # The basis over the whole buffer: rows v_1 .. v_nv (carry, then frame), cos and sin
        # of the fundamental at the measured frequency, ones. The window comes from its rows.
        grid_rows, grid_block = basis_grid(n)
        basis = np.empty((nv + 3, grid_rows * grid_block), dtype)
        if m:
            basis[:nv, :m] = head_v
        v_block = basis[:nv, m:n]
        if isinstance(v_source, np.ndarray):
            v_block[...] = v_source
        else:
            for row, samples in zip(v_block, v_source):
                row[...] = samples
        window = _find_window(basis[:nv, :n], fs, plan, v_block)
        first, last, cut = window.first, window.last, window.carry_from
        fundamental_basis(basis[nv : nv + 2].reshape(2, grid_rows, grid_block), window, fs, start=0)
        basis[nv + 2] = 1.0

        # The core, columns [lo, cut) of the frame, is inside the window and consumed: weight 1
        # for both. The edges are the other columns: [0, lo) (carry, lead-in, the window's
        # first sample), then [cut, n) (the window's end, then the samples carried on). Their
        # basis has rows v consumed (1 before cut), then v, cos, sin, 1 with the window's
        # weights; columns after the window weigh 0, so a NaN there still shows in a sum.
        lo = min(max(first + 1, m), cut)
        core = basis[:, lo:cut] if lo >= m else basis[:, :0]
        edge = np.concatenate((basis[:, :lo], basis[:, cut:n]), axis=1)  # (nv + 3, n_edge)
        weights = _weight_values(nv).astype(dtype)  # per row: consumed (v), window (v, cos, sin, 1)
        weights[nv:, 1], weights[nv:, 4] = window.w_first, window.w_last
        weights = weights.repeat((first, 1, lo - first - 1, last - cut, 1, n - last - 1), axis=1)
        edge_basis = edge[_edge_rows(nv)] * weights  # (2 nv + 3, n_edge)
        sums_v = edge[:nv] @ edge_basis[nv:].T + core[:nv] @ core.T  # window sums of v [v, cos, sin, 1]
        if dtype != np.float64:
            sums_v = sums_v.astype(np.float64)

        # Voltages: sum w (v_a - <v_a>)(v_b - <v_b>) of the measured channels, then the mean
        # square of every combination q (references, line-to-line pairs) as the quadratic form
        # of its coefficients c_q: one product with the rows c_q (x) c_q. The last row is NaN:
        # the value of "no such voltage".
        inv = 1.0 / window.length
        cov = sums_v[:, :nv] - (sums_v[:, nv + 2] * inv)[:, None] * sums_v[:, nv + 2]
        combo_ms = plan.combo_forms @ cov.ravel()
        if not math.isfinite(np.add.reduce(combo_ms[:-1])):
            _raise_not_finite(v_block, plan.voltage_keys, "voltage")
        combo_rms = np.sqrt(np.maximum(combo_ms * inv, 0.0))
        v_ln, v_ll, v_ref = combo_rms[plan.voltage_index]
        combo_list = combo_rms.tolist()
        v_ln_v = {label: combo_list[row] for label, row in plan.ln_summary}
        v_ll_v = {label: combo_list[row] for label, row in plan.ll_summary}

        # Per CT, P, Q1 and E are bilinear in the CT's sums and its reference's:
        # P = <v i> - <v><i>, Q1 = 2/W^2 (R_c I_s - R_s I_c), E = (sum_consumed v i - cut <v><i>)
        # / fs / 3600, signed. pqe[ct, j] holds what multiplies the CT's sum j in each of them
        # (edge sums: consumed i v_1 .. i v_nv, window i v_1 .. i v_nv, i cos, i sin, i);
        # pqe_core the same for the core's sums (i v_1 .. i v_nv, i cos, i sin, i).
        ref = plan.signed_ref_coef @ np.concatenate((_pair_eye(nv), sums_v[:, _swap(nv)]), axis=1)
        k = 1.0 / (fs * SECONDS_PER_HOUR)
        pqe = ref[:, :, None] * (_bilinear(nv) @ (k, inv, 2.0 * inv * inv, -inv * inv, -cut * inv * inv * k))
        pqe_core = _fold(nv) @ pqe

        # The streaming part, all the frame's bytes once: the currents' one conversion (if
        # they are not a block yet), their product with the core's basis and their squares.
        # The edges first: with a block given, they are still done before the stream.
        i_block = i_source if isinstance(i_source, np.ndarray) else np.array(i_source, dtype)
        i_edge = _edge_columns(head_i, i_block, lo, cut)
        i_core = i_block[:, lo - m : cut - m] if lo >= m else i_block[:, :0]
        sums_edge = i_edge @ edge_basis.T  # (nc, 2 nv + 3)
        sq_edge = (i_edge * i_edge) @ weights[nv]
        if dtype != np.float64:  # the sums in float32, the algebra in float64
            sums_edge, sq_edge = sums_edge.astype(np.float64), sq_edge.astype(np.float64)
        pqe_edge = np.matmul(sums_edge[:, None, :], pqe)
        core_i, sq_i = _products(i_core, core)  # (nc, nv + 3), (nc,)
        if dtype != np.float64:
            core_i, sq_i = core_i.astype(np.float64), sq_i.astype(np.float64)

        nc = sq_i.shape[0]
        per_ct = np.empty((4, nc))  # P, Q, E, S
        pqe_t = per_ct[:3].T[:, None, :]
        np.matmul(core_i[:, None, :], pqe_core, out=pqe_t)
        pqe_t += pqe_edge
        sq_i += sq_edge
        sum_i = core_i[:, nv + 2] + sums_edge[:, 2 * nv + 2]
        i_rms = np.sqrt(np.maximum(sq_i * window.length - sum_i * sum_i, 0.0)) * inv
        s = per_ct[3]
        np.multiply(v_ref, i_rms, out=s)
        # Every sample enters a sum with a non-zero weight or a product with a 0 weight: a NaN
        # or an infinity shows in the voltages' mean squares (above) or in a CT's values.
        if not math.isfinite(np.add.reduce(per_ct, axis=None)):
            _raise_not_finite(i_block, plan.ct_ids, "current")
        if nc and np.minimum.reduce(s) > 0.0:
            pf = per_ct[0] / s
        else:  # no current (or no voltage): everything 0, without dividing by 0
            live = s > 0.0
            per_ct[:3] *= live
            pf = per_ct[0] / np.where(live, s, 1.0)

    # Per CT (identity), per load and per kind at once; energies of CTs and loads in one row.
    flows = per_ct @ plan.flow_matrix  # (4, n_cts + n_loads + len(KINDS))
    n_sums = nc + len(plan.load_names)
    energies = flows[2, :n_sums]
    imports = np.maximum(energies, 0.0)
    exports = imports - energies  # max(-E, 0), never -0.0
    return FrameResult(
        frequency_hz=window.frequency_hz,
        window_s=window.length / fs,
        n_cycles=window.n_cycles,
        energy_s=cut / fs,
        v_ln_v=v_ln_v,
        v_ll_v=v_ll_v,
        ct=CtArrays(
            v_ln_v=v_ln,
            v_ll_v=v_ll,
            i_a=i_rms,
            p_w=per_ct[0],
            q_var=per_ct[1],
            s_va=s,
            pf=pf,
            energy_import_wh=imports[:nc],
            energy_export_wh=exports[:nc],
        ),
        load=LoadArrays(
            p_w=flows[0, nc:n_sums],
            q_var=flows[1, nc:n_sums],
            s_va=flows[3, nc:n_sums],
            energy_import_wh=imports[nc:],
            energy_export_wh=exports[nc:],
        ),
        totals=_totals(flows[:3:2, n_sums:].T.tolist(), plan.has_consumption),
        carry=Carry(fs, plan.voltage_keys, plan.ct_ids, edge[:nv, lo:], i_edge[:, lo:]),
        config=config,
    )


@lru_cache(maxsize=8)
def _fold(nv: int) -> np.ndarray:
    """``F`` with ``core_sums @ F`` the core's sums in the layout of the edge sums.

    The core's columns are ``i v_1 .. i v_nv, i cos, i sin, i``; the edges' are consumed
    ``i v``, window ``i v``, ``i cos, i sin, i``: in the core both weights are 1.
    ``F @ pqe`` then gives the coefficients of the core's sums.
    """
    fold = np.zeros((nv + 3, 2 * nv + 3))
    fold[:nv, :nv] = fold[:nv, nv : 2 * nv] = np.eye(nv)
    fold[nv:, 2 * nv :] = np.eye(3)
    return _frozen(fold)


@lru_cache(maxsize=8)
def _weight_values(nv: int) -> np.ndarray:
    """Weights of the edges' basis rows over the spans ``[0, first)``, ``first``, ``(first, lo)``,
    ``[cut, last)``, ``last``, ``(last, n)``: 1 before ``cut`` for the consumed rows; 0, ``w_first``
    (set per frame), 1, 1, ``w_last`` (set per frame), 0 for the window's."""
    values = np.array(((1.0, 1.0, 1.0, 0.0, 0.0, 0.0),) * nv + ((0.0, 0.0, 1.0, 1.0, 0.0, 0.0),) * (nv + 3))
    return _frozen(values)


@lru_cache(maxsize=8)
def _edge_rows(nv: int) -> np.ndarray:
    """Rows of the edges' basis taken from ``[v, cos, sin, 1]``: v (consumed), then all."""
    return _frozen(np.r_[np.arange(nv), np.arange(nv + 3)])


@lru_cache(maxsize=8)
def _swap(nv: int) -> np.ndarray:
    """Columns ``sin, cos, 1`` of a voltage's sums ``[v, cos, sin, 1]``."""
    return _frozen(np.array((nv + 1, nv, nv + 2)))


@lru_cache(maxsize=8)
def _pair_eye(nv: int) -> np.ndarray:
    """``[I | I]``: a reference's coefficients against both voltage parts of ``sums_i``."""
    return _frozen(np.concatenate((np.eye(nv), np.eye(nv)), axis=1))


@lru_cache(maxsize=8)
def _bilinear(nv: int) -> np.ndarray:
    """``Z`` with ``Z @ (k, 1/W, 2/W^2, -1/W^2, -cut k/W^2)`` the coefficients of P, Q, E.

    Rows are the columns of ``sums_i * ref``: nv consumed ``i v_ref``, nv window ``i v_ref``,
    ``I_c R_s``, ``I_s R_c``, ``I_1 R_1``; columns P, Q, E; ``k = 1 / (fs 3600)``.
    """
    z = np.zeros((2 * nv + 3, 3, 5))
    z[:nv, 2, 0] = 1.0  # E: k sum_consumed v i
    z[nv : 2 * nv, 0, 1] = 1.0  # P: <v i>
    z[2 * nv, 1, 3] = 2.0  # Q: -2/W^2 I_c R_s  (2 * -1/W^2)
    z[2 * nv + 1, 1, 2] = 1.0  # Q: +2/W^2 I_s R_c
    z[2 * nv + 2, 0, 3] = 1.0  # P: -<v><i>
    z[2 * nv + 2, 2, 4] = 1.0  # E: -cut k <v><i>
    return _frozen(z)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


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


def _edge_columns(head: np.ndarray | None, block: np.ndarray, lo: int, cut: int) -> np.ndarray:
    """Columns ``[0, lo)`` and ``[cut, n)`` of the buffer ``[head | block]`` as one new array."""
    m = 0 if head is None else head.shape[1]
    if cut < m:  # the last edge is in the carry (a frame shorter than the carry): every new column is an edge
        return np.concatenate((head[:, :lo], head[:, cut:], block), axis=1)
    parts = (block[:, : lo - m], block[:, cut - m :])
    return np.concatenate(parts if head is None else (head, *parts), axis=1)


def _products(block: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``block @ basis.T`` and the rows' sums of squares, over column pieces.

    The pieces are small enough for OpenBLAS' unpacked kernel, and each piece's squares are
    summed while it is still in the cache.
    """
    rows, n = block.shape
    if rows == 0:
        return block @ basis.T, np.vecdot(block, block)
    step = _chunk_step(rows, basis.shape[0], n)
    part = block[:, :step]
    out = part @ basis[:, :step].T
    squares = np.vecdot(part, part)
    for start in range(step, n, step):
        part = block[:, start : start + step]
        out += part @ basis[:, start : start + step].T
        squares += np.vecdot(part, part)
    return out, squares


def _chunk_step(rows: int, basis_rows: int, n: int) -> int:
    """Columns per piece of a product: under OpenBLAS' small-matrix limit, pieces of equal size."""
    chunk = max(1, _GEMM_CHUNK_MNK // max(1, rows * basis_rows))
    return -(-n // -(-n // chunk)) if n > chunk else max(n, 1)


def _find_window(rows: np.ndarray, fs: float, plan: MeterPlan, v_block: np.ndarray) -> Window:
    """The whole-cycle window of the first voltage channel (a row of ``rows``) that has one."""
    for row in rows:
        window = find_window(row, fs)
        if window is not None:
            return window
    _raise_not_finite(v_block, plan.voltage_keys, "voltage")
    n = rows.shape[1]
    raise ValueError(
        f"no whole cycle: voltage {plan.voltage_keys[0]} has fewer than two rising zero crossings "
        f"in {n} samples ({n / fs:.4g} s at {fs:g} Hz)"
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


def _fast_blocks(v_rows: list[Any], i_rows: list[Any]) -> tuple[list[np.ndarray], np.ndarray | list[np.ndarray]] | None:
    """The voltages' rows and the currents without checking row by row, or ``None``.

    Only when every row is a non-empty one-dimensional ``ndarray`` of one length and one
    dtype, float64 or float32: then each check of :func:`_check_rows` and :func:`_as_block`
    passes by construction (lengths, dtype, dimensions), and finiteness is checked on the sums
    as for any frame. Currents that are consecutive rows of one 2-D array are used as a view
    of it (:func:`_rows_view`); otherwise they stay a list of rows that :func:`_compute`
    converts into one block just before it streams them.
    """
    rows = v_rows + i_rows
    if set(map(type, rows)) != _NDARRAY or set(map(_NDIM, rows)) != _ONE:
        return None
    dtypes = set(map(_DTYPE, rows))
    lengths = set(map(len, rows))
    if len(dtypes) != 1 or len(lengths) != 1:
        return None
    ((dtype,), (n,)) = dtypes, lengths
    if dtype not in _FAST_DTYPES or not n:
        return None
    if not i_rows:
        return v_rows, np.empty((0, n), dtype)
    # The voltages are copied into the basis anyway; the currents are used in place if they are
    # consecutive rows of one block.
    if len(i_rows) == 1:
        return v_rows, i_rows[0][None]
    pointers = _row_pointers(i_rows)
    i_block = None if pointers is None else _rows_view(i_rows[0].base, pointers, n)
    return v_rows, i_rows if i_block is None else i_block


# Pointer arithmetic on ``__array_interface__`` (here and in _rows_view): measured by
# tools/bench_core.py, source "decoded" (rows of one block -> compute_frame) against "arrays".
# Ingest itself hands decoded frames to compute_block, which needs none of it.
def _row_pointers(rows: list[np.ndarray]) -> list[int] | None:
    """The data addresses of C-contiguous rows that share one 2-D base of their dtype, or ``None``."""
    first = rows[0]
    base = first.base
    if (
        type(base) is not np.ndarray
        or base.ndim != 2
        or base.dtype != first.dtype
        or not all(map(is_, map(_BASE, rows), repeat(base)))
    ):
        return None
    interfaces = list(map(_INTERFACE, rows))
    if any(map(_STRIDES, interfaces)):  # None for C-contiguous rows
        return None
    return [interface["data"][0] for interface in interfaces]


def _rows_view(base: np.ndarray, pointers: list[int], n: int) -> np.ndarray | None:
    """``base[r0 : r0 + k, c0 : c0 + n]`` if its rows start at ``pointers`` (k of them), else ``None``.

    Rows of ``n`` items of ``base``'s dtype starting there are exactly that view's rows when
    they start one base row apart, in order, and the view lies inside the base: e.g. a frame
    decoded into one block (:mod:`metering.ingest.frames`) with its CTs in the configuration's order.
    """
    step, column = base.strides
    if step <= 0 or column != base.itemsize:
        return None
    p0 = pointers[0]
    k = len(pointers)
    if pointers != list(range(p0, p0 + k * step, step)):
        return None
    r0, offset = divmod(p0 - base.__array_interface__["data"][0], step)
    c0, misaligned = divmod(offset, column)
    if misaligned or r0 < 0 or r0 + k > base.shape[0] or c0 + n > base.shape[1]:
        return None
    return base[r0 : r0 + k, c0 : c0 + n]


def _rows_by_name(block: Any, names: Sequence[str], wanted: tuple[str, ...]) -> np.ndarray | None:
    """The rows ``wanted`` of a block whose rows are ``names``, as a view, or ``None``.

    ``None`` unless ``block`` is a 2-D ndarray with a row per name and ``wanted`` are
    consecutive names in that order.
    """
    if type(block) is not np.ndarray or block.ndim != 2 or block.shape[0] != len(names):
        return None
    names = tuple(names)
    if names == wanted:
        return block
    if not wanted:
        return block[:0]
    try:
        r0 = names.index(wanted[0])
    except ValueError:
        return None
    return block[r0 : r0 + len(wanted)] if names[r0 : r0 + len(wanted)] == wanted else None


def _fast_pair(v_block: np.ndarray, i_block: np.ndarray) -> bool:
    """Whether two blocks can go to :func:`_compute` as they are (see :func:`_fast_blocks`)."""
    return (
        v_block.dtype in _FAST_DTYPES
        and i_block.dtype == v_block.dtype
        and v_block.shape[1] == i_block.shape[1] > 0
        and v_block.shape[0] > 0
    )


def _named_rows(block: Any, names: Sequence[str], kind: str) -> dict[str, Any]:
    """``{name: row}`` of a block, for :func:`compute_frame`."""
    try:
        rows = list(block)
    except TypeError:
        raise ValueError(f"{kind} block must be a 2-D array, got {type(block).__name__}") from None
    if len(rows) != len(names):
        raise ValueError(f"{kind} block has {len(rows)} rows for {len(names)} names")
    return dict(zip(names, rows))


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

"""Meter configuration: topologies, CT channels and the voltage references they imply.

A Power Box measures its voltages against one reference terminal: the neutral where the
topology has one, L3 in delta ``3P`` (SPEC section 3, the installation manual's section on
topologies). Every quantity of a CT is computed against a *reference voltage*, a fixed linear
combination of the measured voltage channels. This module turns a :class:`MeterConfig` into
those combinations once (:func:`plan_for`, cached), so the per-frame code only does matrix
products.

References by topology (the rows of :attr:`MeterPlan.combos`):

========== ======================= ============================ ==========================
topology   measured voltages       reference of a CT on L1/L2/L3 line-to-line (V_LL) of it
========== ======================= ============================ ==========================
1P         v(L1-N)                 v1                           none
3P+N       v(Lk-N), k = 1..3       v1, v2, v3                   v1-v2, v2-v3, v3-v1
3P+N-208   v(Lk-N), k = 1..3       v1, v2, v3                   v1-v2, v2-v3, v3-v1
2P+N       v(L1-N), v(L2-N)        v1, v2                       v1-v2 (both phases)
3P         v(L1-L3), v(L2-L3)      v1, v2, v1-v2                the reference itself
========== ======================= ============================ ==========================

Line-to-line voltages are always instantaneous differences, never sqrt(3) times V_LN (SPEC
section 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TOPOLOGIES: tuple[str, ...] = ("1P", "3P+N", "3P", "2P+N", "3P+N-208")
"""Topology codes of SPEC section 3."""

KINDS: tuple[str, ...] = ("grid", "solar", "battery", "consumption", "circuit", "appliance")
"""Load kinds of SPEC section 5.1."""

VOLTAGE_CHANNELS: dict[str, tuple[str, ...]] = {
    "1P": ("L1",),
    "3P+N": ("L1", "L2", "L3"),
    "3P": ("L1", "L2"),
    "2P+N": ("L1", "L2"),
    "3P+N-208": ("L1", "L2", "L3"),
}
"""Voltage channels each topology measures (keys of ``voltages`` in a frame)."""

PHASES: dict[str, tuple[str, ...]] = {
    "1P": ("L1",),
    "3P+N": ("L1", "L2", "L3"),
    "3P": ("L1", "L2", "L3"),
    "2P+N": ("L1", "L2"),
    "3P+N-208": ("L1", "L2", "L3"),
}
"""CT phases valid for each topology (in delta a phase names a voltage reference)."""

NOMINAL_FREQUENCIES_HZ: tuple[float, ...] = (50.0, 60.0)


@dataclass(frozen=True)
class CtChannel:
    """One CT input mapped to a load and a phase.

    Attributes
    ----------
    ct : str
        CT reference ``<module serial>/<input letter>``, e.g. ``"CTH-0001/A"``; the key of its
        samples in a frame's ``currents``.
    load : str
        Name of the load the CT measures, e.g. ``"Grid"``.
    kind : str
        One of :data:`KINDS`.
    phase : str
        ``"L1"``, ``"L2"`` or ``"L3"``: the voltage reference of the CT (SPEC section 3).
    reversed : bool
        The CT was clamped against the arrow; its current is negated. The manual advises against
        relying on this; the device layer warns about it.
    """

    ct: str
    load: str
    kind: str
    phase: str
    reversed: bool = False


@dataclass(frozen=True)
class MeterConfig:
    """What one Power Box measures: its topology, nominal frequency and CT channels.

    Attributes
    ----------
    topology : str
        One of :data:`TOPOLOGIES`.
    nominal_hz : float
        50 or 60. Informational: the frequency is always measured from the voltage.
    channels : tuple of CtChannel
        The CTs in display order. Loads appear in the order of their first CT.
    """

    topology: str
    nominal_hz: float
    channels: tuple[CtChannel, ...]


@dataclass(frozen=True, eq=False)
class MeterPlan:
    """Everything about a configuration that does not depend on the samples.

    Attributes
    ----------
    config : MeterConfig
    voltage_keys : tuple of str
        Voltage channels the topology needs, in row order.
    ct_ids : tuple of str
        CT ids in channel order (row order of the current block).
    combos : ndarray, shape (n_combos, n_voltages)
        Voltage combinations (references and line-to-line pairs) as rows of coefficients on
        the measured voltages.
    combo_labels : tuple of str
        A label per combination, e.g. ``"L1"`` or ``"L1-L2"``.
    combo_forms : ndarray, shape (n_combos + 1, n_voltages ** 2)
        Row q is ``combos[q] (x) combos[q]``: its product with a flattened matrix of sums over
        pairs of voltages gives that combination's sum, e.g. its mean square from the
        covariances. The last row is NaN, the value of a voltage the topology lacks (row -1).
    ref_index, ln_index, ll_index : ndarray of int, shape (n_channels,)
        Per CT, the row of :attr:`combos` that is its reference voltage, its phase-to-neutral
        voltage and its line-to-line voltage; -1 where the topology has none.
    ref_coef : ndarray, shape (n_channels, n_voltages)
        ``combos[ref_index]``: per CT, the coefficients of its reference voltage.
    sign : ndarray, shape (n_channels,)
        -1 for reversed CTs, +1 otherwise.
    signed_ref_coef : ndarray, shape (n_channels, n_voltages)
        ``sign[:, None] * ref_coef``.
    load_names, load_kinds : tuple of str
        Loads in first-appearance order.
    load_matrix : ndarray, shape (n_loads, n_channels)
        1 where a CT belongs to a load: per-load sums are one matrix product.
    kind_matrix : ndarray, shape (len(KINDS), n_loads)
        1 where a load has a kind: per-kind sums are one matrix product.
    flow_matrix : ndarray, shape (n_channels, n_channels + n_loads + len(KINDS))
        ``[I | load_matrix.T | load_matrix.T @ kind_matrix.T]``: one product of per-CT rows with
        it gives them again, their per-load sums and their per-kind sums, side by side.
    voltage_index : ndarray of int, shape (3, n_channels)
        ``ln_index``, ``ll_index`` and ``ref_index`` stacked: one gather of the combinations'
        RMS values gives every CT's V_LN, V_LL and reference voltage.
    ln_summary, ll_summary : tuple of (str, int)
        Labels and combo rows of the location's phase voltages and line-to-line voltages.
    has_consumption : bool
        Whether a load has kind ``consumption`` (else consumption is derived).
    """

    config: MeterConfig
    voltage_keys: tuple[str, ...]
    ct_ids: tuple[str, ...]
    combos: np.ndarray
    combo_labels: tuple[str, ...]
    combo_forms: np.ndarray
    ref_index: np.ndarray
    ln_index: np.ndarray
    ll_index: np.ndarray
    ref_coef: np.ndarray
    sign: np.ndarray
    signed_ref_coef: np.ndarray
    load_names: tuple[str, ...]
    load_kinds: tuple[str, ...]
    load_matrix: np.ndarray
    kind_matrix: np.ndarray
    flow_matrix: np.ndarray
    voltage_index: np.ndarray
    ln_summary: tuple[tuple[str, int], ...]
    ll_summary: tuple[tuple[str, int], ...]
    has_consumption: bool


def _combos_for(topology: str) -> tuple[dict[str, tuple[float, ...]], dict, dict, dict]:
    """Voltage combinations of a topology.

    Returns ``(combos, ref, ln, ll)``: ``combos`` maps a label to coefficients on the measured
    channels; ``ref``, ``ln`` and ``ll`` map a CT phase to the label of its reference,
    phase-to-neutral and line-to-line voltage (absent where there is none).
    """
    if topology == "1P":
        combos = {"L1": (1.0,)}
        return combos, {"L1": "L1"}, {"L1": "L1"}, {}
    if topology == "2P+N":
        combos = {"L1": (1.0, 0.0), "L2": (0.0, 1.0), "L1-L2": (1.0, -1.0)}
        return combos, {"L1": "L1", "L2": "L2"}, {"L1": "L1", "L2": "L2"}, {"L1": "L1-L2", "L2": "L1-L2"}
    if topology == "3P":
        # Measured against L3: v1 = v(L1-L3), v2 = v(L2-L3); the manual's phase L3 is v(L1-L2).
        combos = {"L1-L3": (1.0, 0.0), "L2-L3": (0.0, 1.0), "L1-L2": (1.0, -1.0)}
        ref = {"L1": "L1-L3", "L2": "L2-L3", "L3": "L1-L2"}
        return combos, ref, {}, ref
    # Star, 3P+N and 3P+N-208.
    combos = {
        "L1": (1.0, 0.0, 0.0),
        "L2": (0.0, 1.0, 0.0),
        "L3": (0.0, 0.0, 1.0),
        "L1-L2": (1.0, -1.0, 0.0),
        "L2-L3": (0.0, 1.0, -1.0),
        "L3-L1": (-1.0, 0.0, 1.0),
    }
    ref = {"L1": "L1", "L2": "L2", "L3": "L3"}
    return combos, ref, ref, {"L1": "L1-L2", "L2": "L2-L3", "L3": "L3-L1"}


def validate_config(config: MeterConfig) -> None:
    """Raise ``ValueError`` naming the first problem of a configuration.

    Checks the topology (SPEC section 3), the nominal frequency, each CT's phase against the
    topology and its kind, duplicated CTs, and loads whose CTs disagree on the kind.
    """
    if config.topology not in TOPOLOGIES:
        raise ValueError(f"unknown topology {config.topology!r}; expected one of {', '.join(TOPOLOGIES)}")
    if float(config.nominal_hz) not in NOMINAL_FREQUENCIES_HZ:
        raise ValueError(f"nominal_hz must be 50 or 60, got {config.nominal_hz!r}")
    phases = PHASES[config.topology]
    seen: set[str] = set()
    kinds: dict[str, str] = {}
    for channel in config.channels:
        if channel.phase not in phases:
            raise ValueError(
                f"CT {channel.ct} (load {channel.load!r}): phase {channel.phase!r} is not valid for "
                f"topology {config.topology}; expected one of {', '.join(phases)}"
            )
        if channel.kind not in KINDS:
            raise ValueError(
                f"CT {channel.ct} (load {channel.load!r}): unknown kind {channel.kind!r}; "
                f"expected one of {', '.join(KINDS)}"
            )
        if channel.ct in seen:
            raise ValueError(f"CT {channel.ct} is configured twice")
        seen.add(channel.ct)
        kind = kinds.setdefault(channel.load, channel.kind)
        if kind != channel.kind:
            raise ValueError(f"load {channel.load!r} mixes kinds {kind!r} and {channel.kind!r}")


@lru_cache(maxsize=256)
def plan_for(config: MeterConfig) -> MeterPlan:
    """Validate ``config`` and precompute its :class:`MeterPlan` (cached per configuration).

    Raises
    ------
    ValueError
        See :func:`validate_config`.
    """
    validate_config(config)
    combos, ref, ln, ll = _combos_for(config.topology)
    labels = tuple(combos)
    row = {label: k for k, label in enumerate(labels)}
    channels = config.channels
    ref_index = np.array([row[ref[c.phase]] for c in channels], dtype=np.intp)
    ln_index = np.array([row[ln[c.phase]] if c.phase in ln else -1 for c in channels], dtype=np.intp)
    ll_index = np.array([row[ll[c.phase]] if c.phase in ll else -1 for c in channels], dtype=np.intp)
    combo_matrix = np.array([combos[label] for label in labels], dtype=np.float64)

    load_names = tuple(dict.fromkeys(c.load for c in channels))
    load_kinds = tuple(next(c.kind for c in channels if c.load == name) for name in load_names)
    load_matrix = np.array([[1.0 if c.load == name else 0.0 for c in channels] for name in load_names])
    kind_matrix = np.array([[1.0 if kind == k else 0.0 for kind in load_kinds] for k in KINDS])

    load_matrix = load_matrix.reshape(len(load_names), len(channels))
    ref_coef = combo_matrix[ref_index].reshape(len(channels), len(VOLTAGE_CHANNELS[config.topology]))
    sign = np.array([-1.0 if c.reversed else 1.0 for c in channels])
    kind_matrix = kind_matrix.reshape(len(KINDS), len(load_names))
    voltage_keys = VOLTAGE_CHANNELS[config.topology]
    if config.topology == "3P":
        ln_summary: tuple[tuple[str, int], ...] = ()
        ll_summary = tuple((label, row[label]) for label in ("L1-L3", "L2-L3", "L1-L2"))
    else:
        ln_summary = tuple((key, row[key]) for key in voltage_keys)
        ll_summary = tuple((label, row[label]) for label in labels if "-" in label)
    return MeterPlan(
        config=config,
        voltage_keys=voltage_keys,
        ct_ids=tuple(c.ct for c in channels),
        combos=combo_matrix,
        combo_labels=labels,
        combo_forms=np.concatenate(
            (
                np.einsum("qa,qb->qab", combo_matrix, combo_matrix).reshape(len(labels), -1),
                np.full((1, len(voltage_keys) ** 2), np.nan),
            )
        ),
        ref_index=ref_index,
        ln_index=ln_index,
        ll_index=ll_index,
        ref_coef=ref_coef,
        sign=sign,
        signed_ref_coef=sign[:, None] * ref_coef,
        load_names=load_names,
        load_kinds=load_kinds,
        load_matrix=load_matrix,
        kind_matrix=kind_matrix,
        flow_matrix=np.concatenate((np.eye(len(channels)), load_matrix.T, load_matrix.T @ kind_matrix.T), axis=1),
        voltage_index=np.array((ln_index, ll_index, ref_index), dtype=np.intp).reshape(3, len(channels)),
        ln_summary=ln_summary,
        ll_summary=ll_summary,
        has_consumption="consumption" in load_kinds,
    )

"""Fundamental phasors of one sample frame, over whole cycles at the measured frequency.

For a signal ``x`` over the whole-cycle window of :func:`metering.core.cycles.find_window`
(weights ``w``, length ``L`` samples, start ``t0`` at a rising zero crossing of the first
voltage, angular frequency ``omega`` per sample) the RMS phasor of the fundamental is the
single-bin DFT

    X = (sqrt(2) / L) * sum(w * x * (cos(omega (n - t0)) - j sin(omega (n - t0))))

so that ``x = sqrt(2) |X| cos(omega (n - t0) + arg X)``. A DC offset and the harmonics drop
out over whole cycles. Every phasor of a frame is then turned by the same angle so that the
first voltage that carries a voltage is real and positive: angles of one frame are comparable
with those of the next, whatever the time the frame started. ``P = Re(V conj(I))`` and a
current that leads its voltage has ``arg(I / V) > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from metering.core.cycles import basis_grid, find_window, fundamental_basis

FS_MIN_HZ = 1_000.0
FS_MAX_HZ = 50_000.0
LIVE_VOLTAGE_SHARE = 0.1
"""A voltage channel under this share of the largest one carries no voltage."""


@dataclass(frozen=True, eq=False)
class FramePhasors:
    """The fundamentals of one frame.

    Attributes
    ----------
    frequency_hz : float
        Measured over the window.
    voltages : ndarray of complex, shape (n_voltages,)
        RMS phasors of the measured voltage channels, in the topology's order.
    currents : ndarray of complex, shape (n_cts,)
        RMS phasors of the CT currents as sampled (a configured reversal is not applied).
    current_rms_a : ndarray, shape (n_cts,)
        True RMS of each current over the window, DC removed (harmonics included).
    """

    frequency_hz: float
    voltages: np.ndarray
    currents: np.ndarray
    current_rms_a: np.ndarray


def frame_phasors(
    voltages: Mapping[str, ArrayLike],
    currents: Mapping[str, ArrayLike],
    fs_hz: float,
    voltage_keys: Sequence[str],
    ct_ids: Sequence[str],
) -> FramePhasors:
    """Validate one frame and compute its phasors.

    Parameters
    ----------
    voltages, currents : mapping of str to array_like
        Instantaneous volts per voltage channel and amps per CT id; keys not in
        ``voltage_keys`` / ``ct_ids`` are ignored.
    fs_hz : float
        Sample rate, 1 to 50 kHz.
    voltage_keys, ct_ids : sequence of str
        The channels needed, in order.

    Returns
    -------
    FramePhasors

    Raises
    ------
    ValueError
        Naming the channel: not a mapping, a missing channel, samples that are not a
        one-dimensional array of real finite numbers, unequal lengths, a sample rate out of
        range, or no whole cycle in any voltage.
    """
    fs = _check_fs(fs_hz)
    rows = [_row(voltages, key, "voltage", "voltages") for key in voltage_keys]
    rows += [_row(currents, ct, "current", "currents") for ct in ct_ids]
    names = [f"voltage {key}" for key in voltage_keys] + [f"current {ct}" for ct in ct_ids]
    n = rows[0].shape[0]
    for name, row in zip(names, rows, strict=True):
        if row.shape[0] != n:
            raise ValueError(f"{name} has {row.shape[0]} samples; {names[0]} has {n}")
    block = np.vstack(rows)
    nv = len(voltage_keys)

    window = None
    for row in block[:nv]:
        window = find_window(row, fs)
        if window is not None:
            break
    if window is None:
        raise ValueError(
            f"no whole cycle: no voltage has two rising zero crossings in {n} samples ({n / fs:.4g} s at {fs:g} Hz)"
        )
    width = window.last - window.first + 1
    grid_rows, grid_block = basis_grid(width)
    basis = np.empty((2, grid_rows * grid_block))
    fundamental_basis(basis.reshape(2, grid_rows, grid_block), window, fs)
    weights = np.ones(width)
    weights[0] = window.w_first
    weights[-1] = window.w_last
    segment = block[:, window.first : window.last + 1]
    cos_sin = segment @ (basis[:, :width] * weights).T  # (channels, 2)
    phasors = (math.sqrt(2.0) / window.length) * (cos_sin[:, 0] - 1j * cos_sin[:, 1])

    mean = segment @ weights / window.length
    mean_square = (segment * segment) @ weights / window.length
    rms = np.sqrt(np.maximum(mean_square - mean * mean, 0.0))

    v = phasors[:nv]
    magnitudes = np.abs(v)
    live = np.flatnonzero(magnitudes > LIVE_VOLTAGE_SHARE * magnitudes.max())
    if live.size:
        turn = np.conj(v[live[0]]) / magnitudes[live[0]]
        phasors = phasors * turn
    return FramePhasors(
        frequency_hz=window.frequency_hz,
        voltages=phasors[:nv],
        currents=phasors[nv:],
        current_rms_a=rms[nv:],
    )


def _check_fs(fs_hz: Any) -> float:
    try:
        fs = float(fs_hz)
    except (TypeError, ValueError):
        raise ValueError(f"fs_hz must be a number, got {fs_hz!r}") from None
    if not FS_MIN_HZ <= fs <= FS_MAX_HZ:
        raise ValueError(f"fs_hz must be between 1 and 50 kHz, got {fs_hz!r}")
    return fs


def _row(mapping: Any, key: str, kind: str, mapping_name: str) -> np.ndarray:
    """The samples of one channel as a float64 vector, or a ``ValueError`` naming the problem."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{mapping_name} must be a mapping of channel names to samples, got {type(mapping).__name__}")
    if key not in mapping:
        raise ValueError(f"{mapping_name} has no samples for {kind} {key}")
    samples = mapping[key]
    name = f"{kind} {key}"
    if np.iscomplexobj(samples):
        raise ValueError(f"{name} is not an array of real numbers (complex)")
    try:
        x = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not an array of real numbers") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x

"""Whole-cycle windows: rising zero crossings of the voltage, frequency, window weights, basis.

Definitions used by :func:`metering.core.compute_frame` (SPEC section 4):

* A *rising edge* is a sample ``u`` with ``v[u-1] < 0 <= v[u]`` that is a real rising zero
  crossing of the fundamental: a quarter of a 55 Hz period earlier the voltage is below
  ``-h`` and a quarter period later above ``+h`` (a hysteresis that holds from about 25 to
  90 Hz), with ``h`` = :data:`HYSTERESIS` times the largest of the values a quarter period
  after the candidates (that is about the peak voltage). Noise that makes the voltage
  cross zero several times on one edge yields a cluster of candidates closer than a quarter
  period; the last of the cluster is the edge. Its *crossing time* is interpolated linearly
  between the two samples: ``t = u - 1 + v[u-1] / (v[u-1] - v[u])`` (in samples). A DC offset
  of a few percent only shifts every crossing by the same time, so whole cycles stay whole.
* The *window* spans the first to the last edge of the frame: ``K`` whole cycles. Its
  frequency is ``f = K * fs / (t_last - t_first)``.
* Sample ``n`` stands for the time interval ``[n - 1/2, n + 1/2)``. Over the window
  ``[t_first, t_last]`` every sample weighs the part of its interval inside the window: 1
  inside, a fraction at both ends, so the weights sum to exactly ``t_last - t_first``
  samples. A mean over the window is ``sum(w * x) / sum(w)`` (midpoint rule), which removes
  most of the error of a window rounded to whole samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

HYSTERESIS = 0.1
"""Edge thresholds as a fraction of the peak voltage."""

QUARTER_PERIOD_AT_HZ = 55.0
"""The edge test looks a quarter period of this frequency before and after a crossing."""


@dataclass(frozen=True)
class Window:
    """A window of whole cycles in a sample buffer.

    Attributes
    ----------
    first, last : int
        Columns of the first and last sample with a non-zero weight (inclusive).
    w_first, w_last : float
        Weights of those two samples (all samples between weigh 1).
    start_t, length : float
        Start (crossing time, in samples) and length of the window, in samples; ``length`` is
        the sum of the weights.
    n_cycles : int
        Whole cycles in the window.
    frequency_hz : float
        Measured frequency.
    carry_from : int
        First column of the samples left over after the last whole cycle: the sample just
        before the last crossing, so that the next frame finds the same crossing again.
    """

    first: int
    last: int
    w_first: float
    w_last: float
    start_t: float
    length: float
    n_cycles: int
    frequency_hz: float
    carry_from: int


def rising_edges(v: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Crossing times of the rising edges of ``v``.

    Parameters
    ----------
    v : ndarray, shape (n,)
        Instantaneous voltage.
    fs_hz : float
        Sample rate.

    Returns
    -------
    times : ndarray of float
        Crossing times in samples (sub-sample, linearly interpolated), increasing; empty
        when ``v`` has no edge or is not finite.
    before : ndarray of int
        Index of the (negative) sample just before each crossing, ``floor(times)``.

    Notes
    -----
    A candidate closer than a quarter period to the start of the buffer has no earlier
    sample to test; it counts when every sample before it is negative. That is how a frame
    that begins with the previous frame's carry (which starts at the sample just before a
    crossing) finds that crossing again. A candidate closer than a quarter period to the end
    cannot be confirmed and is left to the next frame.
    """
    n = v.shape[0]
    quarter = max(1, round(fs_hz / (4.0 * QUARTER_PERIOD_AT_HZ)))
    if n < 2 * quarter + 2:
        return np.empty(0), np.empty(0, dtype=np.intp)
    neg = v[: n - quarter] < 0  # candidates must have a quarter period after them
    before = (neg[:-1] > neg[1:]).nonzero()[0]  # last negative sample before a non-negative one
    if before.size == 0:
        return np.empty(0), before
    # Per candidate, one gather: a quarter period after (crest), before (trough; clipped at
    # the start, see below) and the two samples around the crossing.
    around = v.take(before[:, None] + _offsets(quarter), mode="clip")
    crest = around[:, 0]
    h = HYSTERESIS * float(np.maximum.reduce(crest))  # a quarter period after a rising edge: about the peak
    if not (0.0 < h < np.inf):
        return np.empty(0), before[:0]
    ok = (crest > h) & (around[:, 1] < -h)
    k = 0
    while k < before.size and before[k] + 1 < quarter:  # too close to the start to look back
        ok[k] = k == 0 and bool(neg[0]) and bool(crest[0] > h)  # all samples before it negative
        k += 1
    kept = ok.nonzero()[0]
    before = before[kept]
    if before.size > 1:
        gaps = before[1:] - before[:-1]
        if np.minimum.reduce(gaps) <= quarter:
            last = np.concatenate((gaps > quarter, [True]))  # last of each cluster
            kept, before = kept[last], before[last]
    crossing = around[kept]
    return before + crossing[:, 2] / (crossing[:, 2] - crossing[:, 3]), before


@lru_cache(maxsize=64)
def _offsets(quarter: int) -> np.ndarray:
    """Column offsets from a candidate of :func:`rising_edges`: crest, trough, crossing."""
    offsets = np.array((quarter + 1, 1 - quarter, 0, 1), dtype=np.intp)
    offsets.flags.writeable = False
    return offsets


def find_window(v: np.ndarray, fs_hz: float) -> Window | None:
    """The window of whole cycles of a voltage, or ``None`` with fewer than two edges.

    Parameters
    ----------
    v : ndarray, shape (n,)
        Reference voltage of the buffer (carry followed by the frame).
    fs_hz : float
        Sample rate.

    Notes
    -----
    The number of cycles between the first and last edge is the elapsed time divided by the
    shortest edge spacing, rounded; an edge that was not confirmed (a voltage dip) therefore
    does not bias the frequency. Frequency noise is that of two crossing times over the whole window
    (0.1 % amplitude noise at 6.4 kHz: about 0.02 samples per crossing, 1e-4 Hz; the
    accuracy scenarios, with harmonics, stay under 4e-4 Hz).
    """
    times, before = rising_edges(v, fs_hz)
    if times.size < 2:
        return None
    t_first = float(times[0])
    t_last = float(times[-1])
    span = t_last - t_first
    # Edges are at least a quarter period apart, so the shortest gap is one period even when
    # an edge is missing (a dip); count the cycles with it.
    n_cycles = 1 if times.size == 2 else max(1, round(span / float(np.minimum.reduce(times[1:] - times[:-1]))))
    n = v.shape[0]
    a = t_first + 0.5
    b = min(t_last + 0.5, float(n))
    first = int(a)
    last = min(int(b), n - 1)
    w_first = first + 1.0 - a
    w_last = b - last
    if first == last:  # not reachable with a real cycle, kept for safety
        w_first = w_last = b - a
    return Window(
        first=first,
        last=last,
        w_first=w_first,
        w_last=w_last,
        start_t=t_first,
        length=b - a,
        n_cycles=n_cycles,
        frequency_hz=n_cycles * fs_hz / span,
        carry_from=int(before[-1]),
    )


@lru_cache(maxsize=256)
def basis_grid(n: int) -> tuple[int, int]:
    """``(rows, block)`` with ``rows * block >= n`` for :func:`fundamental_basis`."""
    block = math.isqrt(n - 1) + 1 if n > 1 else 1
    return -(-n // block), block


def fundamental_basis(out: np.ndarray, window: Window, fs_hz: float, start: int | None = None) -> None:
    """Write ``cos`` and ``sin`` of the fundamental over the window's columns into ``out``.

    With ``k = r * block + s`` the column index from ``start`` (default ``window.first``),
    ``out[0, r, s] = cos(w (start + k - t0))`` and ``out[1, r, s]`` the sine,
    ``w = 2 pi f / fs`` at the measured frequency and ``t0`` the window start. By angle addition,
    ``cos(a_r + b_s) = cos a_r cos b_s - sin a_r sin b_s`` and
    ``sin(a_r + b_s) = sin a_r cos b_s + cos a_r sin b_s``: one small matrix product of two
    short tables, exact to rounding and much cheaper than ``cos``/``sin`` of every sample.

    Parameters
    ----------
    out : ndarray, shape (2, rows, block)
        See :func:`basis_grid`; typically a reshaped view of two rows of the basis matrix.
    window : Window
    fs_hz : float
    start : int, optional
        Buffer column of ``out[:, 0, 0]``; ``window.first`` by default.
    """
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    _, rows, block = out.shape
    omega = 2.0 * np.pi * window.frequency_hz / fs_hz
    angles = _grid(rows, block) * omega  # a_r = w r block, then b_s = w s
    angles[:rows] += omega * ((window.first if start is None else start) - window.start_t)
    # cos(x + pi/2) = -sin x: one cos call per table. left[0, r] = (cos a_r, -sin a_r),
    # left[1, r] = (sin a_r, cos a_r); right = (cos b_s, sin b_s).
    left = np.cos(angles[None, :rows, None] + _LEFT_SHIFT)
    right = np.cos(angles[rows:] + _RIGHT_SHIFT)
    np.matmul(left, right, out=out)


_LEFT_SHIFT = np.array(((0.0, np.pi / 2), (-np.pi / 2, 0.0)))[:, None, :]
_RIGHT_SHIFT = np.array(((0.0,), (-np.pi / 2,)))


@lru_cache(maxsize=64)
def _grid(rows: int, block: int) -> np.ndarray:
    """``[0, block, .., (rows - 1) block, 0, 1, .., block - 1]`` as floats (read-only)."""
    grid = np.concatenate((np.arange(rows) * float(block), np.arange(block, dtype=np.float64)))
    grid.flags.writeable = False
    return grid

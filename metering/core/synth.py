"""Analytic test signals: sums of harmonics with known RMS, P and Q1.

A waveform is ``x(t) = dc + sum_h A_h cos(h w t + phi_h)`` with peak amplitudes ``A_h``. Over
whole cycles (orthogonality of the harmonics):

- ``X_rms = sqrt(sum_h A_h^2 / 2)`` (DC excluded: it is removed as a sensor offset),
- ``P = sum_h A_vh A_ih cos(phi_vh - phi_ih) / 2``,
- ``Q1 = A_v1 A_i1 sin(phi_v1 - phi_i1) / 2`` (IEEE 1459-2010 fundamental reactive power).

Used by the tests, the accuracy report and the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Wave:
    """Harmonic content of a waveform.

    Attributes
    ----------
    harmonics : mapping of int to (float, float)
        Harmonic order to ``(peak amplitude, phase in radians)``.
    dc : float
        DC offset (a sensor offset, not part of the signal's RMS).
    """

    harmonics: Mapping[int, tuple[float, float]]
    dc: float = 0.0

    def sample(self, t_s: np.ndarray, f_hz: float) -> np.ndarray:
        """Values at times ``t_s`` for fundamental frequency ``f_hz``."""
        w = 2.0 * np.pi * f_hz
        out = np.full(np.shape(t_s), self.dc, dtype=np.float64)
        for h, (amplitude, phase) in self.harmonics.items():
            out += amplitude * np.cos(h * w * t_s + phase)
        return out

    def shifted(self, angle: float) -> Wave:
        """The same wave delayed by ``angle`` radians of the fundamental (``h * angle`` each)."""
        return Wave({h: (a, ph - h * angle) for h, (a, ph) in self.harmonics.items()}, self.dc)

    def scaled(self, factor: float) -> Wave:
        """The same wave times ``factor`` (DC included); amplitudes stay positive."""
        flip = math.pi if factor < 0 else 0.0
        return Wave({h: (a * abs(factor), ph + flip) for h, (a, ph) in self.harmonics.items()}, self.dc * factor)

    def minus(self, other: Wave) -> Wave:
        """The instantaneous difference ``self - other`` (e.g. a line-to-line voltage)."""
        phasors: dict[int, complex] = {}
        for h, (a, ph) in self.harmonics.items():
            phasors[h] = phasors.get(h, 0j) + a * complex(math.cos(ph), math.sin(ph))
        for h, (a, ph) in other.harmonics.items():
            phasors[h] = phasors.get(h, 0j) - a * complex(math.cos(ph), math.sin(ph))
        return Wave({h: (abs(z), math.atan2(z.imag, z.real)) for h, z in phasors.items()}, self.dc - other.dc)

    @property
    def rms(self) -> float:
        """RMS without the DC offset."""
        return math.sqrt(sum(a * a for a, _ in self.harmonics.values()) / 2.0)

    @property
    def fundamental(self) -> tuple[float, float]:
        return self.harmonics.get(1, (0.0, 0.0))


def active_power(v: Wave, i: Wave) -> float:
    """``P = sum_h V_h I_h cos(phi_vh - phi_ih) / 2`` (peak amplitudes)."""
    return sum(
        av * i.harmonics[h][0] * math.cos(pv - i.harmonics[h][1]) / 2.0
        for h, (av, pv) in v.harmonics.items()
        if h in i.harmonics
    )


def fundamental_reactive_power(v: Wave, i: Wave) -> float:
    """``Q1 = V1 I1 sin(phi_v1 - phi_i1) / 2`` (peak amplitudes): > 0 when the current lags."""
    (av, pv), (ai, pi) = v.fundamental, i.fundamental
    return av * ai * math.sin(pv - pi) / 2.0


def distorted(
    amplitude: float,
    phase: float = 0.0,
    thd: float = 0.0,
    orders: tuple[int, ...] = (3, 5, 7, 11, 13, 25),
    seed: int = 0,
    dc: float = 0.0,
) -> Wave:
    """A fundamental plus harmonics of total harmonic distortion ``thd`` (ratio, e.g. 0.5).

    The harmonic amplitudes fall as ``1/h`` and are scaled so that
    ``sqrt(sum A_h^2) / A_1 = thd``; their phases are drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    harmonics: dict[int, tuple[float, float]] = {1: (amplitude, phase)}
    if thd > 0 and orders:
        weights = np.array([1.0 / h for h in orders])
        weights *= thd / math.sqrt(float(np.sum(weights**2)))
        for h, w in zip(orders, weights):
            harmonics[h] = (amplitude * float(w), h * phase + float(rng.uniform(-np.pi, np.pi)))
    return Wave(harmonics, dc)


@dataclass
class Frame:
    """Sampled voltages and currents with the waves they came from."""

    fs_hz: float
    f_hz: float
    voltages: dict[str, np.ndarray]
    currents: dict[str, np.ndarray]
    voltage_waves: dict[str, Wave] = field(default_factory=dict)
    current_waves: dict[str, Wave] = field(default_factory=dict)


def sample_frame(
    voltage_waves: Mapping[str, Wave],
    current_waves: Mapping[str, Wave],
    fs_hz: float,
    f_hz: float,
    n: int,
    noise: float = 0.0,
    seed: int = 1,
    t0_s: float = 0.0,
) -> Frame:
    """Sample waves at ``fs_hz`` for ``n`` samples from ``t0_s``.

    ``noise`` adds Gaussian noise with a standard deviation of ``noise`` times each wave's
    peak (fundamental) amplitude.
    """
    rng = np.random.default_rng(seed)
    t = t0_s + np.arange(n) / fs_hz

    def draw(wave: Wave) -> np.ndarray:
        x = wave.sample(t, f_hz)
        if noise:
            x += rng.normal(0.0, noise * wave.fundamental[0], n)
        return x

    return Frame(
        fs_hz=fs_hz,
        f_hz=f_hz,
        voltages={k: draw(w) for k, w in voltage_waves.items()},
        currents={k: draw(w) for k, w in current_waves.items()},
        voltage_waves=dict(voltage_waves),
        current_waves=dict(current_waves),
    )


def star_voltages(v_ln_rms: float, thd: float = 0.0, dc: float = 0.0, seed: int = 0) -> dict[str, Wave]:
    """Three phase-to-neutral voltages 120 degrees apart (L1 leads), same distortion."""
    base = distorted(v_ln_rms * math.sqrt(2.0), thd=thd, seed=seed, dc=dc)
    return {f"L{k + 1}": base.shifted(2.0 * math.pi * k / 3.0) for k in range(3)}

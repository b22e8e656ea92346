"""The vectorised core against a slow, obviously-correct reference written from the definitions.

The reference loops over samples and channels in plain Python and numpy, following the
docstrings of ``metering.core.cycles`` and ``metering.core.frame`` literally: edges by a
sample-by-sample scan, explicit window weights, DC removed from every signal before any
product, fundamental phasors by an explicit single-bin DFT with ``np.cos``/``np.sin``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from metering.core import CtChannel, MeterConfig, compute_frame
from metering.core.accuracy_report import Scenario

QUARTER_AT_HZ = 55.0


def reference_window(x: np.ndarray, fs: float) -> tuple[float, float, int, int]:
    """(t_first, t_last, n_cycles, cut) by scanning the samples one by one."""
    n = len(x)
    q = max(1, round(fs / (4 * QUARTER_AT_HZ)))
    candidates = [u for u in range(1, n - q) if x[u - 1] < 0 <= x[u]]
    h = 0.1 * max(x[u + q] for u in candidates)
    edges = []
    for u in candidates:
        if u < q:
            ok = u == candidates[0] and x[0] < 0 and x[u + q] > h
        else:
            ok = x[u - q] < -h and x[u + q] > h
        if ok:
            edges.append(u)
    edges = [u for k, u in enumerate(edges) if k == len(edges) - 1 or edges[k + 1] - u > q]
    times = [u - 1 + x[u - 1] / (x[u - 1] - x[u]) for u in edges]
    gaps = [b - a for a, b in zip(times, times[1:])]
    n_cycles = round((times[-1] - times[0]) / min(gaps))
    return times[0], times[-1], n_cycles, edges[-1] - 1


def reference_frame(voltages: dict, currents: dict, fs: float, config: MeterConfig) -> dict:
    """Per CT: p, q, i, s, pf, v_ln, v_ll, energy (Wh, net); and the frequency."""
    v = {k: np.asarray(x, dtype=float) for k, x in voltages.items()}
    t_first, t_last, n_cycles, cut = reference_window(v["L1"], fs)
    n = len(v["L1"])
    # Sample k stands for [k - 1/2, k + 1/2): its weight is the overlap with the window.
    w = np.array([max(0.0, min(k + 0.5, t_last) - max(k - 0.5, t_first)) for k in range(n)])
    total = w.sum()
    f = n_cycles * fs / (t_last - t_first)

    def mean(x):
        return float(np.sum(w * x) / total)

    def rms(x):
        return math.sqrt(mean((x - mean(x)) ** 2))

    def phasor(x):  # 2/W * sum w (x - <x>) e^{-j omega (k - t_first)}
        angle = 2 * math.pi * f / fs * (np.arange(n) - t_first)
        d = x - mean(x)
        return 2 / total * complex(np.sum(w * d * np.cos(angle)), -np.sum(w * d * np.sin(angle)))

    topology = config.topology
    out = {"frequency_hz": f}
    for channel in config.channels:
        i = np.asarray(currents[channel.ct], dtype=float) * (-1.0 if channel.reversed else 1.0)
        ph = channel.phase
        if topology == "3P":
            ref = {"L1": v["L1"], "L2": v["L2"], "L3": v["L1"] - v["L2"]}[ph]
            v_ln, v_ll = None, rms(ref)
        else:
            ref = v[ph]
            v_ln = rms(ref)
            if topology == "1P":
                v_ll = None
            elif topology == "2P+N":
                v_ll = rms(v["L1"] - v["L2"])
            else:
                other = {"L1": "L2", "L2": "L3", "L3": "L1"}[ph]
                v_ll = rms(v[ph] - v[other])
        p = mean((ref - mean(ref)) * (i - mean(i)))
        big_v, big_i = rms(ref), rms(i)
        q = (phasor(ref) * phasor(i).conjugate()).imag / 2
        energy = 0.0
        for k in range(cut):  # the consumed samples, one by one
            energy += ref[k] * i[k]
        energy = (energy - cut * mean(ref) * mean(i)) / fs / 3600
        s = big_v * big_i
        out[channel.ct] = {
            "p": p,
            "q": q,
            "i": big_i,
            "s": s,
            "pf": p / s if s else 0.0,
            "v_ln": v_ln,
            "v_ll": v_ll,
            "energy": energy,
        }
    return out


def compare(result, expected, config) -> None:
    np.testing.assert_allclose(result.frequency_hz, expected["frequency_hz"], rtol=1e-12)
    for ct in result.cts:
        want = expected[ct.ct]
        s = want["s"]
        np.testing.assert_allclose(ct.p_w, want["p"], rtol=0, atol=1e-9 * s)
        np.testing.assert_allclose(ct.q_var, want["q"], rtol=0, atol=1e-7 * s)  # see below
        np.testing.assert_allclose(ct.i_a, want["i"], rtol=1e-9)
        np.testing.assert_allclose(ct.s_va, s, rtol=1e-9)
        np.testing.assert_allclose(ct.pf, want["pf"], rtol=0, atol=1e-9)
        for key in ("v_ln", "v_ll"):
            got = getattr(ct, f"{key}_v")
            if want[key] is None:
                assert got is None
            else:
                np.testing.assert_allclose(got, want[key], rtol=1e-9)
        net = ct.energy_import_wh - ct.energy_export_wh
        np.testing.assert_allclose(net, want["energy"], rtol=1e-9, atol=1e-12)


# The core skips the DC correction of the phasors (the weighted cos and sin rows sum to
# under 1e-6 of W/2 over whole cycles), so Q1 agrees to 1e-7 of S, not 1e-9.


@pytest.mark.parametrize("topology", ["1P", "3P+N", "3P+N-208", "2P+N", "3P"])
def test_it_matches_the_slow_reference(topology):
    scenario = Scenario(
        f"reference {topology}",
        topology=topology,
        f_hz=52.7,
        duration_s=0.5,
        v_thd=0.04,
        i_thd=0.5,
        dc=0.02,
        noise=0.001,
    )
    case = scenario.build()
    channels = tuple(
        CtChannel(c.ct, c.load, c.kind, c.phase, reversed=(k == 1)) for k, c in enumerate(case.config.channels)
    )
    config = MeterConfig(topology, case.config.nominal_hz, channels)
    result = compute_frame(case.voltages, case.currents, scenario.fs_hz, config)
    compare(result, reference_frame(case.voltages, case.currents, scenario.fs_hz, config), config)


def test_it_matches_the_slow_reference_over_a_carried_buffer():
    scenario = Scenario("reference carry", f_hz=47.3, duration_s=0.6, v_thd=0.04, i_thd=0.5, dc=0.02, noise=0.001)
    case = scenario.build()
    cut = 1234
    first = compute_frame(
        {k: x[:cut] for k, x in case.voltages.items()},
        {k: x[:cut] for k, x in case.currents.items()},
        6400.0,
        case.config,
    )
    carry = first.carry
    second = compute_frame(
        {k: x[cut:] for k, x in case.voltages.items()},
        {k: x[cut:] for k, x in case.currents.items()},
        6400.0,
        case.config,
        carry,
    )
    # The reference sees one buffer: the carried samples followed by the second frame's.
    buffer_v = {
        k: np.concatenate((carry.voltages[j], case.voltages[k][cut:])) for j, k in enumerate(("L1", "L2", "L3"))
    }
    buffer_i = {ct: np.concatenate((carry.currents[j], case.currents[ct][cut:])) for j, ct in enumerate(carry.ct_ids)}
    compare(second, reference_frame(buffer_v, buffer_i, 6400.0, case.config), case.config)

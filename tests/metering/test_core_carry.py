"""Frames chained with their carry: every sample's energy counted once, values unchanged."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from metering.core import Carry, CtChannel, MeterConfig, compute_frame
from metering.core.synth import Wave, active_power, distorted, sample_frame, star_voltages

FS = 6400.0
CONFIG = MeterConfig(
    "3P+N",
    50,
    (
        CtChannel("CT-1", "Grid", "grid", "L1"),
        CtChannel("CT-2", "Grid", "grid", "L2"),
        CtChannel("CT-3", "Solar", "solar", "L3", reversed=True),
    ),
)
# Odd frame lengths, 3.9 s in all: none of them whole cycles of 49.7 Hz.
LENGTHS = (2203, 3001, 1777, 2999, 2311, 4097, 1901, 2777, 1513, 2381)


def long_signal(dc: float = 0.0, noise: float = 0.001):
    voltages = star_voltages(230.0, thd=0.04, dc=dc)
    currents = {
        "CT-1": distorted(14.0, voltages["L1"].fundamental[1] - 0.4, thd=0.5, seed=1, dc=dc / 10),
        "CT-2": distorted(3.0, voltages["L2"].fundamental[1] + 0.3, thd=0.2, seed=2, dc=dc / 10),
        "CT-3": distorted(20.0, voltages["L3"].fundamental[1] + 2.9, thd=0.05, seed=3),
    }
    frame = sample_frame(voltages, currents, FS, 49.7, sum(LENGTHS), noise=noise, seed=5)
    return frame, voltages, currents


def run_in_frames(frame, lengths=LENGTHS):
    results, carry, start = [], None, 0
    for length in lengths:
        part = slice(start, start + length)
        result = compute_frame(
            {k: v[part] for k, v in frame.voltages.items()},
            {k: c[part] for k, c in frame.currents.items()},
            FS,
            CONFIG,
            carry,
        )
        results.append(result)
        carry = result.carry
        start += length
    return results


def net_energy(results) -> np.ndarray:
    return sum(r.ct.energy_import_wh - r.ct.energy_export_wh for r in results)


def test_it_counts_the_same_energy_in_ten_frames_as_in_one():
    frame, voltages, currents = long_signal()
    whole = compute_frame(frame.voltages, frame.currents, FS, CONFIG)
    parts = run_in_frames(frame)
    np.testing.assert_allclose(net_energy(parts), net_energy([whole]), rtol=1e-9)
    np.testing.assert_allclose(sum(r.energy_s for r in parts), whole.energy_s, rtol=0, atol=1e-12)
    assert parts[-1].carry.n_samples == whole.carry.n_samples


def test_it_keeps_energy_additive_with_dc_offsets_to_the_offset_estimates():
    # Each frame removes the product of the DC offsets it measures; those estimates differ
    # from frame to frame by their noise, hence a looser tolerance than without offsets.
    frame, _, _ = long_signal(dc=8.0)
    whole = compute_frame(frame.voltages, frame.currents, FS, CONFIG)
    parts = run_in_frames(frame)
    np.testing.assert_allclose(net_energy(parts), net_energy([whole]), rtol=1e-6)


def test_it_meters_each_chained_frame_accurately():
    frame, voltages, currents = long_signal()
    for result in run_in_frames(frame):
        np.testing.assert_allclose(result.frequency_hz, 49.7, atol=0.01)
        for ct, k in zip(result.cts, (1, 2, 3)):
            v, i = voltages[f"L{k}"], currents[f"CT-{k}"]
            sign = -1.0 if k == 3 else 1.0
            np.testing.assert_allclose(ct.p_w, sign * active_power(v, i), rtol=0, atol=1e-3 * v.rms * i.rms)
            np.testing.assert_allclose(ct.i_a, i.rms, rtol=5e-4)


def test_it_integrates_a_constant_power_to_p_times_t():
    # The voltage starts on a rising zero crossing, so the consumed samples are whole cycles.
    v = Wave({1: (230.0 * math.sqrt(2), -math.pi / 2)})
    i = Wave({1: (10.0 * math.sqrt(2), -math.pi / 2 - 0.5)})
    p_w = active_power(v, i)
    config = MeterConfig("1P", 50, (CtChannel("CT-1", "House", "grid", "L1"),))
    frame = sample_frame({"L1": v}, {"CT-1": i}, FS, 50.0, 12 * 6400)
    results, carry = [], None
    for k in range(12):
        part = slice(k * 6400, (k + 1) * 6400)
        result = compute_frame(
            {"L1": frame.voltages["L1"][part]}, {"CT-1": frame.currents["CT-1"][part]}, FS, config, carry
        )
        results.append(result)
        carry = result.carry
    seconds = sum(r.energy_s for r in results)
    assert 11.9 < seconds < 12.0  # the last partial cycle waits in the carry
    energy = sum(r.ct.energy_import_wh[0] for r in results)
    # Over whole cycles the integral of v*i is exactly P*t; the samples end within one
    # sample of a zero crossing, which bounds the difference by far less than 1e-5.
    np.testing.assert_allclose(energy, p_w * seconds / 3600.0, rtol=1e-5)
    np.testing.assert_allclose(energy, p_w * 12.0 / 3600.0, rtol=2e-3)  # all but the last cycle
    assert sum(r.ct.energy_export_wh[0] for r in results) == 0.0


def test_it_survives_pickling_the_carry():
    frame, _, _ = long_signal()
    first, second = run_in_frames(frame, LENGTHS[:2])
    carry = pickle.loads(pickle.dumps(first.carry))
    assert isinstance(carry, Carry)
    part = slice(LENGTHS[0], LENGTHS[0] + LENGTHS[1])
    again = compute_frame(
        {k: v[part] for k, v in frame.voltages.items()},
        {k: c[part] for k, c in frame.currents.items()},
        FS,
        CONFIG,
        carry,
    )
    np.testing.assert_array_equal(again.ct.p_w, second.ct.p_w)
    np.testing.assert_array_equal(again.ct.energy_import_wh, second.ct.energy_import_wh)


def test_it_refuses_a_carry_from_another_configuration():
    frame, _, _ = long_signal()
    carry = run_in_frames(frame, LENGTHS[:1])[0].carry
    other = MeterConfig("3P+N", 50, CONFIG.channels[:2])
    part = slice(LENGTHS[0], LENGTHS[0] + LENGTHS[1])
    with pytest.raises(ValueError, match="carry comes from a frame with another configuration"):
        compute_frame(
            {k: v[part] for k, v in frame.voltages.items()},
            {k: c[part] for k, c in frame.currents.items()},
            FS,
            other,
            carry,
        )
    with pytest.raises(ValueError, match="carry comes from a frame with another configuration or sample rate"):
        compute_frame(
            {k: v[part] for k, v in frame.voltages.items()},
            {k: c[part] for k, c in frame.currents.items()},
            6400.5,
            CONFIG,
            carry,
        )

"""The benchmark's measurement runs and gives sane figures (no timing is asserted)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metering.core import compute_frame
from tools import bench_core as bench


@pytest.mark.parametrize(
    ("dtype", "source"), [(np.float64, "arrays"), (np.float64, "decoded"), (np.float64, "block"), (np.float32, "block")]
)
def test_it_measures_a_frame_and_both_rooflines(dtype, source):
    figures = bench.measure(dtype, source, rounds=1, budget_s=0.001)
    for name in ("frame_s", "fresh_s", "hot_s", "cold_s", "stream_s", "ratio_hot", "ratio_cold", "frames_per_s"):
        assert math.isfinite(figures[name]) and figures[name] > 0, name
    assert figures["frame_bytes"] == 31 * bench.N_SAMPLES * np.dtype(dtype).itemsize
    assert figures["ratio_cold"] == pytest.approx(figures["frame_s"] / figures["cold_s"])
    assert figures["frame_min_s"] <= figures["frame_s"] <= figures["frame_max_s"]


def test_it_refuses_an_unknown_source():
    with pytest.raises(ValueError, match=r"source must be one of arrays, decoded, block, got 'json'"):
        bench.measure(np.float64, "json", rounds=1, budget_s=0.001)


def test_it_meters_the_decoded_reference_frame_like_the_arrays():
    config = bench.reference_config()
    frame = bench.reference_frames(config, 1)[0]
    decoded = bench.decoded(frame, 0)
    assert decoded.currents[config.channels[0].ct].base is not None  # rows of one block
    exact = compute_frame(frame.voltages, frame.currents, bench.FS_HZ, config)
    got = compute_frame(decoded.voltages, decoded.currents, bench.FS_HZ, config)
    np.testing.assert_allclose(got.ct.p_w, exact.ct.p_w, rtol=0, atol=1e-4 * exact.ct.s_va.max())

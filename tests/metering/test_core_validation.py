"""Bad input: precise ValueErrors that name the problem and the channel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metering.core import CtChannel, MeterConfig, compute_frame

FS = 6400.0
T = np.arange(6400) / FS
V1 = 325.0 * np.sin(2 * math.pi * 50 * T)
V2 = 325.0 * np.sin(2 * math.pi * 50 * T - 2 * math.pi / 3)
V3 = 325.0 * np.sin(2 * math.pi * 50 * T + 2 * math.pi / 3)
I1 = 10.0 * np.sin(2 * math.pi * 50 * T - 0.3)
STAR = MeterConfig(
    "3P+N", 50, (CtChannel("CTH-0001/A", "Grid", "grid", "L1"), CtChannel("CTH-0001/B", "Grid", "grid", "L2"))
)


def frame(**changes):
    voltages = {"L1": V1, "L2": V2, "L3": V3}
    currents = {"CTH-0001/A": I1, "CTH-0001/B": I1.copy()}
    for key, value in changes.items():
        target = currents if key.startswith("CTH") else voltages
        key = key.replace("_", "-").replace("CTH-0001-", "CTH-0001/")
        if value is None:
            del target[key]
        else:
            target[key] = value
    return voltages, currents


def test_it_names_a_channel_of_another_length():
    with pytest.raises(ValueError, match=r"current CTH-0001/B has 6399 samples; voltage L1 has 6400"):
        compute_frame(*frame(CTH_0001_B=I1[:-1]), FS, STAR)
    with pytest.raises(ValueError, match=r"voltage L3 has 6401 samples; voltage L1 has 6400"):
        compute_frame(*frame(L3=np.append(V3, 0.0)), FS, STAR)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("index", [0, 3000, 6399])
def test_it_names_a_current_with_nan_or_inf(bad, index):
    current = I1.copy()
    current[index] = bad
    with pytest.raises(ValueError, match=r"current CTH-0001/B contains NaN or infinite values"):
        compute_frame(*frame(CTH_0001_B=current), FS, STAR)


@pytest.mark.parametrize("name", ["L1", "L3"])
@pytest.mark.parametrize("index", [0, 3000, 6399])
def test_it_names_a_voltage_with_nan(name, index):
    voltage = {"L1": V1, "L3": V3}[name].copy()
    voltage[index] = np.nan
    with pytest.raises(ValueError, match=rf"voltage {name} contains NaN or infinite values"):
        compute_frame(*frame(**{name: voltage}), FS, STAR)


def test_it_names_a_nan_in_a_python_list():
    with pytest.raises(ValueError, match=r"current CTH-0001/A contains NaN or infinite values"):
        compute_frame(*frame(CTH_0001_A=[float("nan")] + I1[1:].tolist()), FS, STAR)


def test_it_refuses_values_too_large_to_square():
    with pytest.raises(ValueError, match=r"current CTH-0001/A has values too large to meter"):
        compute_frame(*frame(CTH_0001_A=I1 * 1e300), FS, STAR)


def test_it_refuses_empty_arrays():
    empty = np.array([])
    with pytest.raises(ValueError, match=r"voltage L1 is empty"):
        compute_frame({"L1": empty, "L2": empty, "L3": empty}, {"CTH-0001/A": empty, "CTH-0001/B": empty}, FS, STAR)


def test_it_refuses_what_is_not_numbers():
    with pytest.raises(ValueError, match=r"current CTH-0001/A is not an array of real numbers"):
        compute_frame(*frame(CTH_0001_A=["a"] * 6400), FS, STAR)
    with pytest.raises(ValueError, match=r"voltage L2 is not an array of real numbers"):
        compute_frame(*frame(L2=V2 * 1j), FS, STAR)
    with pytest.raises(ValueError, match=r"current CTH-0001/A must be one-dimensional"):
        compute_frame(*frame(CTH_0001_A=np.ones((6400, 2))), FS, STAR)
    with pytest.raises(ValueError, match=r"voltage L1 must be an array of samples, got float"):
        compute_frame(*frame(L1=1.0), FS, STAR)


@pytest.mark.parametrize("fs", [999.0, 50_001.0, 0.0, -6400.0, math.nan])
def test_it_refuses_a_sample_rate_out_of_range(fs):
    with pytest.raises(ValueError, match=r"fs_hz must be between 1 and 50 kHz"):
        compute_frame(*frame(), fs, STAR)


def test_it_accepts_the_sample_rate_limits():
    for fs in (1000.0, 50_000.0):
        t = np.arange(int(fs * 0.2)) / fs
        v = 325.0 * np.sin(2 * math.pi * 50 * t)
        config = MeterConfig("1P", 50, ())
        result = compute_frame({"L1": v}, {}, fs, config)
        assert result.n_cycles == 8  # crossings at 0.02 .. 0.18 s
        np.testing.assert_allclose(result.frequency_hz, 50.0, atol=1e-9)


def test_it_needs_a_whole_cycle():
    with pytest.raises(ValueError, match=r"no whole cycle: voltage L1 has fewer than two rising zero crossings"):
        compute_frame(*frame(L1=V1[:150], L2=V2[:150], L3=V3[:150], CTH_0001_A=I1[:150], CTH_0001_B=I1[:150]), FS, STAR)
    zero = np.zeros(6400)
    with pytest.raises(ValueError, match=r"no whole cycle"):
        compute_frame(*frame(L1=zero, L2=zero, L3=zero), FS, STAR)
    with pytest.raises(ValueError, match=r"no whole cycle"):
        compute_frame(*frame(L1=V1 + 400.0, L2=zero, L3=zero), FS, STAR)


def test_it_names_the_missing_voltages_of_the_topology():
    with pytest.raises(ValueError, match=r"^topology 3P\+N needs voltages L1, L2, L3; missing L3$"):
        compute_frame(*frame(L3=None), FS, STAR)
    with pytest.raises(ValueError, match=r"^topology 3P\+N needs voltages L1, L2, L3; missing L1, L2$"):
        compute_frame(*frame(L1=None, L2=None), FS, STAR)
    delta = MeterConfig("3P", 50, ())
    with pytest.raises(ValueError, match=r"^topology 3P needs voltages L1, L2; missing L2$"):
        compute_frame({"L1": V1}, {}, FS, delta)


def test_it_needs_currents_for_every_configured_ct_and_ignores_others():
    with pytest.raises(ValueError, match=r"no currents for CT CTH-0001/B \(load 'Grid'\) in this frame"):
        compute_frame(*frame(CTH_0001_B=None), FS, STAR)
    voltages, currents = frame()
    currents["CTH-0009/D"] = np.full(3, np.nan)  # not configured: ignored, even malformed
    result = compute_frame(voltages, currents, FS, STAR)
    assert [ct.ct for ct in result.cts] == ["CTH-0001/A", "CTH-0001/B"]


def test_it_refuses_an_unknown_topology():
    with pytest.raises(
        ValueError, match=r"unknown topology '3P\+PEN'; expected one of 1P, 3P\+N, 3P, 2P\+N, 3P\+N-208"
    ):
        compute_frame(*frame(), FS, MeterConfig("3P+PEN", 50, ()))


@pytest.mark.parametrize(("topology", "phase"), [("1P", "L2"), ("2P+N", "L3"), ("3P+N", "L4"), ("3P", "N")])
def test_it_refuses_a_phase_invalid_for_the_topology(topology, phase):
    config = MeterConfig(topology, 50, (CtChannel("CTH-0001/A", "Oven", "appliance", phase),))
    with pytest.raises(ValueError, match=rf"CT CTH-0001/A \(load 'Oven'\): phase '{phase}' is not valid for topology"):
        compute_frame(*frame(), FS, config)


def test_it_refuses_unknown_kinds_and_duplicated_cts():
    config = MeterConfig("1P", 50, (CtChannel("CTH-0001/A", "Oven", "kitchen", "L1"),))
    with pytest.raises(ValueError, match=r"CT CTH-0001/A \(load 'Oven'\): unknown kind 'kitchen'"):
        compute_frame(*frame(), FS, config)
    twice = MeterConfig("1P", 50, (CtChannel("CTH-0001/A", "Oven", "appliance", "L1"),) * 2)
    with pytest.raises(ValueError, match=r"CT CTH-0001/A is configured twice"):
        compute_frame(*frame(), FS, twice)
    mixed = MeterConfig(
        "1P", 50, (CtChannel("CTH-0001/A", "Oven", "appliance", "L1"), CtChannel("CTH-0001/B", "Oven", "grid", "L1"))
    )
    with pytest.raises(ValueError, match=r"load 'Oven' mixes kinds 'appliance' and 'grid'"):
        compute_frame(*frame(), FS, mixed)


def test_it_refuses_a_nominal_frequency_other_than_50_or_60():
    with pytest.raises(ValueError, match=r"nominal_hz must be 50 or 60, got 55"):
        compute_frame(*frame(), FS, MeterConfig("1P", 55, ()))

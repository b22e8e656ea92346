"""What a frame yields: per CT, per load, location totals, JSON, and the edge cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from metering.core import CtChannel, MeterConfig, compute_frame, flow_totals
from metering.core.synth import Wave, sample_frame, star_voltages

FS = 6400.0
SQ2 = math.sqrt(2.0)
VOLTAGES = star_voltages(230.0)


def current(rms: float, phase: str, lag: float = 0.0) -> Wave:
    return Wave({1: (rms * SQ2, VOLTAGES[phase].fundamental[1] - lag)})


def run(config: MeterConfig, currents: dict[str, Wave], noise: float = 0.0, n: int = 6400):
    frame = sample_frame(VOLTAGES, currents, FS, 50.0, n, noise=noise, seed=9)
    return compute_frame(frame.voltages, frame.currents, FS, config)


def test_it_negates_a_reversed_ct():
    config = MeterConfig(
        "3P+N", 50, (CtChannel("CT-1", "A", "circuit", "L1"), CtChannel("CT-2", "B", "circuit", "L1", reversed=True))
    )
    wave = current(5.0, "L1", 0.4)
    result = run(config, {"CT-1": wave, "CT-2": wave})
    plain, flipped = result.cts
    np.testing.assert_allclose(
        [flipped.p_w, flipped.q_var, flipped.pf], [-plain.p_w, -plain.q_var, -plain.pf], rtol=1e-12
    )
    np.testing.assert_allclose([flipped.i_a, flipped.s_va], [plain.i_a, plain.s_va], rtol=1e-12)
    assert plain.energy_import_wh > 0 and plain.energy_export_wh == 0
    assert flipped.energy_export_wh == pytest.approx(plain.energy_import_wh, rel=1e-12)
    assert flipped.energy_import_wh == 0


def test_it_reports_zero_for_a_ct_without_current_and_without_warnings():
    config = MeterConfig("3P+N", 50, (CtChannel("CT-1", "Idle", "appliance", "L2"),))
    frame = sample_frame(VOLTAGES, {}, FS, 50.0, 6400)
    for samples in (np.zeros(6400), np.full(6400, 0.37)):  # nothing, or only a sensor offset
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = compute_frame(frame.voltages, {"CT-1": samples}, FS, config)
        ct = result.cts[0]
        assert (ct.p_w, ct.q_var, ct.pf, ct.energy_import_wh, ct.energy_export_wh) == (0.0, 0.0, 0.0, 0.0, 0.0)
        assert ct.i_a == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(ct.v_ln_v, 230.0, rtol=1e-6)


def test_it_meters_a_lone_voltage_channel():
    frame = sample_frame({"L1": VOLTAGES["L1"]}, {}, FS, 50.0, 3000)
    result = compute_frame(frame.voltages, {}, FS, MeterConfig("1P", 50, ()))
    assert (result.cts, result.loads) == ((), ())
    np.testing.assert_allclose(result.v_ln_v["L1"], 230.0, rtol=1e-6)
    np.testing.assert_allclose(result.frequency_hz, 50.0, atol=1e-9)
    assert result.totals.consumption_w == 0.0
    json.dumps(result.to_dict())


def site() -> MeterConfig:
    channels = [CtChannel(f"GRID-{k}", "Grid", "grid", f"L{k}") for k in (1, 2, 3)]
    channels += [CtChannel("PV-1", "Solar", "solar", "L1"), CtChannel("BAT-1", "Battery", "battery", "L2")]
    channels += [CtChannel("HP-1", "Heat pump", "appliance", "L3"), CtChannel("GRID-4", "Garage", "circuit", "L1")]
    return MeterConfig("3P+N", 50, tuple(channels))


def test_it_sums_loads_and_totals_by_kind():
    # Grid imports 1 kW per phase; solar produces 3 kW; the battery charges with 500 W.
    currents = {f"GRID-{k}": current(1000 / 230, f"L{k}") for k in (1, 2, 3)}
    currents |= {"PV-1": current(3000 / 230, "L1"), "BAT-1": current(500 / 230, "L2", math.pi)}
    currents |= {"HP-1": current(800 / 230, "L3"), "GRID-4": current(200 / 230, "L1")}
    result = run(site(), currents)
    assert [load.name for load in result.loads] == ["Grid", "Solar", "Battery", "Heat pump", "Garage"]
    grid = result.load_values("Grid")
    assert [ct.ct for ct in grid.phases] == ["GRID-1", "GRID-2", "GRID-3"]
    np.testing.assert_allclose(grid.p_w, 3000.0, rtol=1e-4)
    totals = result.totals
    np.testing.assert_allclose(
        [totals.grid_w, totals.grid_import_w, totals.solar_w, totals.battery_w, totals.battery_charge_w],
        [3000.0, 3000.0, 3000.0, -500.0, 500.0],
        rtol=1e-4,
    )
    assert totals.grid_export_w == 0.0 and totals.battery_discharge_w == 0.0
    np.testing.assert_allclose(totals.consumption_w, 3000 + 3000 - 500, rtol=1e-4)  # grid + solar + battery
    np.testing.assert_allclose(totals.submetered_w, 1000.0, rtol=1e-4)  # heat pump and garage, not added
    np.testing.assert_allclose(totals.self_consumption_w, 3000.0, rtol=1e-4)  # no export: all solar used
    np.testing.assert_allclose(totals.self_supplied_w, 5500.0 - 3000.0, rtol=1e-4)
    # The consumed samples are not whole cycles here (the lead-in before the first crossing),
    # so the energy carries part of a cycle of the power's ripple: within S / (2 w t).
    hours = result.energy_s / 3600
    np.testing.assert_allclose(totals.grid_import_wh, 3000 * hours, rtol=5e-3)
    np.testing.assert_allclose(totals.consumption_wh, 5500 * hours, rtol=5e-3)
    np.testing.assert_allclose(totals.battery_charge_wh, 500 * hours, rtol=5e-3)


def test_it_splits_export_and_self_consumption():
    currents = {f"GRID-{k}": current(1000 / 230, f"L{k}", math.pi) for k in (1, 2, 3)}  # exporting 3 kW
    currents |= {"PV-1": current(5000 / 230, "L1"), "BAT-1": current(0.0, "L2"), "HP-1": current(1.0, "L3")}
    currents |= {"GRID-4": current(0.5, "L1")}
    totals = run(site(), currents).totals
    np.testing.assert_allclose([totals.grid_w, totals.grid_export_w, totals.solar_w], [-3000, 3000, 5000], rtol=1e-4)
    np.testing.assert_allclose(totals.consumption_w, 2000.0, rtol=1e-3)
    np.testing.assert_allclose(totals.self_consumption_w, 2000.0, rtol=1e-3)  # solar - export
    np.testing.assert_allclose(totals.self_supplied_w, 2000.0, rtol=1e-3)  # consumption - import
    assert totals.grid_import_wh == 0.0 and totals.grid_export_wh > 0


def test_it_prefers_explicit_consumption_loads():
    config = MeterConfig(
        "3P+N", 50, (CtChannel("G", "Grid", "grid", "L1"), CtChannel("H", "House", "consumption", "L2"))
    )
    totals = run(config, {"G": current(4.0, "L1"), "H": current(10.0, "L2")}).totals
    np.testing.assert_allclose(totals.consumption_w, 2300.0, rtol=1e-4)


def test_it_gives_the_flows_of_loads_by_name():
    flows = flow_totals(
        {"Grid": -1000.0, "Solar": 3000.0, "Pool": 400.0}, {"Grid": "grid", "Solar": "solar", "Pool": "circuit"}
    )
    assert flows["consumption_w"] == 2000.0
    assert flows["grid_export_w"] == 1000.0 and flows["grid_import_w"] == 0.0
    assert flows["self_consumption_w"] == 2000.0 and flows["self_supplied_w"] == 2000.0
    assert flows["submetered_w"] == 400.0


def test_it_serialises_to_plain_json():
    result = run(site(), {ct.ct: current(2.0, ct.phase, 0.2) for ct in site().channels}, noise=0.001)
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {
        "frequency_hz",
        "window_s",
        "n_cycles",
        "energy_s",
        "v_ln_v",
        "v_ll_v",
        "cts",
        "loads",
        "totals",
    }
    assert data["loads"][0]["phases"][0]["ct"] == "GRID-1"
    assert set(data["cts"][0]) == {
        "ct", "load", "kind", "phase", "v_ln_v", "v_ll_v", "i_a", "p_w", "q_var", "s_va", "pf",
        "energy_import_wh", "energy_export_wh",
    }  # fmt: skip
    assert all(type(value) in (str, float) for value in data["cts"][0].values())
    delta = MeterConfig("3P", 50, (CtChannel("CT-1", "Motor", "appliance", "L1"),))
    t = np.arange(6400) / FS
    v13, v23 = (325.0 * np.sin(2 * math.pi * 50 * t + a) for a in (-math.pi / 6, -math.pi / 2))
    as_json = compute_frame({"L1": v13, "L2": v23}, {"CT-1": np.sin(2 * math.pi * 50 * t)}, FS, delta).to_dict()
    assert as_json["cts"][0]["v_ln_v"] is None and as_json["v_ln_v"] == {}


def test_it_accepts_lists_and_float32():
    config = site()
    currents = {ct.ct: current(3.0, ct.phase, 0.3) for ct in config.channels}
    frame = sample_frame(VOLTAGES, currents, FS, 50.0, 6400, noise=0.001, seed=2)
    exact = compute_frame(frame.voltages, frame.currents, FS, config)
    as_lists = compute_frame(
        {k: v.tolist() for k, v in frame.voltages.items()},
        {k: c.tolist() for k, c in frame.currents.items()},
        FS,
        config,
    )
    np.testing.assert_array_equal(as_lists.ct.p_w, exact.ct.p_w)
    single = compute_frame(
        {k: v.astype(np.float32) for k, v in frame.voltages.items()},
        {k: c.astype(np.float32) for k, c in frame.currents.items()},
        FS,
        config,
    )
    assert single.carry.currents.dtype == np.float32
    s = exact.ct.s_va
    np.testing.assert_array_less(np.abs(single.ct.p_w - exact.ct.p_w), 1e-5 * s)
    np.testing.assert_array_less(np.abs(single.ct.q_var - exact.ct.q_var), 1e-5 * s)
    np.testing.assert_allclose(single.ct.i_a, exact.ct.i_a, rtol=1e-5)
    np.testing.assert_allclose(single.frequency_hz, exact.frequency_hz, atol=1e-4)


def test_it_finds_the_cycles_on_another_phase_when_l1_is_dead():
    config = MeterConfig("3P+N", 50, (CtChannel("CT-1", "A", "circuit", "L1"), CtChannel("CT-2", "B", "circuit", "L2")))
    frame = sample_frame(VOLTAGES, {"CT-1": current(2.0, "L1"), "CT-2": current(2.0, "L2", 0.3)}, FS, 50.0, 6400)
    frame.voltages["L1"] = np.zeros(6400)  # a blown fuse on L1
    result = compute_frame(frame.voltages, frame.currents, FS, config)
    np.testing.assert_allclose(result.frequency_hz, 50.0, atol=1e-6)
    dead, alive = result.cts
    assert (dead.v_ln_v, dead.p_w, dead.pf) == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(alive.p_w, 460.0 * math.cos(0.3), rtol=1e-4)

"""Each topology of SPEC section 3 against analytic answers, and the manual's examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metering.core import CtChannel, MeterConfig, compute_frame
from metering.core.synth import Wave, active_power, fundamental_reactive_power, sample_frame, star_voltages

FS = 6400.0
N = 6400  # 1 s
SQ2 = math.sqrt(2.0)


def sine(rms: float, phase: float = 0.0, **harmonics: tuple[float, float]) -> Wave:
    """A sine of ``rms`` volts or amps and phase (rad); ``h3=(rms, phase)`` adds harmonics."""
    waves = {1: (rms * SQ2, phase)}
    waves.update({int(k[1:]): (a * SQ2, ph) for k, (a, ph) in harmonics.items()})
    return Wave(waves)


def run(
    config: MeterConfig, voltages: dict[str, Wave], currents: dict[str, Wave], f_hz: float = 50.0, noise: float = 0.001
):
    frame = sample_frame(voltages, currents, FS, f_hz, N, noise=noise, seed=3)
    return compute_frame(frame.voltages, frame.currents, FS, config)


def check_ct(values, v: Wave, i: Wave) -> None:
    """P within 0.1 % of S, Q1 within 0.2 % of S, I within 0.05 %."""
    s = v.rms * i.rms
    np.testing.assert_allclose(values.p_w, active_power(v, i), rtol=0, atol=1e-3 * s)
    np.testing.assert_allclose(values.q_var, fundamental_reactive_power(v, i), rtol=0, atol=2e-3 * s)
    np.testing.assert_allclose(values.i_a, i.rms, rtol=5e-4)
    np.testing.assert_allclose(values.s_va, s, rtol=1e-3)


def test_it_meters_a_single_phase_load():
    v, i = sine(230.0), sine(10.0, -math.pi / 6)  # 30 degrees lagging
    config = MeterConfig("1P", 50, (CtChannel("CTH-0001/A", "House", "grid", "L1"),))
    result = run(config, {"L1": v}, {"CTH-0001/A": i})
    ct = result.cts[0]
    check_ct(ct, v, i)
    np.testing.assert_allclose([ct.p_w, ct.q_var, ct.pf], [1991.86, 1150.0, 0.8660], rtol=1e-3)
    np.testing.assert_allclose(ct.v_ln_v, 230.0, rtol=5e-4)
    assert ct.v_ll_v is None
    assert result.v_ll_v == {}
    np.testing.assert_allclose(result.frequency_hz, 50.0, atol=0.01)


@pytest.mark.parametrize(("topology", "v_ln", "v_ll"), [("3P+N", 230.0, 398.37), ("3P+N-208", 120.0, 207.85)])
def test_it_computes_line_to_line_voltages_from_instantaneous_differences(topology, v_ln, v_ll):
    voltages = star_voltages(v_ln, thd=0.04)
    # Unbalanced on purpose: sqrt(3) * V_LN would be wrong for L1-L2.
    voltages["L2"] = Wave({h: (a * 0.97, ph) for h, (a, ph) in voltages["L2"].harmonics.items()})
    currents = {f"CT{k}": sine(5.0 * k, voltages[f"L{k}"].fundamental[1] - 0.3 * k) for k in (1, 2, 3)}
    config = MeterConfig(topology, 50, tuple(CtChannel(f"CT{k}", "Grid", "grid", f"L{k}") for k in (1, 2, 3)))
    result = run(config, voltages, currents)
    for k, pair in ((1, ("L1", "L2")), (2, ("L2", "L3")), (3, ("L3", "L1"))):
        ct = result.cts[k - 1]
        check_ct(ct, voltages[f"L{k}"], currents[f"CT{k}"])
        np.testing.assert_allclose(ct.v_ln_v, voltages[f"L{k}"].rms, rtol=5e-4)
        np.testing.assert_allclose(ct.v_ll_v, voltages[pair[0]].minus(voltages[pair[1]]).rms, rtol=5e-4)
    np.testing.assert_allclose(result.v_ll_v["L3-L1"], v_ll * math.sqrt(1 + 0.04**2), rtol=1e-3)
    assert abs(result.v_ll_v["L1-L2"] - math.sqrt(3) * result.v_ln_v["L1"]) > 2.0
    load = result.loads[0]
    np.testing.assert_allclose(load.p_w, sum(c.p_w for c in result.cts), rtol=1e-12)


def test_it_sums_a_240_v_split_phase_load_over_its_two_cts():
    v1 = sine(120.0)
    voltages = {"L1": v1, "L2": v1.shifted(math.pi)}
    load = sine(10.0, -0.2)  # 10 A through a 240 V load, out on L1 and back on L2
    currents = {"CT-A": load, "CT-B": load.scaled(-1.0)}
    config = MeterConfig(
        "2P+N",
        60,
        (CtChannel("CT-A", "Range", "appliance", "L1"), CtChannel("CT-B", "Range", "appliance", "L2")),
    )
    result = run(config, voltages, currents, f_hz=60.0)
    for ct in result.cts:
        np.testing.assert_allclose(ct.p_w, 1200.0 * math.cos(0.2), rtol=1e-3)
        np.testing.assert_allclose(ct.v_ln_v, 120.0, rtol=5e-4)
        np.testing.assert_allclose(ct.v_ll_v, 240.0, rtol=5e-4)
    total = result.loads[0]
    np.testing.assert_allclose(total.p_w, 240.0 * 10.0 * math.cos(0.2), rtol=1e-3)
    np.testing.assert_allclose(total.q_var, 240.0 * 10.0 * math.sin(0.2), rtol=2e-3)
    np.testing.assert_allclose(result.frequency_hz, 60.0, atol=0.01)


def delta_voltages(v_ll: float) -> tuple[dict[str, Wave], dict[str, Wave]]:
    """Measured delta voltages (against L3) and the virtual star voltages behind them."""
    star = {f"L{k + 1}": sine(v_ll / math.sqrt(3), -2 * math.pi * k / 3) for k in range(3)}
    measured = {"L1": star["L1"].minus(star["L3"]), "L2": star["L2"].minus(star["L3"])}
    return measured, star


def test_it_measures_a_balanced_delta_load_with_two_wattmeters():
    measured, star = delta_voltages(230.0)
    phi = 0.5
    # Balanced three-phase load: line currents in phase with the star voltages, lagging phi.
    lines = {k: sine(16.0, w.fundamental[1] - phi) for k, w in star.items()}
    config = MeterConfig(
        "3P", 50, (CtChannel("CT-1", "Motor", "appliance", "L1"), CtChannel("CT-2", "Motor", "appliance", "L2"))
    )
    result = run(config, measured, {"CT-1": lines["L1"], "CT-2": lines["L2"]})
    motor = result.loads[0]
    true_p = math.sqrt(3) * 230.0 * 16.0 * math.cos(phi)
    true_q = math.sqrt(3) * 230.0 * 16.0 * math.sin(phi)
    s_total = math.sqrt(3) * 230.0 * 16.0
    np.testing.assert_allclose(motor.p_w, true_p, rtol=0, atol=1e-3 * s_total)
    np.testing.assert_allclose(motor.q_var, true_q, rtol=0, atol=2e-3 * s_total)
    for ct, phase in zip(result.cts, ("L1", "L2")):
        assert ct.v_ln_v is None
        np.testing.assert_allclose(ct.v_ll_v, 230.0, rtol=5e-4)
        check_ct(ct, measured[phase], lines[phase])
    assert result.v_ln_v == {}
    np.testing.assert_allclose(list(result.v_ll_v.values()), [230.0] * 3, rtol=5e-4)


def test_it_follows_the_manuals_single_phase_delta_table():
    # Loads powered by L1-L3 (CT on L1, phase L1), L2-L3 (CT on L2, phase L2) and L1-L2
    # (CT on L1, phase L3), each measured by its own CT.
    measured, star = delta_voltages(230.0)
    v12 = measured["L1"].minus(measured["L2"])
    supplies = {"L1": measured["L1"], "L2": measured["L2"], "L3": v12}
    currents = {
        "CT-A": sine(8.0, supplies["L1"].fundamental[1] - 0.1),
        "CT-B": sine(3.0, supplies["L2"].fundamental[1] + 0.4),
        "CT-C": sine(12.0, supplies["L3"].fundamental[1] - 1.0),
    }
    config = MeterConfig(
        "3P",
        50,
        (
            CtChannel("CT-A", "Oven", "appliance", "L1"),
            CtChannel("CT-B", "Heater", "appliance", "L2"),
            CtChannel("CT-C", "Welder", "appliance", "L3"),
        ),
    )
    result = run(config, measured, currents)
    for ct, phase, (_, i) in zip(result.cts, ("L1", "L2", "L3"), currents.items()):
        check_ct(ct, supplies[phase], i)
        np.testing.assert_allclose(ct.v_ll_v, 230.0, rtol=5e-4)
        assert ct.v_ln_v is None
    np.testing.assert_allclose([load.p_w for load in result.loads], [1830.6, 635.5, 1491.3], rtol=1e-3)


# SPEC section 4: the manual's live card, star 3P+N (its header swaps the voltage columns).
LIVE_CARD = [
    # phase, P [W], Q [var], PF, I [A], V_LN [V], V_LL [V]
    ("L1", 15.0, 75.0, 0.20, 0.322, 240.4, 416.0),
    ("L2", 11.0, 33.0, 0.32, 0.146, 239.7, 415.4),
    ("L3", 71.0, 25.0, 0.94, 0.317, 239.8, 415.8),
]


def test_it_reproduces_the_manuals_live_card():
    voltages = {phase: sine(v_ln, -2 * math.pi * k / 3) for k, (phase, _, _, _, _, v_ln, _) in enumerate(LIVE_CARD)}
    currents = {}
    for phase, p, q, _, i, v_ln, _ in LIVE_CARD:
        i1 = math.hypot(p, q) / v_ln  # fundamental carries P and Q1 ...
        theta = voltages[phase].fundamental[1] - math.atan2(q, p)
        ih = math.sqrt(i**2 - i1**2)  # ... a 3rd harmonic (no 3rd in the voltage) the rest of I
        currents[f"CT-{phase}"] = sine(i1, theta, h3=(ih, 0.7))
    config = MeterConfig("3P+N", 50, tuple(CtChannel(f"CT-{ph}", "Grid", "grid", ph) for ph, *_ in LIVE_CARD))
    result = run(config, voltages, currents)
    for ct, (phase, p, q, pf, i, v_ln, v_ll) in zip(result.cts, LIVE_CARD):
        assert ct.phase == phase
        s = v_ln * i
        np.testing.assert_allclose(ct.p_w, p, rtol=0, atol=1e-3 * s)
        np.testing.assert_allclose(ct.q_var, q, rtol=0, atol=2e-3 * s)
        np.testing.assert_allclose(ct.i_a, i, rtol=5e-4)
        np.testing.assert_allclose(ct.v_ln_v, v_ln, rtol=5e-4)
        np.testing.assert_allclose(ct.v_ll_v, v_ll, atol=0.5)  # the table rounds; ours is exact
        np.testing.assert_allclose(ct.pf, pf, atol=0.01)  # PF = P / (V I), from the rounded table
    grid = result.loads[0]
    np.testing.assert_allclose([grid.p_w, grid.q_var], [97.0, 133.0], rtol=0, atol=0.3)

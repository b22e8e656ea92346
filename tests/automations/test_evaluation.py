"""The pure evaluation of automations (metering.automations.evaluation) on known sequences."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path

import pytest

from metering.automations.evaluation import (
    ASK_AGAIN_S,
    MAX_ASKS,
    RelayNow,
    Rule,
    RuleState,
    evaluate,
    reading,
    within_hours,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

SURPLUS = Rule(
    quantity="grid_export",
    threshold=1000.0,
    release=200.0,
    duration_s=300.0,
    switch_on=True,
    revert=True,
    manual_window_s=1800.0,
)
OFF = RelayNow(is_on=False)
ON = RelayNow(is_on=True)


def export(watts: float) -> dict:
    return {"totals": {"grid_export": watts, "grid_import": 0.0}}


def run(rule: Rule, steps, state: RuleState | None = None):
    """Feed ``(t, values, relay)`` steps; return the switches asked for as ``(t, on)`` and the
    last state."""
    state = state or RuleState()
    switches = []
    for t, values, relay in steps:
        decision = evaluate(rule, values, t, state, relay)
        state = decision.state
        if decision.switch is not None:
            switches.append((t, decision.switch))
    return switches, state


def test_it_imports_without_django():
    code = "import metering.automations.evaluation, sys; assert 'django' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_it_switches_on_once_the_surplus_lasted_the_duration():
    switches, state = run(SURPLUS, [(t, export(1500), OFF) for t in range(0, 301, 30)])
    assert switches == [(300, True)]
    assert state.active and state.want is True and state.asked_at == 300


def test_it_restarts_the_wait_when_the_surplus_dips():
    steps = [(0, export(1500), OFF), (200, export(900), OFF), (250, export(1500), OFF), (500, export(1500), OFF)]
    steps.append((550, export(1500), OFF))
    switches, _ = run(SURPLUS, steps)
    assert switches == [(550, True)]


def test_it_keeps_the_relay_on_within_the_hysteresis_band_and_switches_off_below_the_release():
    active = RuleState(active=True)
    # 800 W is below the threshold but above the release: still active.
    switches, state = run(SURPLUS, [(t, export(800), ON) for t in range(0, 1000, 100)], active)
    assert switches == [] and state.active
    switches, state = run(SURPLUS, [(1000 + t, export(150), ON) for t in range(0, 301, 60)], state)
    assert switches == [(1300, False)]
    assert not state.active


def test_it_leaves_the_relay_on_when_the_rule_does_not_switch_back():
    rule = Rule(quantity="grid_export", threshold=1000.0, release=200.0, duration_s=60.0, revert=False)
    switches, state = run(rule, [(t, export(0), ON) for t in range(0, 200, 10)], RuleState(active=True))
    assert switches == [] and not state.active and state.want is None


def test_it_sends_no_command_for_a_relay_already_in_the_wanted_state():
    switches, state = run(SURPLUS, [(t, export(1500), ON) for t in range(0, 400, 50)])
    assert switches == [] and state.active and state.want is None


def test_it_waits_for_the_minimum_off_time_then_switches():
    rule = Rule(quantity="grid_export", threshold=1000.0, duration_s=0.0, min_off_s=600.0)
    relay = RelayNow(is_on=False, changed_at=0.0)
    decision = evaluate(rule, export(1500), 100.0, RuleState(), relay)
    assert decision.switch is None and "minimum off time of 10 min" in decision.reason
    switches, _ = run(rule, [(t, export(1500), relay) for t in (100, 300, 599, 600)])
    assert switches == [(600, True)]


def test_it_waits_for_the_minimum_on_time_before_switching_back_off():
    rule = SURPLUS.__class__(**{**SURPLUS.__dict__, "duration_s": 0.0, "min_on_s": 900.0})
    relay = RelayNow(is_on=True, changed_at=1000.0)
    switches, _ = run(rule, [(t, export(0), relay) for t in (1100, 1500, 1899, 1900)], RuleState(active=True))
    assert switches == [(1900, False)]


def test_it_never_switches_a_relay_switched_by_hand_within_the_window():
    relay = RelayNow(is_on=False, changed_at=100.0, manual_at=100.0)
    steps = [(t, export(1500), relay) for t in range(300, 2000, 100)]
    decision = evaluate(SURPLUS, export(1500), 1000.0, RuleState(active=True, want=True), relay)
    assert decision.switch is None and "switched by hand in the last 30 min" in decision.reason
    switches, _ = run(SURPLUS, steps)
    assert switches == [(1900, True)]  # engaged at 600, waited until 100 + 1800 s


def test_it_overrides_a_manual_switch_when_it_says_so():
    rule = Rule(**{**SURPLUS.__dict__, "may_override_manual": True})
    relay = RelayNow(is_on=False, changed_at=100.0, manual_at=100.0)
    switches, _ = run(rule, [(t, export(1500), relay) for t in range(300, 700, 100)])
    assert switches == [(600, True)]


def test_it_does_not_fight_a_manual_switch_after_it_switched():
    """Edge-triggered: once the relay was on, someone switching it off is left alone."""
    switches, state = run(SURPLUS, [(t, export(1500), OFF) for t in range(0, 301, 100)])
    assert switches == [(300, True)]
    switches, state = run(SURPLUS, [(400, export(1500), ON)], state)  # the device confirmed
    switches, _ = run(SURPLUS, [(t, export(1500), OFF) for t in range(500, 10_000, 500)], state)
    assert switches == []


def test_it_asks_again_when_the_device_does_not_confirm_and_gives_up():
    steps = [(t, export(1500), OFF) for t in range(0, 2000, 10)]
    switches, state = run(Rule(quantity="grid_export", threshold=1000.0), steps)
    assert [t for t, _ in switches] == [0 + k * ASK_AGAIN_S for k in range(MAX_ASKS)]
    assert state.active and state.want is None


def test_a_missing_value_restarts_the_wait():
    steps = [(0, export(1500), OFF), (200, {"totals": {}}, OFF), (300, export(1500), OFF), (599, export(1500), OFF)]
    switches, state = run(SURPLUS, steps)
    assert switches == [] and state.since == 300


def test_a_below_rule_engages_under_the_threshold_and_releases_above_the_release():
    rule = Rule(
        quantity="input_rate",
        subject="INP-1/2",
        subject_unit="l",
        above=False,
        threshold=1.0,
        release=5.0,
        duration_s=0.0,
        switch_on=False,
        revert=True,
    )

    def rate(value: float) -> dict:
        return {"inputs": [{"input": "INP-1/2", "state": 0, "rate": value}]}

    first = evaluate(rule, rate(0.5), 0.0, RuleState(), ON)
    assert first.switch is False and first.reason == "INP-1/2 rate 0.5 l/h, below 1 l/h"
    switches, _ = run(rule, [(10, rate(3.0), OFF), (20, rate(6.0), OFF)], first.state)
    assert switches == [(20, True)]


def test_it_reads_the_busiest_grid_phase_the_named_load_and_inputs():
    values = {
        "totals": {"grid_import": 1200.0, "grid_export": 0.0},
        "loads": [
            {"name": "Grid", "kind": "grid", "p": 1200.0, "phases": [{"i": 3.1}, {"i": 27.5}, {"i": None}]},
            {"name": "EV charger", "kind": "appliance", "p": 7200.0, "phases": [{"i": 31.0}]},
        ],
        "inputs": [{"input": "INP-1/3", "state": 1, "rate": 0.0}, {"input": "INP-1/1", "state": 0, "rate": 0.42}],
    }
    assert reading(Rule(quantity="grid_current"), values) == 27.5
    assert reading(Rule(quantity="load_power", subject="EV charger"), values) == 7200.0
    assert reading(Rule(quantity="load_power", subject="Sauna"), values) is None
    assert reading(Rule(quantity="grid_import"), values) == 1200.0
    assert reading(Rule(quantity="input_state", subject="INP-1/3"), values) == 1.0
    assert reading(Rule(quantity="input_rate", subject="INP-1/1"), values) == 0.42
    assert reading(Rule(quantity="grid_export"), {"totals": {"grid_export": float("nan")}}) is None
    assert reading(Rule(quantity="grid_export"), {"totals": {"grid_export": True}}) is None


def test_overload_protection_switches_off_after_the_seconds_over_the_limit():
    rule = Rule(
        quantity="grid_current",
        threshold=25.0,
        release=20.0,
        duration_s=10.0,
        switch_on=False,
        may_override_manual=True,
    )

    def current(amps: float) -> dict:
        return {"loads": [{"name": "Grid", "kind": "grid", "phases": [{"i": 5.0}, {"i": amps}, {"i": 4.0}]}]}

    relay = RelayNow(is_on=True, changed_at=0.0, manual_at=0.0)
    switches, _ = run(rule, [(100 + t, current(30.0), relay) for t in range(0, 11)])
    assert switches == [(110, False)]
    decision = evaluate(rule, current(30.0), 110.0, RuleState(since=100.0), relay)
    assert decision.reason == "grid current on the busiest phase 30 A, above 25 A for 10 s"


# ---------------------------------------------------------------------------- local hours

OFF_PEAK = Rule(
    quantity="clock",
    hours=(clock_time(22, 0), clock_time(7, 0)),
    timezone="Europe/Brussels",
    switch_on=True,
    revert=True,
)


def utc(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_off_peak_hours_follow_the_local_clock_in_winter_and_summer():
    assert within_hours(OFF_PEAK, utc(2026, 1, 15, 21, 0))  # 22:00 CET
    assert not within_hours(OFF_PEAK, utc(2026, 1, 15, 20, 59))
    assert within_hours(OFF_PEAK, utc(2026, 7, 15, 20, 0))  # 22:00 CEST
    assert not within_hours(OFF_PEAK, utc(2026, 7, 15, 5, 0))  # 07:00 CEST


def test_off_peak_lasts_ten_hours_on_the_night_clocks_go_back():
    """25 October 2026: 03:00 CEST becomes 02:00 CET. 22:00 CEST is 20:00 UTC, 07:00 CET 06:00 UTC."""
    steps = [(utc(2026, 10, 24, 19, 0) + k * 60.0, {}, None) for k in range(0, 12 * 60)]
    relay_on = False
    switches = []
    state = RuleState()
    for t, values, _ in steps:
        decision = evaluate(OFF_PEAK, values, t, state, RelayNow(is_on=relay_on))
        state = decision.state
        if decision.switch is not None:
            switches.append((t, decision.switch))
            relay_on = decision.switch  # the device confirms at once
    assert switches == [(utc(2026, 10, 24, 20, 0), True), (utc(2026, 10, 25, 6, 0), False)]


def test_off_peak_lasts_eight_hours_on_the_night_clocks_go_forward():
    """29 March 2026: 02:00 CET becomes 03:00 CEST. 22:00 CET is 21:00 UTC, 07:00 CEST 05:00 UTC."""
    relay_on, state, switches = False, RuleState(), []
    for k in range(0, 12 * 60):
        t = utc(2026, 3, 28, 20, 0) + k * 60.0
        decision = evaluate(OFF_PEAK, {}, t, state, RelayNow(is_on=relay_on))
        state = decision.state
        if decision.switch is not None:
            switches.append((t, decision.switch))
            relay_on = decision.switch
    assert switches == [(utc(2026, 3, 28, 21, 0), True), (utc(2026, 3, 29, 5, 0), False)]


def test_a_window_starting_in_the_skipped_hour_opens_when_the_clock_jumps_past_it():
    rule = Rule(quantity="clock", hours=(clock_time(2, 30), clock_time(6, 0)), timezone="Europe/Brussels")
    assert not within_hours(rule, utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert within_hours(rule, utc(2026, 3, 29, 1, 0))  # 03:00 CEST


def test_surplus_only_counts_within_the_hours():
    rule = Rule(
        quantity="grid_export",
        threshold=1000.0,
        duration_s=0.0,
        revert=True,
        hours=(clock_time(10, 0), clock_time(16, 0)),
        timezone="Europe/Brussels",
    )
    morning = utc(2026, 6, 1, 7, 0)  # 09:00 CEST
    assert evaluate(rule, export(3000), morning, RuleState(), OFF).switch is None
    decision = evaluate(rule, export(3000), morning + 3600, RuleState(), OFF)
    assert decision.switch is True
    ended = evaluate(rule, export(3000), utc(2026, 6, 1, 14, 0), RuleState(active=True), ON)
    assert ended.switch is False and ended.reason == "outside 10:00-16:00"


@pytest.mark.parametrize("value", ["1500", None, [1], {"p": 1}])
def test_it_ignores_values_that_are_not_numbers(value):
    assert reading(SURPLUS, {"totals": {"grid_export": value}}) is None


def test_a_timed_switch_on_that_ended_counts_as_off():
    # Switched on for 30 min: the Output module switches off by itself at off_at, and reports nothing.
    timed = RelayNow(is_on=True, changed_at=0.0, off_at=1800.0)
    switches, _ = run(SURPLUS, [(t, export(1500), timed) for t in range(1000, 1301, 60)])
    assert switches == [], "still on within its timed switch-on"
    switches, _ = run(SURPLUS, [(t, export(1500), timed) for t in range(2000, 2301, 60)])
    assert switches == [(2300, True)]
    # The minimum off time counts from the end of the timed switch-on.
    rested = dataclasses.replace(SURPLUS, duration_s=0.0, min_off_s=600.0)
    switches, _ = run(rested, [(t, export(1500), timed) for t in range(1900, 2500, 100)])
    assert switches == [(2400, True)]

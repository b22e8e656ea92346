"""The simulated house (physics, behaviour, history), its transports and ``manage.py simulate``."""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest
from django.core.management import CommandError, call_command

from metering.ingest.frames import FrameError, decode_binary, frame_from_dict, parse_frames
from tools.simulator.house import House
from tools.simulator.stream import apply_command, stream
from tools.simulator.transport import (
    FatalTransportError,
    HttpTransport,
    OutgoingFrame,
    Reply,
    TransportError,
    WebSocketTransport,
)

BRUSSELS = ZoneInfo("Europe/Brussels")
FS_HZ = 6400


def cts(module: str, *phases: str, first: str = "A") -> list[dict]:
    return [{"ct": f"{module}/{chr(ord(first) + k)}", "phase": p} for k, p in enumerate(phases)]


def installation(topology: str = "3P+N", loads: list[dict] | None = None, **extra) -> dict:
    """A house in Brussels with three CT Hubs, gas, water and a door, a boiler and a pump relay."""
    doc = {
        "location": {"name": "Test house", "timezone": "Europe/Brussels", "topology": topology},
        "gateway": {"model": "genius", "serial": "GW-0001", "connectivity": "ethernet"},
        "powerbox": {"serial": "PB-0001"},
        "ct_hubs": [
            {"serial": f"CTH-000{m}", "inputs": {letter: "AC-CT-100A" for letter in "ABCD"}} for m in (1, 2, 3)
        ],
        "solid_core_cts": [],
        "input_modules": [
            {
                "serial": "INP-0001",
                "inputs": {
                    "1": {"name": "Gas", "mode": "pulse", "unit": "m3", "pulses_per_unit": 100},
                    "2": {"name": "Water", "mode": "pulse", "unit": "l", "pulses_per_unit": 1},
                    "3": {"name": "Front door", "mode": "status"},
                },
            }
        ],
        "output_modules": [
            {"serial": "OUT-0001", "mode": "separate", "outputs": {"1": {"name": "Boiler"}, "2": {"name": "Pump"}}}
        ],
        "loads": loads if loads is not None else full_loads(),
    }
    doc.update(extra)
    return doc


def full_loads() -> list[dict]:
    """Star: three-phase grid, solar, consumption and EV; single-phase heat pump, kitchen, boiler."""
    return [
        {"name": "Grid", "kind": "grid", "cts": cts("CTH-0001", "L1", "L2", "L3")},
        {"name": "Solar", "kind": "solar", "cts": cts("CTH-0002", "L1", "L2", "L3")},
        {"name": "Consumption", "kind": "consumption", "cts": cts("CTH-0003", "L1", "L2", "L3")},
        {"name": "Heat pump", "kind": "appliance", "cts": cts("CTH-0001", "L1", first="D")},
        {"name": "Kitchen", "kind": "circuit", "cts": cts("CTH-0002", "L2", first="D")},
        {"name": "Boiler", "kind": "appliance", "cts": cts("CTH-0003", "L3", first="D")},
    ]


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=BRUSSELS).timestamp()


def power(v: np.ndarray, i: np.ndarray) -> float:
    return float(np.mean(v * i))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


def first_time(house: House, start: float, condition, hours: float = 24.0) -> float:
    """The first time (10-second steps) from ``start`` at which ``condition(powers)`` holds."""
    t = start + np.arange(0.0, hours * 3600, 10.0)
    series = house.power_series(t)
    hits = np.nonzero(condition(series))[0]
    assert hits.size, "the behaviour model never reached the wanted state"
    return float(t[hits[0]])


def thd(i: np.ndarray, f0_hz: float = 50.0) -> float:
    spectrum = np.abs(np.fft.rfft(i))
    bins = np.fft.rfftfreq(i.size, 1 / FS_HZ)

    def peak(f: float) -> float:
        k = int(np.argmin(np.abs(bins - f)))
        return float(spectrum[k - 2 : k + 3].max())

    return float(np.sqrt(sum(peak(h * f0_hz) ** 2 for h in range(2, 26)))) / peak(f0_hz)


@pytest.fixture(scope="module")
def house() -> House:
    return House(installation(), seed=7)


@pytest.fixture(scope="module")
def busy_evening(house) -> float:
    """A January evening with the heat pump and the induction hob running, the sun down."""
    return first_time(
        house, at(2026, 1, 14, 16), lambda p: (p["Heat pump"] > 0) & (p["Kitchen"] > 800) & (p["Solar"] == 0)
    )


# ------------------------------------------------------------------------------- physics


def test_it_balances_energy_per_phase(house, busy_evening):
    v, i, _ = house.frame(busy_evening)
    for k, phase in enumerate(("L1", "L2", "L3")):
        grid = power(v[phase], i[f"CTH-0001/{'ABC'[k]}"])
        solar = power(v[phase], i[f"CTH-0002/{'ABC'[k]}"])
        consumption = power(v[phase], i[f"CTH-0003/{'ABC'[k]}"])
        assert grid == pytest.approx(consumption - solar, rel=0.01)
        # The grid conductor carries the house's current minus the solar's, sample by sample
        # (up to the 0.1 % noise and the sensors' offsets).
        residual = i[f"CTH-0001/{'ABC'[k]}"] - (i[f"CTH-0003/{'ABC'[k]}"] - i[f"CTH-0002/{'ABC'[k]}"])
        assert rms(residual) < 0.01 * rms(i[f"CTH-0001/{'ABC'[k]}"]) + 0.1
    # The sub-meters and the base load add up to the consumption the grid sees.
    truth = house.load_powers_w(busy_evening + 0.5)
    grid_total = sum(power(v[p], i[f"CTH-0001/{c}"]) for p, c in zip(("L1", "L2", "L3"), "ABC", strict=True))
    assert grid_total == pytest.approx(truth["Grid"], rel=0.01)
    assert power(v["L1"], i["CTH-0001/D"]) == pytest.approx(truth["Heat pump"], rel=0.01)
    assert truth["Consumption"] > truth["Heat pump"] + truth["Kitchen"] + 150


def test_it_balances_energy_at_noon_with_the_sun_exporting(house):
    noon = at(2026, 6, 21, 13)
    sunny = House(installation(), seed=7, cloudiness=0.0)
    v, i, _ = sunny.frame(noon)
    grid = sum(power(v[p], i[f"CTH-0001/{c}"]) for p, c in zip(("L1", "L2", "L3"), "ABC", strict=True))
    solar = sum(power(v[p], i[f"CTH-0002/{c}"]) for p, c in zip(("L1", "L2", "L3"), "ABC", strict=True))
    consumption = sum(power(v[p], i[f"CTH-0003/{c}"]) for p, c in zip(("L1", "L2", "L3"), "ABC", strict=True))
    assert solar > 3000
    assert grid < 0, "a sunny June noon exports"
    assert grid == pytest.approx(consumption - solar, abs=0.01 * consumption + 5)


def test_it_makes_no_solar_at_night_and_some_at_noon_in_june(house):
    june = house.power_series(np.array([at(2026, 6, 21, 1), at(2026, 6, 21, 13), at(2026, 6, 21, 23)]))
    assert june["Solar"][0] == 0 and june["Solar"][2] == 0
    assert june["Solar"][1] > 0
    december = house.power_series(np.array([at(2026, 12, 21, 7), at(2026, 12, 21, 17, 30)]))
    assert (december["Solar"] == 0).all(), "it is dark in Brussels before 08:45 and after 16:40 in December"
    v, i, _ = house.frame(at(2026, 6, 21, 2))
    assert abs(sum(power(v[p], i[f"CTH-0002/{c}"]) for p, c in zip(("L1", "L2", "L3"), "ABC", strict=True))) < 2


def test_it_exports_over_a_sunny_june_midday():
    sunny = House(installation(), seed=3, cloudiness=0.0)
    rows = list(
        sunny.bucket_energy(datetime(2026, 6, 21, 11, tzinfo=BRUSSELS), datetime(2026, 6, 21, 15, tzinfo=BRUSSELS))
    )
    grid = np.array([row[1]["Grid"] for row in rows])
    assert grid.mean() < -1000
    cloudy = House(installation(), seed=3, cloudiness=1.0)
    rows = list(
        cloudy.bucket_energy(datetime(2026, 6, 21, 11, tzinfo=BRUSSELS), datetime(2026, 6, 21, 15, tzinfo=BRUSSELS))
    )
    assert np.mean([row[1]["Solar"] for row in rows]) < 0.4 * -grid.mean() + 2000


def test_it_gives_the_heat_pump_a_power_factor_of_0_7(house, busy_evening):
    v, i, _ = house.frame(busy_evening)
    current = i["CTH-0001/D"]
    p = power(v["L1"], current)
    assert 1500 <= p <= 3000
    assert p / (rms(v["L1"]) * rms(current)) == pytest.approx(0.70, abs=0.01)


def test_it_distorts_the_induction_current(house, busy_evening):
    _, i, _ = house.frame(busy_evening)
    assert thd(i["CTH-0002/D"]) >= 0.2


def test_it_keeps_the_voltage_distortion_near_two_percent(house, busy_evening):
    v, _, _ = house.frame(busy_evening)
    assert 0.015 < thd(v["L1"]) < 0.025


@pytest.mark.parametrize(
    ("topology", "keys", "hz", "v_ln", "v_ll"),
    [
        ("1P", ["L1"], 50, 230, None),
        ("3P+N", ["L1", "L2", "L3"], 50, 230, 400),
        ("3P", ["L1", "L2"], 50, None, 230),
        ("2P+N", ["L1", "L2"], 60, 120, 240),
        ("3P+N-208", ["L1", "L2", "L3"], 60, 120, 208),
    ],
)
def test_it_measures_the_voltages_of_every_topology(topology, keys, hz, v_ln, v_ll):
    phases = {"1P": ["L1"], "2P+N": ["L1", "L2"], "3P": ["L1", "L2"]}.get(topology, ["L1", "L2", "L3"])
    loads = [
        {"name": "Grid", "kind": "grid", "cts": cts("CTH-0001", *phases)},
        {"name": "Heat pump", "kind": "appliance", "cts": cts("CTH-0002", phases[-1])},
    ]
    house = House(installation(topology, loads), seed=1)
    assert house.frequency_hz == hz
    v, i, inputs = house.frame(at(2026, 3, 1, 19), fs_hz=FS_HZ)
    assert list(v) == keys
    assert {len(x) for x in [*v.values(), *i.values()]} == {FS_HZ}
    assert set(inputs) == {"INP-0001/1", "INP-0001/2", "INP-0001/3"}
    if v_ln is not None:
        assert rms(v["L1"]) == pytest.approx(v_ln * 1.02, rel=0.03)
    if topology == "3P":
        assert rms(v["L1"]) == pytest.approx(v_ll * 1.02, rel=0.03)
        assert rms(v["L1"] - v["L2"]) == pytest.approx(v_ll * 1.02, rel=0.03)  # v(L1-L2), the delta's L3
    elif v_ll is not None:
        assert rms(v["L1"] - v["L2"]) == pytest.approx(v_ll * 1.02, rel=0.03)
    if topology == "2P+N":
        np.testing.assert_allclose(v["L2"], -v["L1"], atol=2.0)


@pytest.mark.parametrize("topology", ["1P", "2P+N", "3P", "3P+N-208"])
def test_it_meters_the_heat_pump_on_any_topology(topology):
    # Two CTs in split phase make a 240 V load; one CT on L3 in delta a load between L1 and L2.
    hp_phases = {"1P": ["L1"], "2P+N": ["L1", "L2"], "3P": ["L3"], "3P+N-208": ["L2"]}[topology]
    grid_phases = {"1P": ["L1"], "2P+N": ["L1", "L2"], "3P": ["L1", "L2"]}.get(topology, ["L1", "L2", "L3"])
    loads = [
        {"name": "Grid", "kind": "grid", "cts": cts("CTH-0001", *grid_phases)},
        {"name": "Heat pump", "kind": "appliance", "cts": cts("CTH-0002", *hp_phases)},
    ]
    house = House(installation(topology, loads), seed=2)
    t = first_time(house, at(2026, 1, 10, 0), lambda p: p["Heat pump"] > 0)
    v, i, _ = house.frame(t)
    # The reference each CT phase names (SPEC 3): v(Lk-N), or in delta v(L1-L3), v(L2-L3), v(L1-L2).
    ref = {"L1": v["L1"], "L2": v.get("L2"), "L3": v["L1"] - v["L2"] if topology == "3P" else v.get("L3")}
    truth = house.load_powers_w(t + 0.5)
    for name, phases, module in (("Heat pump", hp_phases, "CTH-0002"), ("Grid", grid_phases, "CTH-0001")):
        measured = sum(power(ref[p], i[f"{module}/{'ABC'[k]}"]) for k, p in enumerate(phases))
        assert measured == pytest.approx(truth[name], rel=0.01), name
    assert truth["Heat pump"] > 1400


def test_it_negates_a_reversed_ct(busy_evening):
    straight = House(installation(), seed=7)
    turned = House(installation(), seed=7, reverse={"CTH-0001/D"})
    configured = installation()
    configured["loads"][3]["cts"][0]["reversed"] = True
    marked = House(configured, seed=7)
    v, i, _ = straight.frame(busy_evening)
    _, i_turned, _ = turned.frame(busy_evening)
    _, i_marked, _ = marked.frame(busy_evening)
    p = power(v["L1"], i["CTH-0001/D"])
    assert p > 1000
    assert power(v["L1"], i_turned["CTH-0001/D"]) == pytest.approx(-p, rel=0.01)
    assert power(v["L1"], i_marked["CTH-0001/D"]) == pytest.approx(-p, rel=0.01)
    assert power(v["L1"], i_turned["CTH-0001/A"]) == pytest.approx(power(v["L1"], i["CTH-0001/A"]), rel=0.01)


def test_it_moves_a_miswired_single_phase_load_to_its_physical_phase(busy_evening):
    straight = House(installation(), seed=7)
    miswired = House(installation(), seed=7, miswire={"CTH-0001/D": "L3"})
    v, i, _ = straight.frame(busy_evening)
    v2, i2, _ = miswired.frame(busy_evening)
    p = power(v["L1"], i["CTH-0001/D"])
    assert power(v2["L3"], i2["CTH-0001/D"]) == pytest.approx(p, rel=0.01)
    # 120 degrees off the configured reference: cos(120 - 45.6) / cos(45.6) of the power.
    assert power(v2["L1"], i2["CTH-0001/D"]) == pytest.approx(0.38 * p, abs=0.02 * p)
    # The grid now carries the heat pump on L3 instead of L1.
    shift = power(v2["L3"], i2["CTH-0001/C"]) - power(v["L3"], i["CTH-0001/C"])
    assert shift == pytest.approx(p, rel=0.02)


def test_it_adds_the_boiler_power_when_its_relay_is_on():
    house = House(installation(), seed=7)
    t = first_time(house, at(2026, 4, 2, 14), lambda p: p["Boiler"] == 0, hours=2)
    before = house.load_powers_w(t)
    house.set_relay("OUT-0001/1", True)
    on = house.load_powers_w(t)
    v, i, _ = house.frame(t)
    assert on["Boiler"] == pytest.approx(2000.0)
    assert on["Grid"] - before["Grid"] == pytest.approx(2000.0)
    assert power(v["L3"], i["CTH-0003/D"]) == pytest.approx(2000.0, rel=0.01)
    house.set_relay("OUT-0001/1", True, until=t - 1)
    assert house.load_powers_w(t)["Boiler"] == pytest.approx(before["Boiler"])
    assert not house.relay_is_on("OUT-0001/1", t)


def test_it_switches_an_unmetered_pump_on_l1():
    house = House(installation(), seed=7)
    t = at(2026, 4, 2, 3)
    v, i, _ = house.frame(t)
    house.set_relay("OUT-0001/2", True)
    v2, i2, _ = house.frame(t)
    added = power(v2["L1"], i2["CTH-0001/A"]) - power(v["L1"], i["CTH-0001/A"])
    assert added == pytest.approx(400.0, rel=0.02)
    with pytest.raises(ValueError, match="unknown relay 'OUT-0009/1'"):
        house.set_relay("OUT-0009/1", True)


def test_it_counts_pulses_monotonically():
    house = House(installation(), seed=4)
    start = at(2026, 2, 3, 6)
    readings = [house.frame(start + 60 * k, fs_hz=1000)[2] for k in range(0, 200)]
    gas = [r["INP-0001/1"][1] for r in readings]
    water = [r["INP-0001/2"][1] for r in readings]
    doors = [r["INP-0001/3"] for r in readings]
    assert all(b >= a for a, b in zip(gas, gas[1:], strict=False))
    assert all(b >= a for a, b in zip(water, water[1:], strict=False))
    assert gas[-1] > gas[0] and water[-1] > water[0]
    assert all(r["INP-0001/1"][0] == 0 for r in readings)  # pulse inputs report state 0
    assert {state for state, _ in doors} <= {0, 1}
    assert doors[-1][1] >= doors[0][1]
    # The counter carries on where it was, even when asked about an earlier time.
    assert house.frame(start, fs_hz=1000)[2]["INP-0001/1"][1] == gas[-1]


def test_it_is_deterministic_with_a_seed(busy_evening):
    a = House(installation(), seed=11).frame_doc(busy_evening, seq=1)
    b = House(installation(), seed=11).frame_doc(busy_evening, seq=1)
    c = House(installation(), seed=12).frame_doc(busy_evening, seq=1)
    assert a == b
    assert a["currents"] != c["currents"]


def test_it_keeps_the_phase_continuous_across_frames(house):
    t = at(2026, 3, 1, 23, 59) + 59  # the last second before midnight, then the first after
    v1, _, _ = house.frame(t, duration_s=1.0)
    v2, _, _ = house.frame(t + 1.0, duration_s=1.0)
    joined = np.concatenate([v1["L1"][-3:], v2["L1"][:3]])
    steps = np.diff(joined)
    assert np.abs(steps).max() < 20, "no jump at the frame boundary (about 11 V per sample at 6.4 kHz)"


def test_it_backfills_a_day_in_288_buckets_from_the_behaviour_model(house):
    day = datetime(2026, 4, 15, tzinfo=BRUSSELS)
    rows = list(house.bucket_energy(day, day + timedelta(days=1)))
    assert len(rows) == 288
    starts = [row[0] for row in rows]
    assert starts[0] == day.astimezone(UTC) and all(s.tzinfo is not None for s in starts)
    assert all(b - a == timedelta(minutes=5) for a, b in zip(starts, starts[1:], strict=False))
    kwh = {name: sum(row[1][name] for row in rows) / 12 / 1000 for name in rows[0][1]}
    assert 5 <= kwh["Consumption"] <= 40
    assert kwh["Grid"] == pytest.approx(kwh["Consumption"] - kwh["Solar"], rel=1e-6)
    gas = sum(row[2]["INP-0001/1"] for row in rows)
    water = sum(row[2]["INP-0001/2"] for row in rows)
    assert 20 <= gas <= 3000  # 0.2-30 m3 at 100 pulses per m3
    assert 50 <= water <= 600  # litres
    assert "INP-0001/3" not in rows[0][2]  # a door counts no pulses
    # A bucket's mean agrees with the instantaneous model.
    t = np.arange(day.timestamp() + 5, day.timestamp() + 300, 10.0)
    assert rows[0][1]["Grid"] == pytest.approx(house.power_series(t)["Grid"].mean())


def test_it_backfills_two_weeks_in_seconds(house):
    end = datetime(2026, 11, 20, tzinfo=UTC)
    started = time.perf_counter()
    rows = list(house.bucket_energy(end - timedelta(days=14), end))
    assert len(rows) == 14 * 288
    assert time.perf_counter() - started < 5


def test_it_produces_frames_the_server_accepts():
    for topology in ("1P", "3P+N", "3P", "2P+N", "3P+N-208"):
        phases = {"1P": ["L1"], "2P+N": ["L1", "L2"], "3P": ["L1", "L2"]}.get(topology, ["L1", "L2", "L3"])
        house = House(installation(topology, [{"name": "Grid", "kind": "grid", "cts": cts("CTH-0001", *phases)}]))
        doc = house.frame_doc(at(2026, 5, 5, 8), seq=42)
        frame = frame_from_dict(json.loads(json.dumps(doc)))
        assert frame.seq == 42 and frame.n_samples == FS_HZ
        assert list(frame.voltages) == list(doc["voltages"])
        voltages, currents, inputs = house.frame(at(2026, 5, 5, 8, 1))
        outgoing = OutgoingFrame(house.powerbox_serial, 43, at(2026, 5, 5, 8, 1), FS_HZ, voltages, currents, inputs)
        assert parse_frames(outgoing.to_json())[0].seq == 43
        decoded = decode_binary(outgoing.to_binary())
        np.testing.assert_allclose(decoded.voltages["L1"], voltages["L1"], atol=0.02)


def test_it_refuses_an_installation_it_cannot_simulate():
    split = installation("2P+N", [{"name": "Grid", "kind": "grid", "cts": cts("CTH-0001", "L3")}])
    with pytest.raises(ValueError, match=r"loads\[0\]\.cts\[0\]\.phase: 'L3' is not a phase of 2P\+N"):
        House(split)
    with pytest.raises(ValueError, match="location.topology: unknown topology 'Y'"):
        House(installation("Y"))
    with pytest.raises(ValueError, match="miswire: unknown CT 'CTH-0009/A'"):
        House(installation(), miswire={"CTH-0009/A": "L2"})
    with pytest.raises(ValueError, match="reverse: unknown CT 'nope'"):
        House(installation(), reverse={"nope"})


def test_it_keeps_the_house_model_free_of_django():
    code = "import sys, tools.simulator.house, tools.simulator.transport; print('django' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ----------------------------------------------------------------------------- commands


def test_it_applies_and_acknowledges_a_relay_command():
    house = House(installation(), seed=1)
    ack = apply_command(house, {"type": "command", "id": "c7", "relay": "OUT-0001/1", "on": True, "until": None})
    assert ack == {"type": "ack", "command": "c7", "relay": "OUT-0001/1", "on": True}
    assert house.relay_is_on("OUT-0001/1", time.time())
    refused = apply_command(house, {"type": "command", "id": "c8", "relay": "OUT-0042/1", "on": True})
    assert refused["type"] == "error" and "unknown relay" in refused["error"]
    assert apply_command(house, {"id": "c9", "relay": "OUT-0001/1", "on": "yes"})["error"] == "on must be true or false"


# ---------------------------------------------------------------------------- streaming


class FakeTransport:
    """Records payloads; fails the first ``outage`` sends; hands out ``commands`` with a reply."""

    name = "fake"

    def __init__(self, outage: int = 0, commands: list[dict] | None = None) -> None:
        self.outage = outage
        self.payloads = []
        self.acks = []
        self.commands = list(commands or [])
        self.closed = False

    def encode(self, frame: OutgoingFrame):
        from tools.simulator.transport import Payload

        return Payload(frame.to_json(), frame.seq, t=frame.t)

    def send(self, payload) -> Reply:
        if self.outage:
            self.outage -= 1
            raise TransportError("connection refused")
        self.payloads.append(payload)
        try:
            parse_frames(payload.data)
        except FrameError as exc:
            return Reply(False, payload.seq, error=exc.message, field=exc.field)
        seen = [p.seq for p in self.payloads[:-1] if p.data == payload.data]
        commands, self.commands = self.commands, []
        return Reply(True, payload.seq, "duplicate" if seen else "ok", commands=commands)

    def poll_commands(self):
        return []

    def ack(self, doc):
        self.acks.append(doc)

    def close(self):
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.001)


def run(house, transport, **options):
    clock = FakeClock()
    lines, warnings = [], []
    stats = stream(
        house,
        transport,
        fs_hz=1000,
        start_t=at(2026, 5, 1, 12),
        out=lines.append,
        warn=warnings.append,
        clock=clock,
        sleep=clock.sleep,
        **options,
    )
    return stats, lines, warnings


def test_it_streams_consecutive_frames_and_reports_the_house_power():
    transport = FakeTransport()
    stats, lines, warnings = run(House(installation(), seed=1), transport, frames=20, report_every=10)
    seqs = [p.seq for p in transport.payloads]
    assert seqs == list(range(20))  # a counter, as a Power Box numbers its frames
    docs = [orjson.loads(p.data) for p in transport.payloads]
    assert [d["t"] for d in docs] == [at(2026, 5, 1, 12) + k for k in range(20)]
    assert stats.stored == 20 and not warnings and transport.closed
    assert lines[0].startswith("frame 10: consumption ")
    assert lines[1].endswith("20 sent: 20 stored, 0 duplicates, 0 refused")


def test_it_buffers_frames_during_an_outage_and_sends_them_in_order():
    transport = FakeTransport(outage=3)
    stats, _, warnings = run(House(installation(), seed=1), transport, frames=12)
    seqs = [p.seq for p in transport.payloads]
    assert seqs == list(range(seqs[0], seqs[0] + 12))
    assert "connection refused; retrying in 1 s" in warnings[0]
    assert "retrying in 4 s" in warnings[2]


def test_it_drops_the_oldest_frames_when_the_buffer_is_full():
    transport = FakeTransport(outage=6)  # 1 + 2 + 4 + 8 + 16 + 30 s of outage
    stats, _, warnings = run(House(installation(), seed=1), transport, frames=80, buffer_limit=10)
    seqs = [p.seq for p in transport.payloads]
    assert stats.dropped > 0 and len(seqs) == 80 - stats.dropped
    assert seqs == list(range(stats.dropped, 80)), "the oldest frames were dropped"
    assert any("buffer full" in w for w in warnings)
    assert any(w.startswith(f"dropped {stats.dropped} frames") for w in warnings)


def test_it_injects_faults_and_logs_them():
    transport = FakeTransport()
    stats, _, warnings = run(House(installation(), seed=1), transport, frames=60, faults=True, fault_rate=0.5, seed=3)
    kinds = stats.injected
    assert kinds["duplicate"] and kinds["gap"] and (kinds["bad_json"] + kinds["unequal_lengths"] + kinds["unknown_ct"])
    assert stats.injected_refused == kinds["bad_json"] + kinds["unequal_lengths"]  # the fake knows no installation
    genuine = [p.seq for p in transport.payloads if p.fault in (None, "duplicate")]
    assert len(genuine) == 60 - kinds["gap"] + kinds["duplicate"]
    assert len(set(genuine)) == 60 - kinds["gap"]
    assert sum("fault injected" in w for w in warnings) == sum(kinds.values())
    assert stats.errors == 0


def test_it_applies_commands_that_come_back_with_a_reply():
    command = {"type": "command", "id": "c1", "relay": "OUT-0001/1", "on": True, "until": None}
    transport = FakeTransport(commands=[command])
    house = House(installation(), seed=1)
    stats, lines, _ = run(house, transport, frames=3)
    assert transport.acks == [{"type": "ack", "command": "c1", "relay": "OUT-0001/1", "on": True}]
    assert "command c1: relay OUT-0001/1 (Boiler) on, acknowledged" in lines
    assert stats.commands == 1 and house.relay_is_on("OUT-0001/1", at(2026, 5, 1, 12))


def test_it_replays_the_recent_past_when_fast():
    from tools.simulator.stream import start_time

    now = 1_780_000_000.4
    assert start_time(now, speed=1, frames=None) == 1_780_000_000
    assert start_time(now, speed=20, frames=200) == 1_780_000_000 - 200
    assert start_time(now, speed=20, frames=None) == 1_780_000_000 - 3600
    # Never before what the server stores (no second metered twice), nor in the future.
    assert start_time(now, speed=20, frames=200, resume_t=1_780_000_000 - 50) == 1_780_000_000 - 50
    assert start_time(now, speed=1, frames=None, resume_t=now + 600) == 1_780_000_000


def test_it_slows_down_to_real_time_when_it_catches_up_with_the_clock():
    clock, present = FakeClock(), at(2026, 5, 1, 12)
    sent: list[tuple[float, float]] = []

    class Timed(FakeTransport):
        def send(self, payload):
            sent.append((payload.t, present + clock.now))
            return super().send(payload)

    stream(
        House(installation(), seed=1), Timed(), speed=20, frames=40, start_t=present - 20, fs_hz=1000,
        clock=clock, sleep=clock.sleep, wall=lambda: present + clock.now, out=print, warn=print,
    )  # fmt: skip
    assert [t for t, _ in sent] == [present - 20 + k for k in range(40)]
    assert all(t <= sent_at for t, sent_at in sent), "a frame was sent before its time"
    # The 20 past seconds in one wall second, then one frame a second.
    assert sent[19][1] - present < 1.5 and clock.now == pytest.approx(19, abs=1)


def test_it_reports_frames_the_server_already_had_as_duplicates():
    class AlreadySeen(FakeTransport):
        def send(self, payload):
            super().send(payload)
            return Reply(True, payload.seq, "duplicate")

    stats, lines, warnings = run(House(installation(), seed=1), AlreadySeen(), frames=10, report_every=10)
    assert (stats.sent, stats.stored, stats.duplicates) == (10, 0, 10)
    assert lines == [lines[0].partition(";")[0] + "; 10 sent: 0 stored, 10 duplicates, 0 refused"]
    assert warnings == ["frame seq 0 is a duplicate: the server already had that number and did not store it"]


# --------------------------------------------------------------------------------- HTTP


class IngestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeIngest"

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        server.requests.append((self.path, self.headers.get("Authorization"), body))
        server.received_at.append(time.time())
        if self.path == "/api/v1/ingest/acks":
            self.reply(404, {"error": "not found"})
        elif self.headers.get("Authorization") != f"Bearer {server.token}":
            self.reply(401, {"error": "missing or invalid gateway token", "field": "Authorization"})
        else:
            doc = orjson.loads(body)
            answer = {"accepted": [{"seq": doc["seq"], "status": server.status}]}
            if len(server.requests) == 2:
                answer["commands"] = [{"type": "command", "id": "42", "relay": "OUT-0001/2", "on": True, "until": None}]
            self.reply(200, answer)

    def reply(self, status: int, doc: dict) -> None:
        data = orjson.dumps(doc)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def ingest_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), IngestHandler)
    server.requests, server.received_at = [], []
    server.token, server.status = "good-token", "ok"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_it_posts_frames_over_http_with_the_token(ingest_server, caplog):
    url = f"http://127.0.0.1:{ingest_server.server_address[1]}"
    house = House(installation(), seed=1)
    stats, lines, warnings = run(house, HttpTransport(url, "good-token"), frames=4)
    frames = [r for r in ingest_server.requests if r[0] == "/api/v1/ingest/frames"]
    assert len(frames) == 4 and all(auth == "Bearer good-token" for _, auth, _ in frames)
    assert frame_from_dict(orjson.loads(frames[0][2])).powerbox == "PB-0001"
    acks = [orjson.loads(body) for path, _, body in ingest_server.requests if path == "/api/v1/ingest/acks"]
    assert acks == [{"type": "ack", "command": "42", "relay": "OUT-0001/2", "on": True}]
    assert house.relay_is_on("OUT-0001/2", at(2026, 5, 1, 12)) and stats.accepted == 4
    assert sum("acks yet (HTTP 404)" in r.message for r in caplog.records) == 1


def test_it_stops_when_the_server_refuses_the_token(ingest_server):
    url = f"http://127.0.0.1:{ingest_server.server_address[1]}"
    with pytest.raises(FatalTransportError, match="refused the gateway token"):
        run(House(installation(), seed=1), HttpTransport(url, "bad-token"), frames=2)


def test_it_retries_when_nothing_listens():
    transport = HttpTransport("http://127.0.0.1:9", "t", timeout=1)
    frame = OutgoingFrame("PB-0001", 1, 1.0, 1000.0, {"L1": np.zeros(3)}, {}, {})
    with pytest.raises(TransportError) as raised:
        transport.send(transport.encode(frame))
    assert not isinstance(raised.value, FatalTransportError)


# ---------------------------------------------------------------------------- WebSocket


WS_SERVER = r"""
import asyncio, json, sys
import txaio
txaio.use_asyncio()
import orjson
from autobahn.asyncio.websocket import WebSocketServerFactory, WebSocketServerProtocol
from metering.ingest.frames import decode_binary, frame_from_dict

log = open(sys.argv[1], "a")

def record(kind, value):
    log.write(json.dumps([kind, value]) + "\n")
    log.flush()

class Ingest(WebSocketServerProtocol):
    frames = 0

    def onConnect(self, request):
        record("authorization", request.headers.get("authorization"))

    def onMessage(self, payload, is_binary):
        if not is_binary:
            doc = orjson.loads(payload)
            if doc.get("type") in ("ack", "error"):
                record("ack", doc)
                return
            frame = frame_from_dict(doc)
        else:
            frame = decode_binary(payload)
        record("frame", frame.seq)
        Ingest.frames += 1
        if Ingest.frames == 2:
            command = {"type": "command", "id": "c2", "relay": "OUT-0001/1", "on": False, "until": None}
            self.sendMessage(orjson.dumps(command), isBinary=False)
        self.sendMessage(orjson.dumps({"type": "ack", "seq": frame.seq, "status": "ok"}), isBinary=False)

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
txaio.config.loop = loop
factory = WebSocketServerFactory()
factory.protocol = Ingest
server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0))
print(server.sockets[0].getsockname()[1], flush=True)
loop.run_forever()
"""


@pytest.fixture
def ws_server(tmp_path):
    """An independent WebSocket server (autobahn, in its own process): it acks every frame and
    pushes a relay command before the second ack; it logs what it receives."""
    log = tmp_path / "ws.jsonl"
    log.touch()
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-c", WS_SERVER, str(log)], stdout=subprocess.PIPE, cwd=root, text=True)
    try:
        port = int(server.stdout.readline())

        def received() -> list:
            return [tuple(json.loads(line)) for line in log.read_text().splitlines()]

        yield f"http://127.0.0.1:{port}", received
    finally:
        server.terminate()
        server.wait(5)


@pytest.mark.parametrize("binary", [True, False])
def test_it_streams_over_a_websocket_and_answers_commands(ws_server, binary):
    url, received = ws_server
    house = House(installation(), seed=1)
    house.set_relay("OUT-0001/1", True)
    stats, lines, _ = run(house, WebSocketTransport(url, "good-token", binary=binary), frames=3)
    deadline = time.monotonic() + 5
    while not any(kind == "ack" for kind, _ in received()) and time.monotonic() < deadline:
        time.sleep(0.01)
    log = received()
    assert log[0] == ("authorization", "Bearer good-token")
    frames = [value for kind, value in log if kind == "frame"]
    assert frames == list(range(frames[0], frames[0] + 3)) and stats.accepted == 3
    assert ("ack", {"type": "ack", "command": "c2", "relay": "OUT-0001/1", "on": False}) in log
    assert not house.relay_is_on("OUT-0001/1", at(2026, 5, 1, 12))


# --------------------------------------------------------------------------------- MQTT


def test_it_pairs_late_mqtt_replies_with_what_was_published():
    from tools.simulator.transport import MqttTransport, Payload

    transport = MqttTransport("mqtt://127.0.0.1:1", "token", "GW-0001")
    first, second = Payload(b"{}", 1), Payload(b"{}", 2)
    transport._awaiting.extend([first, second])
    transport._replies.put({"type": "ack", "relay": "OUT-0001/1", "on": True})  # about an ack: skipped
    transport._replies.put({"type": "ack", "accepted": [{"seq": 1, "status": "duplicate"}]})
    transport._replies.put({"type": "error", "error": "unknown CT input 'X/A'", "field": "frames[0].currents.X/A"})
    verdicts = transport.take_replies()
    assert [(p.seq, r.ok, r.status, r.error) for p, r in verdicts] == [
        (1, True, "duplicate", None),
        (2, False, None, "unknown CT input 'X/A'"),
    ]
    assert transport.awaiting_replies() == 0
    transport._awaiting.append(first)
    transport._replies.put({"type": "error", "error": "missing or invalid gateway token", "field": "token"})
    with pytest.raises(FatalTransportError, match="refused the gateway token"):
        transport.take_replies()
    assert orjson.loads(transport.encode_doc({"v": 1})) == {"token": "token", "frame": {"v": 1}}


@pytest.mark.services
def test_it_publishes_frames_over_mqtt_and_takes_commands(mqtt_url):
    """Against a real broker; this test plays the server: it replies to frames (refusing the
    second) and sends a relay command."""
    import uuid

    import paho.mqtt.client as mqtt

    from tools.simulator.transport import MqttTransport

    serial = f"GW-SIM-{uuid.uuid4().hex[:8]}"
    seen: list = []
    server = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(client, userdata, message):
        doc = orjson.loads(message.payload)
        seen.append((message.topic.rsplit("/", 1)[1], doc))
        if message.topic.endswith("/frames"):
            frames = sum(topic == "frames" for topic, _ in seen)
            seq = doc["frame"]["seq"]
            reply = {"type": "ack", "accepted": [{"seq": seq, "status": "ok"}]}
            if frames == 2:
                reply = {"type": "error", "error": "unknown CT input", "field": "frames[0].currents.X/A"}
            client.publish(f"infinity/{serial}/replies", orjson.dumps(reply), qos=0)

    server.on_message = on_message
    subscribed = threading.Event()
    server.on_subscribe = lambda *args, **kwargs: subscribed.set()
    parts = urlsplit(mqtt_url)
    server.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    server.subscribe([(f"infinity/{serial}/frames", 1), (f"infinity/{serial}/acks", 1)])
    server.loop_start()
    try:
        assert subscribed.wait(10)
        house = House(installation(), seed=1)
        transport = MqttTransport(mqtt_url, "the-token", serial)
        command = {"type": "command", "id": "m1", "relay": "OUT-0001/2", "on": True, "until": None}
        transport.send(transport.encode(OutgoingFrame("PB-0001", 1, 1.0, 1000.0, {"L1": np.zeros(4)}, {}, {})))
        server.publish(f"infinity/{serial}/commands", orjson.dumps(command), qos=1)
        deadline = time.monotonic() + 5
        while not transport._commands.qsize() and time.monotonic() < deadline:
            time.sleep(0.02)
        stats, lines, warnings = run(house, transport, frames=2)  # applies the command, acks it, closes
        deadline = time.monotonic() + 5
        while not any(topic == "acks" for topic, _ in seen) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.loop_stop()
        server.disconnect()
    frames = [doc for topic, doc in seen if topic == "frames"]
    assert len(frames) == 3 and all(doc["token"] == "the-token" for doc in frames)
    assert frame_from_dict(frames[1]["frame"]).powerbox == "PB-0001"
    ack = {"type": "ack", "command": "m1", "relay": "OUT-0001/2", "on": True, "token": "the-token"}
    assert ("acks", ack) in seen
    assert house.relay_is_on("OUT-0001/2", at(2026, 5, 1, 12))
    # The first frame of the stream was the second published: the server refused it. The
    # verdict on the second may not be back yet (the fake clock does not wait for it).
    assert (stats.sent, stats.errors, stats.stored + stats.awaiting) == (2, 1, 1)
    assert any("refused: unknown CT input at frames[0].currents.X/A" in w for w in warnings)


# ------------------------------------------------------------------------------ command


def test_it_streams_from_the_command_line(ingest_server, tmp_path, capsys):
    path = tmp_path / "house.json"
    path.write_text(json.dumps(installation()))
    url = f"http://127.0.0.1:{ingest_server.server_address[1]}"
    call_command(
        "simulate", "1", "--installation", str(path), "--url", url, "--token", "good-token",
        "--frames", "3", "--speed", "1000", "--fs", "1000", "--every", "3", "--miswire", "CTH-0001/D=L2",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "over HTTP" in out and "frame 3: consumption" in out
    assert "Done: 3 frames sent: 3 stored, 0 duplicates, 0 refused, 0 dropped" in out
    assert len([r for r in ingest_server.requests if r[0] == "/api/v1/ingest/frames"]) == 3


def test_it_warns_when_the_server_stored_nothing(ingest_server, tmp_path, capsys):
    path = tmp_path / "house.json"
    path.write_text(json.dumps(installation()))
    ingest_server.status = "duplicate"
    url = f"http://127.0.0.1:{ingest_server.server_address[1]}"
    call_command(
        "simulate", "1", "--installation", str(path), "--url", url, "--token=good-token",
        "--frames", "3", "--speed", "1000", "--fs", "1000", "--every", "3",
    )  # fmt: skip
    captured = capsys.readouterr()
    assert "3 sent: 0 stored, 3 duplicates, 0 refused" in captured.out
    assert "Done: 3 frames sent: 0 stored, 3 duplicates, 0 refused, 0 dropped" in captured.out
    assert "Nothing was stored: the server already had all 3 frames (seq 0 to 2)" in captured.err


def test_it_sends_no_frame_from_the_future_when_fast(ingest_server, tmp_path):
    path = tmp_path / "house.json"
    path.write_text(json.dumps(installation()))
    url = f"http://127.0.0.1:{ingest_server.server_address[1]}"
    started = time.time()
    call_command(
        "simulate", "1", "--installation", str(path), "--url", url, "--token=good-token",
        "--frames", "5", "--speed", "1000", "--fs", "1000", "--every", "0",
    )  # fmt: skip
    sent = [
        (orjson.loads(body)["t"], received_at)
        for (where, _, body), received_at in zip(ingest_server.requests, ingest_server.received_at, strict=True)
        if where == "/api/v1/ingest/frames"
    ]
    assert len(sent) == 5 and time.time() - started < 3, "five past seconds replayed fast"
    assert all(t <= received_at for t, received_at in sent), "a frame was sent before its time"


def test_it_explains_that_a_token_starting_with_a_dash_needs_an_equals_sign(ingest_server, tmp_path, capsys):
    path = tmp_path / "house.json"
    path.write_text(json.dumps(installation()))
    ingest_server.token = "-TCSgood_token"
    url = f"http://127.0.0.1:{ingest_server.server_address[1]}"
    with pytest.raises(CommandError, match="a token that starts with '-' must be written --token=TOKEN"):
        call_command("simulate", "1", "--installation", str(path), "--token", "-TCSgood_token")
    call_command(
        "simulate", "1", "--installation", str(path), "--url", url, "--token=-TCSgood_token",
        "--frames", "2", "--speed", "1000", "--fs", "1000",
    )  # fmt: skip
    assert "Done: 2 frames sent: 2 stored" in capsys.readouterr().out


def test_it_gets_the_token_from_bin_run_whatever_its_first_character():
    from tools.management.commands.simulate import Command

    script = (Path(__file__).resolve().parents[2] / "bin" / "run").read_text()
    invocation = re.search(r"exec \.venv/bin/python manage\.py simulate (.+?)\) &", script, re.DOTALL)
    assert invocation, "bin/run starts the simulator"
    env = {"PATH": os.environ["PATH"], "location_id": "7", "gateway_token": "-TCS_x9", "PORT": "8123"}
    printed = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {invocation[1]}"], env=env, capture_output=True, check=True
    ).stdout
    argv = printed.decode().split("\0")[:-1]
    options = Command().create_parser("manage.py", "simulate").parse_args(argv)
    assert (options.location_id, options.token, options.url) == (7, "-TCS_x9", "http://127.0.0.1:8123")


def test_it_needs_a_token_and_valid_options(tmp_path, monkeypatch):
    monkeypatch.delenv("INFINITY_GATEWAY_TOKEN", raising=False)
    path = tmp_path / "house.json"
    path.write_text(json.dumps(installation()))
    with pytest.raises(CommandError, match="no gateway token: pass --token=TOKEN or set INFINITY_GATEWAY_TOKEN"):
        call_command("simulate", "1", "--installation", str(path), "--frames", "1")
    with pytest.raises(CommandError, match="--miswire 'CTH-0001/D': expected CT=PHASE"):
        call_command("simulate", "1", "--installation", str(path), "--miswire", "CTH-0001/D", "--token", "t")
    with pytest.raises(CommandError, match="reverse: unknown CT 'CTH-0009/A'"):
        call_command("simulate", "1", "--installation", str(path), "--reverse", "CTH-0009/A", "--token", "t")


@pytest.mark.django_db
def test_it_backfills_the_history_of_a_location_from_the_database(monkeypatch, capsys):
    from devices.installation import import_installation

    doc = copy.deepcopy(installation())
    doc["location"]["frequency"] = 50
    location = import_installation(doc).location
    written: list = []

    def fake_backfill(target, rows, progress=None):
        assert target == location
        for row in rows:
            written.append(row)
        if progress:
            progress(len(written))
        return len(written)

    monkeypatch.setattr("metering.history.backfill", fake_backfill)
    call_command("simulate", str(location.pk), "--backfill", "1", "--frames", "0")
    assert len(written) == 288
    names = set(written[0][1])
    assert names == {load["name"] for load in doc["loads"]}
    err = capsys.readouterr().err
    assert "288/288 buckets" in err and "History: 288 five-minute buckets written." in err

    with pytest.raises(CommandError, match="no location with id 999"):
        call_command("simulate", "999", "--frames", "0")


class InProcessHttp(HttpTransport):
    """The HTTP transport posting to this process's ingest view through Django's test client."""

    def __init__(self, token: str, client) -> None:
        super().__init__("http://testserver", token)
        self.client = client

    def _post(self, path: str, body: bytes):
        response = self.client.post(
            path, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {self.token}"
        )
        return response.status_code, orjson.loads(response.content or b"null")


@pytest.mark.django_db
def test_it_carries_on_from_the_seq_the_server_stores(client, monkeypatch, capsys):
    from django.core.cache import cache

    from devices.installation import import_installation
    from metering.models import PowerBoxState

    cache.clear()
    doc = copy.deepcopy(installation())
    doc["location"]["frequency"] = 50
    result = import_installation(doc, rotate_token=True)
    monkeypatch.setattr(
        "tools.management.commands.simulate.make_transport", lambda kind, **kw: InProcessHttp(kw["token"], client)
    )
    simulate = [
        "simulate", str(result.location.pk), f"--token={result.gateway_token}",
        "--frames", "3", "--speed", "1000", "--fs", "1000", "--every", "0",
    ]  # fmt: skip
    call_command(*simulate)
    state = PowerBoxState.objects.get(powerbox__location=result.location)
    assert (state.last_seq, state.frames, state.duplicates) == (2, 3, 0)
    consumed_wh = state.registers["load"]["Consumption"][0]

    call_command(*simulate)  # a Power Box carries on its numbering
    state.refresh_from_db()
    assert (state.last_seq, state.frames, state.duplicates) == (5, 6, 0)
    assert state.registers["load"]["Consumption"][0] > consumed_wh
    out = capsys.readouterr().out
    assert "from seq 0," in out and "from seq 3," in out
    assert out.count("Done: 3 frames sent: 3 stored, 0 duplicates") == 2
    cache.clear()

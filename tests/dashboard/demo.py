"""Data for the demo house (devices/demo/demo_installation.json): sample frames and history.

Used by the browser tests, which run a real server with ``manage.py load_demo``. No Django here:
the test process only builds frames and posts them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

BRUSSELS = ZoneInfo("Europe/Brussels")

# CT -> (load, phase) of the demo installation.
DEMO_CTS = {
    "CTH-DEMO-0001/A": ("Grid", "L1"),
    "CTH-DEMO-0001/B": ("Grid", "L2"),
    "CTH-DEMO-0001/C": ("Grid", "L3"),
    "CTH-DEMO-0001/D": ("Solar", "L1"),
    "CTH-DEMO-0002/A": ("EV charger", "L1"),
    "CTH-DEMO-0002/B": ("EV charger", "L2"),
    "CTH-DEMO-0002/C": ("EV charger", "L3"),
    "CTH-DEMO-0002/D": ("Heat pump", "L2"),
    "CTH-DEMO-0003/A": ("Kitchen", "L3"),
}


def phase_shift(phase: str) -> float:
    return {"L1": 0.0, "L2": -2 * math.pi / 3, "L3": 2 * math.pi / 3}[phase]


def demo_frame(
    seq: int,
    t: float,
    cts_w: dict[str, tuple[float, float]],
    inputs: dict | None = None,
    fs_hz: float = 3200.0,
    duration_s: float = 0.2,
    v_rms: float = 231.0,
    wired: dict[str, str] | None = None,
) -> dict:
    """A frame of the demo's Power Box: per CT ref, (P [W], Q [var]) against its phase voltage.

    ``wired`` says on which phase a CT physically sits where that differs from the configuration."""
    n = round(fs_hz * duration_s)
    omega = 2 * math.pi * 50.0
    time = np.arange(n) / fs_hz
    voltages = {
        phase: (v_rms * math.sqrt(2) * np.sin(omega * time + phase_shift(phase))).round(2).tolist()
        for phase in ("L1", "L2", "L3")
    }
    currents = {}
    for ref, (p_w, q_var) in cts_w.items():
        phase = (wired or {}).get(ref, DEMO_CTS[ref][1])
        i_rms = math.hypot(p_w, q_var) / v_rms
        lag = math.atan2(q_var, p_w)
        currents[ref] = (i_rms * math.sqrt(2) * np.sin(omega * time + phase_shift(phase) - lag)).round(4).tolist()
    frame = {
        "v": 1,
        "powerbox": "PB-DEMO-0001",
        "seq": seq,
        "t": t,
        "fs": fs_hz,
        "voltages": voltages,
        "currents": currents,
    }
    if inputs is not None:
        frame["inputs"] = inputs
    return frame


def house_powers(scale: float = 1.0) -> dict[str, tuple[float, float]]:
    """A plausible afternoon: solar 2.4 kW, heat pump, kitchen, no EV; grid = what is left."""
    solar = 2400.0 * scale
    heat_pump, kitchen, ev = 900.0 * scale, 350.0 * scale, 0.0
    per_phase_load = {"L1": 180.0 * scale, "L2": heat_pump + 120.0 * scale, "L3": kitchen + 90.0 * scale}
    grid = {"L1": per_phase_load["L1"] - solar, "L2": per_phase_load["L2"], "L3": per_phase_load["L3"]}
    return {
        "CTH-DEMO-0001/A": (grid["L1"], 120.0),
        "CTH-DEMO-0001/B": (grid["L2"], 310.0),
        "CTH-DEMO-0001/C": (grid["L3"], 60.0),
        "CTH-DEMO-0001/D": (solar, -20.0),
        "CTH-DEMO-0002/A": (ev, 0.0),
        "CTH-DEMO-0002/B": (ev, 0.0),
        "CTH-DEMO-0002/C": (ev, 0.0),
        "CTH-DEMO-0002/D": (heat_pump, 280.0),
        "CTH-DEMO-0003/A": (kitchen, 40.0),
    }


def history_rows(end: datetime, days: float):
    """5-minute rows for :func:`metering.history.backfill`: a day-night profile with solar."""
    step = timedelta(minutes=5)
    start = end - timedelta(days=days)
    start = start - timedelta(minutes=start.minute % 5, seconds=start.second, microseconds=start.microsecond)
    rng = np.random.default_rng(7)
    moment = start
    while moment + step <= end:
        here = moment.astimezone(BRUSSELS)
        local_hour = here.hour + here.minute / 60
        solar = max(math.sin(math.pi * (local_hour - 8) / 9), 0.0) * 3200 * (0.8 + 0.2 * rng.random())
        heat_pump = 1400.0 if (6 <= local_hour < 8 or 17 <= local_hour < 21) else 300.0
        kitchen = 1800.0 if (12 <= local_hour < 13 or 18 <= local_hour < 19.5) else 60.0
        ev = 7200.0 if 22 <= local_hour < 24 else 0.0
        base = 230.0 + 40 * rng.random()
        consumption = base + heat_pump + kitchen + ev
        power_w = {
            "Grid": consumption - solar,
            "Solar": solar,
            "EV charger": ev,
            "Heat pump": heat_pump,
            "Kitchen": kitchen,
        }
        pulses = {
            "INP-DEMO-0001/1": int(rng.integers(0, 8) if heat_pump > 1000 else 0),
            "INP-DEMO-0001/2": int(rng.integers(0, 30)),
        }
        yield moment, power_w, pulses
        moment += step

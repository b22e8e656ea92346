"""A small star house and synthetic sample frames for it: what benchmarks and tests build on.

Benchmarks (tools/bench_push.py, tools/bench_history.py) load these into a fresh database;
tests use them through tests/factories.py.
"""

from __future__ import annotations

import math

import numpy as np

from devices.models import (
    CtInput,
    CtModule,
    DigitalInput,
    Gateway,
    InputModule,
    Load,
    LoadCt,
    Location,
    Membership,
    OutputModule,
    PowerBox,
    Relay,
)

FS_HZ = 6400.0


def make_location(
    name: str = "Test house", serial_prefix: str = "T", topology: str = "3P+N", members: dict | None = None
):
    """A star house: Grid on CTs A–C, Heat pump on D (L1), gas meter and door contact, two relays.

    Returns (location, gateway token).
    """
    location = Location.objects.create(
        name=name, address="Street 1", timezone="Europe/Brussels", topology=topology, frequency_hz=50
    )
    gateway = Gateway.objects.create(
        location=location, model="genius", serial=f"GW-{serial_prefix}", connectivity="ethernet"
    )
    token = gateway.rotate_token()
    powerbox = PowerBox.objects.create(location=location, serial=f"PB-{serial_prefix}")
    hub = CtModule.objects.create(powerbox=powerbox, serial=f"CTH-{serial_prefix}", position=1)
    inputs = {letter: CtInput.objects.create(module=hub, letter=letter, ct_type="AC-CT-100A") for letter in "ABCD"}
    grid = Load.objects.create(location=location, name="Grid", kind="grid", position=0)
    phases = ("L1", "L2", "L3") if topology != "1P" else ("L1",)
    for index, (letter, phase) in enumerate(zip("ABC", phases)):
        LoadCt.objects.create(load=grid, ct_input=inputs[letter], phase=phase, position=index)
    heat_pump = Load.objects.create(location=location, name="Heat pump", kind="appliance", position=1)
    LoadCt.objects.create(load=heat_pump, ct_input=inputs["D"], phase="L1")
    module = InputModule.objects.create(location=location, serial=f"INP-{serial_prefix}")
    DigitalInput.objects.create(module=module, number="1", name="Gas", mode="pulse", unit="m3", pulses_per_unit=100)
    DigitalInput.objects.create(module=module, number="2", name="Front door", mode="status")
    outputs = OutputModule.objects.create(location=location, serial=f"OUT-{serial_prefix}")
    Relay.objects.create(module=outputs, number="1", name="Boiler")
    Relay.objects.create(module=outputs, number="2", name="Pump")
    for user, role in (members or {}).items():
        Membership.objects.create(location=location, user=user, role=role)
    return location, token


# The tests' frames start on 2025-11-25 (frames refuse times before 2020 or in the future).
T0 = 1_764_090_000.0


def phase_shift(phase: str) -> float:
    return {"L1": 0.0, "L2": -2 * math.pi / 3, "L3": 2 * math.pi / 3}[phase]


def star_frame(
    serial_prefix: str = "T",
    seq: int = 1,
    t: float = T0,
    loads_w: dict[str, tuple[float, float]] | None = None,
    inputs: dict | None = None,
    v_rms: float = 230.0,
    f_hz: float = 50.0,
    n: int = 6400,
    phases: dict[str, str] | None = None,
) -> dict:
    """A JSON-able frame for :func:`make_location`'s house: per CT letter, (P [W], Q [var])."""
    loads_w = loads_w or {"A": (1000.0, 200.0), "B": (500.0, 0.0), "C": (250.0, -50.0), "D": (800.0, 400.0)}
    phases = phases or {"A": "L1", "B": "L2", "C": "L3", "D": "L1"}  # physical phase per CT letter
    time = t + np.arange(n) / FS_HZ
    omega = 2 * math.pi * f_hz
    voltages = {
        phase: (v_rms * math.sqrt(2) * np.sin(omega * (time - t) + phase_shift(phase))).round(3).tolist()
        for phase in ("L1", "L2", "L3")
    }
    currents = {}
    for letter, (p_w, q_var) in loads_w.items():
        s_va = math.hypot(p_w, q_var)
        i_rms = s_va / v_rms
        lag = math.atan2(q_var, p_w)
        currents[f"CTH-{serial_prefix}/{letter}"] = (
            (i_rms * math.sqrt(2) * np.sin(omega * (time - t) + phase_shift(phases[letter]) - lag)).round(5).tolist()
        )
    frame = {
        "v": 1,
        "powerbox": f"PB-{serial_prefix}",
        "seq": seq,
        "t": t,
        "fs": FS_HZ,
        "voltages": voltages,
        "currents": currents,
    }
    if inputs is not None:
        frame["inputs"] = inputs
    return frame

"""Small installations and synthetic sample frames for tests (the house itself: tools/fixtures.py)."""

from __future__ import annotations

from tools.fixtures import FS_HZ, T0, make_location, phase_shift, star_frame

__all__ = ["FS_HZ", "T0", "heat_pump_frames", "make_location", "phase_shift", "star_frame"]


def heat_pump_frames(heat_pump_phase: str, frames: int = 24, t0: float = T0):
    """Frames of the test house whose heat pump (CT D, configured on L1) really runs on
    ``heat_pump_phase``, switching 2 kW on and off every three frames (the load changes the
    installation check needs)."""
    for k in range(frames):
        pump_w = 2000.0 if (k // 3) % 2 else 0.0
        base = {"A": (400.0, 50.0), "B": (300.0, 20.0), "C": (350.0, 30.0)}
        line = {"L1": "A", "L2": "B", "L3": "C"}[heat_pump_phase]
        p, q = base[line]
        base[line] = (p + pump_w, q + pump_w * 0.4)
        loads = {**base, "D": (pump_w, pump_w * 0.4) if pump_w else (0.0, 0.0)}
        phases = {"A": "L1", "B": "L2", "C": "L3", "D": heat_pump_phase}
        yield star_frame(seq=k + 1, t=t0 + k, loads_w=loads, phases=phases, n=1280)

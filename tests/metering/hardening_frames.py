"""Frames for the ingest hardening tests: the test house's frame at any sample rate, posted
over HTTP, and a snapshot of everything ingest may write."""

from __future__ import annotations

import math
import time

import numpy as np
import orjson
from django.core.cache import cache

from devices.models import Event
from metering.models import InputCount, LoadEnergy, LocationEnergy, PowerBoxState
from tests.factories import phase_shift

URL = "/api/v1/ingest/frames"
LOADS_W = {"A": (1000.0, 200.0), "B": (500.0, 0.0), "C": (250.0, -50.0), "D": (800.0, 400.0)}
PHASES = {"A": "L1", "B": "L2", "C": "L3", "D": "L1"}


def now() -> float:
    return time.time()


def frame(
    seq: int,
    t: float,
    *,
    fs_hz: float = 6400.0,
    duration_s: float = 0.2,
    n: int | None = None,
    inputs: dict | None = None,
) -> dict:
    """A JSON-able frame of :func:`tests.factories.make_location`'s house (1,750 W on the grid)."""
    n = round(fs_hz * duration_s) if n is None else n
    times = np.arange(n) / fs_hz
    omega = 2 * math.pi * 50.0
    voltages = {
        p: (230.0 * math.sqrt(2) * np.sin(omega * times + phase_shift(p))).round(3).tolist() for p in ("L1", "L2", "L3")
    }
    currents = {}
    for letter, (p_w, q_var) in LOADS_W.items():
        i_peak = math.hypot(p_w, q_var) / 230.0 * math.sqrt(2)
        lag = math.atan2(q_var, p_w)
        currents[f"CTH-T/{letter}"] = (
            (i_peak * np.sin(omega * times + phase_shift(PHASES[letter]) - lag)).round(5).tolist()
        )
    doc = {"v": 1, "powerbox": "PB-T", "seq": seq, "t": t, "fs": fs_hz, "voltages": voltages, "currents": currents}
    if inputs is not None:
        doc["inputs"] = inputs
    return doc


def gas(pulses: int) -> dict:
    return {"INP-T/1": {"state": 0, "pulses": pulses}}


def post(client, body, token: str):
    return client.post(
        URL, data=orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def statuses(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [receipt["status"] for receipt in response.json()["accepted"]]


def stored_state(location_id: int) -> dict:
    """Every row ingest may write, except the invalid-frame events it records on purpose."""
    return {
        "states": list(PowerBoxState.objects.order_by("pk").values()),
        "events": list(Event.objects.exclude(kind=Event.INVALID_FRAME).order_by("pk").values()),
        "location_energy": list(LocationEnergy.objects.order_by("pk").values()),
        "load_energy": list(LoadEnergy.objects.order_by("pk").values()),
        "input_counts": list(InputCount.objects.order_by("pk").values()),
        "live": cache.get(f"live:{location_id}"),
    }

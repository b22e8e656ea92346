"""The latest live values of each location (SPEC 5.3), shared by every server process.

They are kept in Django's cache: Redis when ``REDIS_URL`` is set, else this process's memory
(the embedded setup runs ingest and pages in one process). After storing, the
``live_values_updated`` signal lets the dashboard push its cards.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.dispatch import Signal

from metering import validation
from metering.core import FrameResult
from metering.ingest.frames import SampleFrame
from metering.installed import Installed

log = logging.getLogger(__name__)

live_values_updated = Signal()  # sender=location id, values=dict

# Kept long enough for a page to show "no data for N s" rather than nothing.
KEEP_S = 7 * 24 * 3600


def key(location_id: int) -> str:
    return f"live:{location_id}"


def latest(location_id: int) -> dict | None:
    return cache.get(key(location_id))


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def build(
    setup: Installed, frame: SampleFrame, result: FrameResult, input_states: dict, findings: list | None = None
) -> dict:
    findings = findings or []
    loads = []
    for load in result.loads:
        loads.append(
            {
                "name": load.name,
                "kind": load.kind,
                "p": _r(load.p_w, 1),
                "q": _r(load.q_var, 1),
                "phases": [
                    {
                        "phase": ct.phase,
                        "ct": ct.ct,
                        "p": _r(ct.p_w, 1),
                        "q": _r(ct.q_var, 1),
                        "pf": _r(ct.pf, 3),
                        "i": _r(ct.i_a, 3),
                        "v_ln": _r(ct.v_ln_v, 1),
                        "v_ll": _r(ct.v_ll_v, 1),
                    }
                    for ct in load.phases
                ],
            }
        )
    inputs = []
    for ref, spec in setup.inputs.items():
        reading = input_states.get(ref)
        if reading is None:
            continue
        value = None
        if spec.mode == "pulse" and spec.pulses_per_unit:
            value = round(reading["pulses"] / spec.pulses_per_unit, 3)
        inputs.append(
            {
                "input": ref,
                "name": spec.name,
                "mode": spec.mode,
                "state": reading["state"],
                "since": reading.get("since"),
                "pulses": reading["pulses"],
                "value": value,
                "unit": spec.unit,
                "rate": round(reading.get("rate", 0.0), 4),
            }
        )
    totals = result.totals
    return {
        "location": setup.location_id,
        "t": frame.end_t,
        "topology": setup.topology,
        "frequency": _r(result.frequency_hz, 3),
        "loads": loads,
        "totals": {
            "consumption": _r(totals.consumption_w, 1),
            "solar": _r(totals.solar_w, 1),
            "grid": _r(totals.grid_w, 1),
            "grid_import": _r(totals.grid_import_w, 1),
            "grid_export": _r(totals.grid_export_w, 1),
            "battery": _r(totals.battery_w, 1),
        },
        "inputs": inputs,
        "checks": validation.checks(findings),
        "validation": [f.to_dict() for f in findings],
    }


def publish(setup: Installed, frame: SampleFrame, result: FrameResult, input_states: dict) -> dict:
    values = build(setup, frame, result, input_states, validation.observe(setup, frame))
    cache.set(key(setup.location_id), values, timeout=KEEP_S)
    # The frame is stored already: a failing receiver (e.g. a page render) must not fail ingest.
    for receiver, outcome in live_values_updated.send_robust(sender=setup.location_id, values=values):
        if isinstance(outcome, Exception):
            log.error("live values receiver %r failed", receiver, exc_info=outcome)
    return values

"""Installation files for the devices tests: a valid base document every test mutates."""

from __future__ import annotations

import copy

import pytest

BASE_DOC: dict = {
    "location": {
        "name": "Demo house",
        "address": "Evolis 104, Harelbeke",
        "timezone": "Europe/Brussels",
        "topology": "3P+N",
        "frequency": 50,
    },
    "gateway": {"model": "genius", "serial": "GW-0001", "connectivity": "ethernet"},
    "powerbox": {"serial": "PB-0001"},
    "ct_hubs": [
        {
            "serial": "CTH-0001",
            "inputs": {"A": "AC-CT-100A", "B": "AC-CT-100A", "C": "AC-CT-100A", "D": "AC-CT-50A"},
        }
    ],
    "solid_core_cts": [],
    "input_modules": [
        {
            "serial": "INP-0001",
            "inputs": {"1": {"name": "Gas", "mode": "pulse", "unit": "m3", "pulses_per_unit": 100}},
        }
    ],
    "output_modules": [
        {"serial": "OUT-0001", "mode": "separate", "outputs": {"1": {"name": "Boiler"}, "2": {"name": "Pump"}}}
    ],
    "loads": [
        {
            "name": "Grid",
            "kind": "grid",
            "cts": [
                {"ct": "CTH-0001/A", "phase": "L1"},
                {"ct": "CTH-0001/B", "phase": "L2"},
                {"ct": "CTH-0001/C", "phase": "L3"},
            ],
        },
        {"name": "Heat pump", "kind": "appliance", "cts": [{"ct": "CTH-0001/D", "phase": "L1"}]},
    ],
}


def base_doc() -> dict:
    """A fresh copy of the SPEC 5.1 example: a valid star (3P+N) installation."""
    return copy.deepcopy(BASE_DOC)


@pytest.fixture
def doc() -> dict:
    return base_doc()

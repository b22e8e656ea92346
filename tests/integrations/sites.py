"""A location as the integrations see it, and live values for it, without a database."""

from __future__ import annotations

from metering.integrations.site import Channel, Site, SiteInput, SiteLoad, SiteRelay

UUID = "6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b"


def demo_site(topology: str = "3P+N") -> Site:
    return Site(
        location_id=7,
        uuid=UUID,
        name="Demo house",
        timezone="Europe/Brussels",
        topology=topology,
        gateway_serial="5010000001",
        loads=(SiteLoad(1, "Grid", "grid"), SiteLoad(2, "Solar", "solar"), SiteLoad(3, "Heat pump", "appliance")),
        channels=(
            Channel(0, "Grid", "grid", "CTH-1/A", "AC-CT-100A", "L1"),
            Channel(1, "Grid", "grid", "CTH-1/B", "AC-CT-100A", "L2"),
            Channel(2, "Grid", "grid", "CTH-1/C", "AC-CT-100A", "L3"),
            Channel(3, "Solar", "solar", "CTH-1/D", "AC-CT-50A", "L1", reversed=True),
            Channel(4, "Heat pump", "appliance", "CTH-2/A", "AC-CT-50A", "L2"),
        ),
        inputs=(
            SiteInput(11, "INP-1/1", "Gas", "pulse", "m3"),
            SiteInput(12, "INP-1/2", "Water", "pulse", "l"),
            SiteInput(13, "INP-1/3", "Front door", "status"),
        ),
        relays=(
            SiteRelay(21, "OUT-1/1", "Boiler", is_on=True, changed_at_ms=1_764_090_000_000),
            SiteRelay(22, "OUT-1/2", "Pump"),
        ),
    )


def phase(ct: str, phase: str, p: float, q: float, i: float, v_ln: float | None, v_ll: float) -> dict:
    return {"phase": phase, "ct": ct, "p": p, "q": q, "pf": 0.9, "i": i, "v_ln": v_ln, "v_ll": v_ll}


def demo_values() -> dict:
    return {
        "location": 7,
        "t": 1_764_090_001.25,
        "topology": "3P+N",
        "frequency": 50.012,
        "loads": [
            {
                "name": "Grid",
                "kind": "grid",
                "p": 1750.0,
                "q": 150.0,
                "phases": [
                    phase("CTH-1/A", "L1", 1000.0, 200.0, 4.435, 230.1, 398.6),
                    phase("CTH-1/B", "L2", 500.0, 0.0, 2.174, 229.8, 398.2),
                    phase("CTH-1/C", "L3", 250.0, -50.0, 1.109, 230.4, 398.9),
                ],
            },
            {
                "name": "Solar",
                "kind": "solar",
                "p": 800.0,
                "q": 10.0,
                "phases": [phase("CTH-1/D", "L1", 800.0, 10.0, 3.478, 230.1, 398.6)],
            },
            # The heat pump's CT module is missing from the newest frame: no phases.
            {"name": "Heat pump", "kind": "appliance", "p": 0.0, "q": 0.0, "phases": []},
        ],
        "totals": {
            "consumption": 2550.0,
            "solar": 800.0,
            "grid": 1750.0,
            "grid_import": 1750.0,
            "grid_export": 0.0,
            "battery": None,
        },
        "inputs": [
            {
                "input": "INP-1/1",
                "name": "Gas",
                "mode": "pulse",
                "state": 0,
                "pulses": 123456,
                "value": 1234.56,
                "unit": "m3",
                "rate": 0.0,
            },
            {
                "input": "INP-1/2",
                "name": "Water",
                "mode": "pulse",
                "state": 0,
                "pulses": 5000,
                "value": 5000.0,
                "unit": "l",
                "rate": 0.0,
            },
            {
                "input": "INP-1/3",
                "name": "Front door",
                "mode": "status",
                "state": 1,
                "pulses": 0,
                "value": None,
                "unit": "",
                "rate": 0.0,
            },
        ],
        "checks": [],
    }


REGISTERS = {
    "ct": {"CTH-1/A": [1000.0, 10.0], "CTH-1/D": [2500.0, 0.0]},
    "load": {"Grid": [3000.5, 120.25], "Solar": [2500.0, 0.0], "Heat pump": [42.0, 0.0]},
}

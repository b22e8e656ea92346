"""The Smappee local-broker payloads, read the way pysmappee 0.2.29 reads them."""

from __future__ import annotations

import orjson
import pytest

from metering.integrations import smappee
from tests.integrations.sites import REGISTERS, UUID, demo_site, demo_values


def pysmappee_measurements(channel_config: dict) -> dict[str, list[int]]:
    """pysmappee's SmappeeLocalMqtt grouping of channelConfigV2 measurements (mqtt.py), restated."""
    grouped: dict[str, list[int]] = {}
    for m in channel_config["dataProcessingSpecification"]["measurements"]:
        if m["flow"] == "CONSUMPTION" and m["connectionType"] == "SUBMETER":
            grouped.setdefault(m["name"], []).append(m["publishIndex"])
        elif m["flow"] == "CONSUMPTION" and m["connectionType"] == "GRID":
            grouped.setdefault("Grid", []).append(m["publishIndex"])
        elif m["flow"] == "PRODUCTION" and m["connectionType"] == "GRID":
            grouped.setdefault("Solar", []).append(m["publishIndex"])
    return grouped


def test_it_publishes_the_config_pysmappee_reads():
    site = demo_site()
    assert smappee.config_topic(site) == f"servicelocation/{UUID}/config"
    assert smappee.config(site) == {
        "serialNumber": "5010000001",
        "serviceLocationUuid": UUID,
        "serviceLocationId": 7,
        "firmwareVersion": "infinity-dashboard",
        "aggregationPeriodSeconds": 300,
        "timeZone": "Europe/Brussels",
    }


@pytest.mark.parametrize(
    ("topology", "phase_type"),
    [("1P", "ONE"), ("2P+N", "TWO"), ("3P+N", "THREE_STAR"), ("3P+N-208", "THREE_STAR"), ("3P", "THREE_DELTA")],
)
def test_it_names_the_phase_type_of_each_topology(topology, phase_type):
    spec = smappee.channel_config(demo_site(topology))["dataProcessingSpecification"]
    assert spec["phaseType"] == phase_type


def test_it_describes_every_ct_and_measurement():
    spec = smappee.channel_config(demo_site())["dataProcessingSpecification"]
    assert spec["dataSources"][3] == {
        "serialNumber": "CTH-1",
        "inputIndex": 3,
        "type": "CT",
        "ctType": "AC-CT-50A",
        "reversed": True,
        "phase": "PHASEA",
        "publishIndex": 3,
    }
    flows = {(m["name"], m["flow"], m["connectionType"]) for m in spec["measurements"]}
    assert flows == {
        ("Grid", "CONSUMPTION", "GRID"),
        ("Solar", "PRODUCTION", "GRID"),
        ("Heat pump", "CONSUMPTION", "SUBMETER"),
    }
    assert pysmappee_measurements({"dataProcessingSpecification": spec}) == {
        "Grid": [0, 1, 2],
        "Solar": [3],
        "Heat pump": [4],
    }


def test_realtime_carries_totals_voltages_and_every_publish_index():
    message = smappee.realtime(demo_site(), demo_values(), REGISTERS)
    assert message["totalPower"] == 2550.0
    assert message["totalReactivePower"] == 160.0  # grid 150 + solar 10
    assert message["utcTimeStamp"] == 1_764_090_001_250
    assert message["voltages"] == [
        {"voltage": 230.1, "phaseId": 0},
        {"voltage": 229.8, "phaseId": 1},
        {"voltage": 230.4, "phaseId": 2},
    ]
    channels = {c["publishIndex"]: c for c in message["channelPowers"]}
    assert sorted(channels) == [0, 1, 2, 3, 4]  # pysmappee indexes every one without a default
    assert channels[0] == {
        "publishIndex": 0,
        "power": 1000.0,
        "reactivePower": 200.0,
        "current": 44,  # deciamps
        "phaseId": 0,
        "importEnergy": 3_600_000,
        "exportEnergy": 36_000,
    }
    assert channels[4]["power"] == 0.0 and channels[4]["current"] == 0  # CT missing from the frame
    assert message["totalImportEnergy"] == round(3000.5 * 3600)
    assert message["totalExportEnergy"] == round(120.25 * 3600)


def test_per_measurement_power_sums_to_the_load_power():
    values = demo_values()
    message = smappee.realtime(demo_site(), values, REGISTERS)
    grouped = pysmappee_measurements(smappee.channel_config(demo_site()))
    power = {c["publishIndex"]: c["power"] for c in message["channelPowers"]}
    for load in values["loads"]:
        name = "Solar" if load["kind"] == "solar" else load["name"]
        assert sum(power[i] for i in grouped[name]) == pytest.approx(load["p"], abs=0.05 * len(grouped[name]) + 1e-9)


def test_delta_publishes_the_line_to_line_voltages():
    values = demo_values()
    for load in values["loads"]:
        for phase in load["phases"]:
            phase["v_ln"] = None
    message = smappee.realtime(demo_site("3P"), values, REGISTERS)
    assert [v["voltage"] for v in message["voltages"]] == [398.6, 398.2, 398.9]


def test_relays_are_plugs_with_retained_states():
    site = demo_site()
    retained = smappee.retained_messages(site)
    assert orjson.loads(retained[f"servicelocation/{UUID}/plug/21/state"]) == {
        "value": "ON",
        "since": 1_764_090_000_000,
    }
    assert orjson.loads(retained[f"servicelocation/{UUID}/plug/22/state"]) == {"value": "OFF"}
    assert orjson.loads(retained[f"servicelocation/{UUID}/homeControlConfig"])["smartplugActuators"] == [
        {"nodeId": 21, "name": "Boiler"},
        {"nodeId": 22, "name": "Pump"},
    ]
    assert set(retained) >= {f"servicelocation/{UUID}/config", f"servicelocation/{UUID}/channelConfigV2"}


def test_aggregated_holds_the_counters_at_the_period_end():
    message = smappee.aggregated(demo_site(), 1_764_090_300.0, REGISTERS)
    assert message["utcTimeStamp"] == 1_764_090_300_000
    assert message["intervalSeconds"] == 300
    assert message["channels"][3] == {"publishIndex": 3, "importEnergy": 9_000_000, "exportEnergy": 0}


def test_it_reads_setstate_commands():
    topic = f"servicelocation/{UUID}/plug/21/setstate"
    assert smappee.parse_setstate(topic, b'{"value": "ON"}') == (UUID, 21, True)
    assert smappee.parse_setstate(topic, b"{'value': 'OFF'}") == (UUID, 21, False)
    assert smappee.parse_setstate(topic, b'{"value": "ON_ON"}') == (UUID, 21, True)


@pytest.mark.parametrize(
    ("topic", "payload", "message"),
    [
        (f"servicelocation/{UUID}/plug/x/setstate", b'{"value": "ON"}', "whole number"),
        (f"servicelocation/{UUID}/plug/1/state", b'{"value": "ON"}', "not a setstate topic"),
        (f"servicelocation/{UUID}/plug/1/setstate", b'{"value": "DIM"}', "must be"),
        (f"servicelocation/{UUID}/plug/1/setstate", b"[1]", "must be"),
        (f"servicelocation/{UUID}/plug/1/setstate", b"not json", "not JSON"),
        (f"servicelocation/{UUID}/plug/1/setstate", b'{"value": "ON", "x": "' + b"a" * 300 + b'"}', "too large"),
    ],
)
def test_it_refuses_what_is_not_a_setstate(topic, payload, message):
    with pytest.raises(smappee.CommandRefused, match=message):
        smappee.parse_setstate(topic, payload)

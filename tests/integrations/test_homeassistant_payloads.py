"""Home Assistant discovery payloads against Home Assistant's documented MQTT discovery schema.

The schema below restates the documentation (home-assistant.io: "MQTT" discovery topic
format; "MQTT Sensor", "MQTT Binary sensor" and "MQTT Switch" configuration variables; the
sensor device classes and their units). Only full option names are allowed: a misspelt or
abbreviated key fails here instead of being ignored by Home Assistant.
"""

from __future__ import annotations

import re

import orjson
import pytest

from metering.integrations import homeassistant as ha
from tests.integrations.sites import REGISTERS, UUID, demo_site, demo_values

# <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, ids of [a-zA-Z0-9_-].
DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(?P<component>sensor|binary_sensor|switch)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"
)
COMMON = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "device_class",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "default_entity_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "qos",
    "unique_id",
    "value_template",
}
ALLOWED = {
    "sensor": COMMON
    | {
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "options",
        "suggested_display_precision",
        "state_class",
        "state_topic",
        "unit_of_measurement",
    },
    "binary_sensor": COMMON | {"expire_after", "force_update", "off_delay", "payload_off", "payload_on", "state_topic"},
    "switch": COMMON
    | {
        "command_template",
        "command_topic",
        "optimistic",
        "payload_off",
        "payload_on",
        "retain",
        "state_off",
        "state_on",
        "state_topic",
    },
}
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "switch": {"command_topic"}}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
# Sensor device classes used here and the units Home Assistant accepts for them.
UNITS = {
    "power": {"mW", "W", "kW", "MW", "GW", "TW"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "gas": {"m³", "ft³", "CCF"},
    "water": {"L", "gal", "m³", "ft³", "CCF"},
}


def check_discovery(topic: str, config: dict) -> str:
    """Assert one discovery message follows the documented schema; returns its component."""
    match = DISCOVERY_TOPIC.match(topic)
    assert match, f"{topic} is not a discovery topic"
    component = match["component"]
    assert set(config) <= ALLOWED[component], f"{topic}: unknown keys {set(config) - ALLOWED[component]}"
    assert REQUIRED[component] <= set(config), f"{topic}: missing {REQUIRED[component] - set(config)}"
    assert isinstance(config["unique_id"], str) and config["unique_id"]
    assert isinstance(config["name"], str) and config["name"]
    for key in ("state_topic", "command_topic", "availability_topic"):
        if key in config:
            assert isinstance(config[key], str) and config[key] and not set("+#") & set(config[key]), (topic, key)
    assert not ({"availability", "availability_topic"} <= set(config)), "availability and availability_topic exclude"
    device = config["device"]
    assert set(device) <= DEVICE_KEYS
    assert device["identifiers"], "a device needs identifiers (or connections)"
    assert set(config["origin"]) <= ORIGIN_KEYS and config["origin"]["name"]
    if component == "sensor":
        if "state_class" in config:
            assert config["state_class"] in STATE_CLASSES
        device_class = config.get("device_class")
        if device_class is not None:
            assert config["unit_of_measurement"] in UNITS[device_class], (topic, config["unit_of_measurement"])
            if device_class in ("energy", "gas", "water"):
                assert config["state_class"] in ("total", "total_increasing")
    return component


def test_every_discovery_message_follows_the_documented_schema():
    messages = ha.discovery(demo_site())
    components = [check_discovery(topic, config) for topic, config in messages.items()]
    unique_ids = [config["unique_id"] for config in messages.values()]
    assert len(unique_ids) == len(set(unique_ids))
    assert components.count("switch") == 2 and components.count("binary_sensor") == 1


def test_it_announces_one_device_per_location():
    messages = ha.discovery(demo_site())
    devices = {orjson.dumps(config["device"]) for config in messages.values()}
    assert len(devices) == 1
    device = orjson.loads(devices.pop())
    assert device["identifiers"] == [f"infinity_{UUID.replace('-', '')}"]
    assert device["name"] == "Demo house"
    assert device["manufacturer"] == "Smappee" and device["model"] == "Infinity Genius (MOD-GW-1)"
    assert {config["availability_topic"] for config in messages.values()} == {f"infinity/{UUID}/availability"}


def by_unique_id(site) -> dict[str, dict]:
    node = f"infinity_{UUID.replace('-', '')}"
    return {config["unique_id"].removeprefix(f"{node}_"): config for config in ha.discovery(site).values()}


def test_loads_have_power_and_never_decreasing_energy():
    entities = by_unique_id(demo_site())
    power = entities["load_1_power"]
    assert (power["device_class"], power["state_class"], power["unit_of_measurement"]) == ("power", "measurement", "W")
    energy = entities["load_1_energy"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy",
        "total_increasing",
        "kWh",
    )
    assert entities["load_2_energy"]["name"] == "Solar production"
    assert "load_1_energy_export" in entities and "load_3_energy_export" not in entities


def test_voltages_frequency_gas_and_water_are_sensors():
    entities = by_unique_id(demo_site())
    assert [entities[f"voltage_{p}"]["device_class"] for p in ("l1", "l2", "l3")] == ["voltage"] * 3
    assert entities["frequency"]["unit_of_measurement"] == "Hz"
    gas, water = entities["input_11"], entities["input_12"]
    assert (gas["device_class"], gas["state_class"], gas["unit_of_measurement"]) == ("gas", "total_increasing", "m³")
    assert (water["device_class"], water["state_class"], water["unit_of_measurement"]) == (
        "water",
        "total_increasing",
        "L",
    )


def test_relays_are_switches_with_a_command_topic():
    entities = by_unique_id(demo_site())
    boiler = entities["relay_21"]
    assert boiler["command_topic"] == f"infinity/{UUID}/ha/relay_21/set"
    assert boiler["state_topic"] == f"infinity/{UUID}/ha/relay_21"
    assert (boiler["payload_on"], boiler["payload_off"]) == ("ON", "OFF")


def test_states_follow_live_values_and_registers():
    states = ha.states(demo_site(), demo_values(), REGISTERS)
    base = f"infinity/{UUID}/ha"
    assert states[f"{base}/load_1_power"] == b"1750.0"
    assert states[f"{base}/load_1_energy"] == b"3.0005"  # kWh from the stored register
    assert states[f"{base}/load_1_energy_export"] == b"0.1202"
    assert states[f"{base}/voltage_l2"] == b"229.8"
    assert states[f"{base}/frequency"] == b"50.012"
    assert states[f"{base}/input_11"] == b"1234.56"
    assert states[f"{base}/input_12"] == b"5000.0"
    assert states[f"{base}/input_13"] == b"ON"
    assert states[f"{base}/consumption_power"] == b"2550.0"
    # Every state topic published is one a discovered entity listens to.
    listened = {config["state_topic"] for config in ha.discovery(demo_site()).values()}
    assert set(states) <= listened


def test_no_state_topic_looks_like_a_smappee_one():
    # pysmappee takes any topic ending in /state, /realtime or /config on its broker for its own.
    site = demo_site()
    topics = set(ha.states(site, demo_values(), REGISTERS)) | {
        config.get("command_topic", "") for config in ha.discovery(site).values()
    }
    assert not [t for t in topics if t.endswith(("/state", "/realtime", "/config", "/setstate"))]


def test_gas_in_litres_is_published_in_cubic_metres():
    site = demo_site()
    gas = site.inputs[0].__class__(11, "INP-1/1", "Gas", "pulse", "l")
    site = site.__class__(**{**site.__dict__, "inputs": (gas,)})
    assert by_unique_id(site)["input_11"]["unit_of_measurement"] == "m³"
    values = demo_values()
    values["inputs"][0]["value"] = 2500.0
    assert ha.states(site, values, {})[f"infinity/{UUID}/ha/input_11"] == b"2.5"


def test_it_reads_switch_commands():
    assert ha.parse_command(f"infinity/{UUID}/ha/relay_21/set", b"ON") == (UUID, 21, True)
    assert ha.parse_command(f"infinity/{UUID}/ha/relay_21/set", b"off") == (UUID, 21, False)
    for topic, payload in (
        (f"infinity/{UUID}/ha/load_1_power/set", b"ON"),
        (f"infinity/{UUID}/ha/relay_21/set", b"TOGGLE"),
        (f"infinity/{UUID}/ha/relay_21", b"ON"),
    ):
        with pytest.raises(ha.CommandRefused):
            ha.parse_command(topic, payload)

"""Home Assistant MQTT discovery: one device per location, its sensors and relay switches.

Discovery messages go to ``homeassistant/<component>/<node id>/<object id>/config`` (retained),
with the full option names of Home Assistant's MQTT sensor, binary sensor and switch platforms
(no abbreviations). Every entity has a ``unique_id``, the location's ``device`` block and the
availability topic ``infinity/<uuid>/availability`` (``online`` / ``offline``, retained), which
follows the gateway: ``offline`` when the watchdog reports it silent, ``online`` when frames flow.

States are plain values, one topic per entity under ``infinity/<uuid>/ha/``: W, V, Hz, kWh from
the stored energy registers (they never decrease, also across restarts), gas and water in
Home Assistant's units. Relays are switches: ``ON`` / ``OFF`` on their retained state topic,
commands on ``infinity/<uuid>/ha/relay_<id>/set``. No topic ends in ``/state``, ``/config`` (but
the discovery ones) or ``/realtime``, which pysmappee would take for its own on a shared broker.
"""

from __future__ import annotations

import re

import orjson

from metering.integrations.site import Site, SiteInput, phase_voltages

DISCOVERY_PREFIX = "homeassistant"
# Home Assistant announces itself here ("online") after a restart: discovery is sent again.
STATUS_TOPIC = f"{DISCOVERY_PREFIX}/status"
COMMAND_SUBSCRIPTION = "infinity/+/ha/+/set"
AVAILABLE, NOT_AVAILABLE = "online", "offline"
MANUFACTURER = "Smappee"
# Measurements older than this are shown as unavailable (the server itself may have stopped).
EXPIRE_AFTER_S = 120
MAX_COMMAND_BYTES = 16
ORIGIN = {"name": "Infinity Dashboard"}

# Units of a pulse input, normalised: (unit, factor) per Home Assistant device class.
_GAS_UNITS = {"m3": ("m³", 1.0), "m³": ("m³", 1.0), "l": ("m³", 0.001), "ft3": ("ft³", 1.0), "ft³": ("ft³", 1.0)}
_WATER_UNITS = {
    "m3": ("m³", 1.0),
    "m³": ("m³", 1.0),
    "l": ("L", 1.0),
    "ft3": ("ft³", 1.0),
    "ft³": ("ft³", 1.0),
    "gal": ("gal", 1.0),
}
_ENERGY_UNITS = {"kwh": ("kWh", 1.0), "wh": ("Wh", 1.0), "mwh": ("MWh", 1.0)}
# In delta a CT's phase names a line-to-line voltage (SPEC 3).
DELTA_VOLTAGES = {"L1": "L1-L3", "L2": "L2-L3", "L3": "L1-L2"}
_OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def node_id(site: Site) -> str:
    return f"infinity_{site.uuid.replace('-', '')}"


def availability_topic(site: Site) -> str:
    return f"infinity/{site.uuid}/availability"


def state_topic(site: Site, object_id: str) -> str:
    return f"infinity/{site.uuid}/ha/{object_id}"


def command_topic(site: Site, object_id: str) -> str:
    return f"{state_topic(site, object_id)}/set"


def discovery_topic(site: Site, component: str, object_id: str) -> str:
    assert _OBJECT_ID.match(object_id), object_id
    return f"{DISCOVERY_PREFIX}/{component}/{node_id(site)}/{object_id}/config"


def device(site: Site) -> dict:
    return {
        "identifiers": [node_id(site)],
        "name": site.name,
        "manufacturer": MANUFACTURER,
        "model": site.gateway_model,
        "serial_number": site.gateway_serial,
        "sw_version": site.software,
    }


def input_kind(spec: SiteInput) -> tuple[str | None, str, float]:
    """(device class, unit, factor from the configured unit) of a pulse input."""
    name, unit = spec.name.lower(), spec.unit.strip().lower()
    if "gas" in name and unit in _GAS_UNITS:
        return ("gas", *_GAS_UNITS[unit])
    if "water" in name and unit in _WATER_UNITS:
        return ("water", *_WATER_UNITS[unit])
    if unit in _ENERGY_UNITS:
        return ("energy", *_ENERGY_UNITS[unit])
    return None, spec.unit, 1.0


def _entity(site: Site, object_id: str, name: str, **options) -> dict:
    return {
        "name": name,
        "unique_id": f"{node_id(site)}_{object_id}",
        "availability_topic": availability_topic(site),
        "payload_available": AVAILABLE,
        "payload_not_available": NOT_AVAILABLE,
        "device": device(site),
        "origin": ORIGIN,
        **options,
    }


def _sensor(site: Site, object_id: str, name: str, **options) -> tuple[str, dict]:
    return discovery_topic(site, "sensor", object_id), _entity(
        site, object_id, name, state_topic=state_topic(site, object_id), **options
    )


def _measurement(device_class: str, unit: str, precision: int) -> dict:
    return {
        "device_class": device_class,
        "state_class": "measurement",
        "unit_of_measurement": unit,
        "suggested_display_precision": precision,
        "expire_after": EXPIRE_AFTER_S,
    }


def _counter(device_class: str | None, unit: str, precision: int) -> dict:
    options = {"state_class": "total_increasing", "unit_of_measurement": unit, "suggested_display_precision": precision}
    if device_class:
        options["device_class"] = device_class
    return options


def discovery(site: Site) -> dict[str, dict]:
    """Every discovery message of a location, by topic."""
    messages: dict[str, dict] = {}

    def add(item: tuple[str, dict]) -> None:
        messages[item[0]] = item[1]

    add(_sensor(site, "consumption_power", "Consumption power", **_measurement("power", "W", 0)))
    for load in site.loads:
        add(_sensor(site, f"load_{load.pk}_power", f"{load.name} power", **_measurement("power", "W", 0)))
        produced = load.kind == "solar"
        add(
            _sensor(
                site,
                f"load_{load.pk}_energy",
                f"{load.name} {'production' if produced else 'energy'}",
                **_counter("energy", "kWh", 3),
            )
        )
        if load.kind in ("grid", "battery"):
            label = "returned to grid" if load.kind == "grid" else "discharged"
            add(
                _sensor(
                    site, f"load_{load.pk}_energy_export", f"{load.name} energy {label}", **_counter("energy", "kWh", 3)
                )
            )
    for phase in site.voltage_phases:
        label = f"Voltage {DELTA_VOLTAGES.get(phase, phase) if site.topology == '3P' else phase}"
        add(_sensor(site, f"voltage_{phase.lower()}", label, **_measurement("voltage", "V", 1)))
    add(_sensor(site, "frequency", "Frequency", **_measurement("frequency", "Hz", 2)))
    for spec in site.inputs:
        object_id = f"input_{spec.pk}"
        if spec.mode == "status":
            add(
                (
                    discovery_topic(site, "binary_sensor", object_id),
                    _entity(site, object_id, spec.name, state_topic=state_topic(site, object_id)),
                )
            )
            continue
        device_class, unit, _factor = input_kind(spec)
        add(_sensor(site, object_id, spec.name, **_counter(device_class, unit, 3)))
    for relay in site.relays:
        object_id = f"relay_{relay.pk}"
        add(
            (
                discovery_topic(site, "switch", object_id),
                _entity(
                    site,
                    object_id,
                    relay.name,
                    state_topic=state_topic(site, object_id),
                    command_topic=command_topic(site, object_id),
                    payload_on="ON",
                    payload_off="OFF",
                ),
            )
        )
    return messages


def discovery_payloads(site: Site) -> dict[str, bytes]:
    return {topic: orjson.dumps(config) for topic, config in discovery(site).items()}


def _number(value: float | None, digits: int) -> bytes | None:
    return None if value is None else str(round(float(value), digits)).encode()


def states(site: Site, values: dict, registers: dict) -> dict[str, bytes]:
    """The state of every sensor the live values and registers give (missing values are left out)."""
    out: dict[str, bytes] = {}

    def put(object_id: str, payload: bytes | None) -> None:
        if payload is not None:
            out[state_topic(site, object_id)] = payload

    put("consumption_power", _number((values.get("totals") or {}).get("consumption"), 1))
    powers = {load.get("name"): load.get("p") for load in values.get("loads") or ()}
    energy = (registers or {}).get("load", {})
    for load in site.loads:
        put(f"load_{load.pk}_power", _number(powers.get(load.name), 1))
        pair = energy.get(load.name)
        if pair is not None:
            put(f"load_{load.pk}_energy", _number(pair[0] / 1000.0, 4))
            if load.kind in ("grid", "battery"):
                put(f"load_{load.pk}_energy_export", _number(pair[1] / 1000.0, 4))
    for phase, voltage in phase_voltages(site, values).items():
        put(f"voltage_{phase.lower()}", _number(voltage, 1))
    put("frequency", _number(values.get("frequency"), 3))
    readings = {reading.get("input"): reading for reading in values.get("inputs") or ()}
    for spec in site.inputs:
        reading = readings.get(spec.ref)
        if reading is None:
            continue
        if spec.mode == "status":
            put(f"input_{spec.pk}", b"ON" if reading.get("state") else b"OFF")
        elif reading.get("value") is not None:
            _class, _unit, factor = input_kind(spec)
            put(f"input_{spec.pk}", _number(reading["value"] * factor, 4))
    return out


def relay_state_topic(site: Site, relay_pk: int) -> str:
    return state_topic(site, f"relay_{relay_pk}")


class CommandRefused(ValueError):
    """A switch command that is not one (wrong topic or payload)."""


def parse_command(topic: str, payload: bytes) -> tuple[str, int, bool]:
    """``(location uuid, relay id, on)`` of ``infinity/<uuid>/ha/relay_<id>/set`` with ``ON``/``OFF``."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "infinity" or parts[2] != "ha" or parts[4] != "set":
        raise CommandRefused(f"not a switch command topic: {topic[:200]}")
    object_id = parts[3]
    if not object_id.startswith("relay_") or not object_id[6:].isdigit() or len(object_id) > 24:
        raise CommandRefused(f"not a relay: {object_id[:40]!r}")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRefused(f"switch command too large: {len(payload)} bytes")
    value = payload.strip().upper()
    if value not in (b"ON", b"OFF"):
        raise CommandRefused("a switch command is ON or OFF")
    return parts[1], int(object_id[6:]), value == b"ON"

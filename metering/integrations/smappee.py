"""Topics and payloads of a Smappee Infinity gateway's local MQTT broker, as ``pysmappee`` reads them.

``pysmappee`` (0.2.29, :class:`pysmappee.mqtt.SmappeeLocalMqtt`) subscribes to every topic of
the broker and reads, by topic suffix:

- ``servicelocation/<uuid>/config`` (retained): ``serialNumber``, ``serviceLocationUuid``,
  ``serviceLocationId``, ``timeZone`` (and ``firmwareVersion``, ``aggregationPeriodSeconds``);
- ``.../channelConfigV2`` (retained): ``dataProcessingSpecification.phaseType`` and its
  ``measurements``, grouped by name into pysmappee measurements: CONSUMPTION + GRID is "Grid",
  PRODUCTION + GRID is "Solar", CONSUMPTION + SUBMETER keeps the load's name;
- ``.../realtime``: ``totalPower``, ``totalReactivePower``, ``voltages[].voltage`` and, per
  ``channelPowers[].publishIndex``, ``power`` (W) and ``current`` (deciamps). Every publish
  index of the measurements must be present (pysmappee indexes them without a default), so a CT
  missing from the newest frame is published with 0 W and 0 A;
- ``.../homeControlConfig`` (retained): its ``smartplugActuators`` become switchable plugs;
- ``.../plug/<id>/state`` (retained) ``{"value": "ON"|"OFF"}``; it sends
  ``.../plug/<id>/setstate`` ``{"value": "ON"|"OFF"}`` to switch one.

Energy is in joules (Wh × 3600), from the stored registers that survive restarts.
"""

from __future__ import annotations

import orjson

from metering.integrations.site import PHASE_INDEX, Site, phase_readings, phase_voltages

AGGREGATION_PERIOD_S = 300
PHASE_TYPES = {"1P": "ONE", "2P+N": "TWO", "3P+N": "THREE_STAR", "3P+N-208": "THREE_STAR", "3P": "THREE_DELTA"}
SOURCE_PHASES = {"L1": "PHASEA", "L2": "PHASEB", "L3": "PHASEC"}
# A setstate message is a tiny JSON object; anything bigger is not one.
MAX_COMMAND_BYTES = 256
J_PER_WH = 3600.0


def prefix(site: Site) -> str:
    return f"servicelocation/{site.uuid}"


def config_topic(site: Site) -> str:
    return f"{prefix(site)}/config"


def channel_config_topic(site: Site) -> str:
    return f"{prefix(site)}/channelConfigV2"


def home_control_topic(site: Site) -> str:
    return f"{prefix(site)}/homeControlConfig"


def realtime_topic(site: Site) -> str:
    return f"{prefix(site)}/realtime"


def aggregated_topic(site: Site) -> str:
    return f"{prefix(site)}/aggregated"


def plug_state_topic(site: Site, relay_pk: int) -> str:
    return f"{prefix(site)}/plug/{relay_pk}/state"


# Commands from any location on the broker; the location is found by the UUID in the topic.
SETSTATE_SUBSCRIPTION = "servicelocation/+/plug/+/setstate"


def flow_and_connection(kind: str) -> tuple[str, str]:
    """A load kind as a Smappee measurement: grid and solar on the grid connection, others submeters."""
    if kind == "grid":
        return "CONSUMPTION", "GRID"
    if kind == "solar":
        return "PRODUCTION", "GRID"
    return "CONSUMPTION", "SUBMETER"


def config(site: Site) -> dict:
    return {
        "serialNumber": site.gateway_serial,
        "serviceLocationUuid": site.uuid,
        "serviceLocationId": site.location_id,
        "firmwareVersion": site.software,
        "aggregationPeriodSeconds": AGGREGATION_PERIOD_S,
        "timeZone": site.timezone,
    }


def channel_config(site: Site) -> dict:
    sources = []
    measurements = []
    for channel in site.channels:
        flow, connection = flow_and_connection(channel.kind)
        sources.append(
            {
                "serialNumber": channel.module_serial,
                "inputIndex": channel.input_index,
                "type": "CT",
                "ctType": channel.ct_type,
                "reversed": channel.reversed,
                "phase": SOURCE_PHASES[channel.phase],
                "publishIndex": channel.publish_index,
            }
        )
        measurements.append(
            {
                "name": channel.load,
                "type": channel.kind.upper(),
                "flow": flow,
                "connectionType": connection,
                "publishIndex": channel.publish_index,
                "phase": SOURCE_PHASES[channel.phase],
            }
        )
    return {
        "dataProcessingSpecification": {
            "phaseType": PHASE_TYPES[site.topology],
            "dataSources": sources,
            "measurements": measurements,
        }
    }


def home_control_config(site: Site) -> dict:
    """The Output-module relays as Smappee plugs, named as in the installation."""
    return {
        "smartplugActuators": [{"nodeId": relay.pk, "name": relay.name} for relay in site.relays],
        "switchActuators": [],
    }


def plug_state(is_on: bool, since_ms: int | None = None) -> dict:
    state = {"value": "ON" if is_on else "OFF"}
    if since_ms is not None:
        state["since"] = since_ms
    return state


def _joules(wh: float) -> int:
    return round(float(wh) * J_PER_WH)


def _grid_energy(site: Site, registers: dict) -> tuple[float, float]:
    """(import, export) Wh of the grid loads: what the house drew from and gave to the grid."""
    loads = (registers or {}).get("load", {})
    imported = exported = 0.0
    for load in site.loads:
        if load.kind == "grid":
            pair = loads.get(load.name) or (0.0, 0.0)
            imported += pair[0]
            exported += pair[1]
    return imported, exported


def realtime(site: Site, values: dict, registers: dict) -> dict:
    """The realtime message of live values (SPEC 5.3) and the energy registers."""
    readings = phase_readings(values)
    ct_energy = (registers or {}).get("ct", {})
    channels = []
    for channel in site.channels:
        reading = readings.get(channel.ct) or {}
        imported, exported = ct_energy.get(channel.ct) or (0.0, 0.0)
        channels.append(
            {
                "publishIndex": channel.publish_index,
                "power": reading.get("p") or 0.0,
                "reactivePower": reading.get("q") or 0.0,
                "current": round((reading.get("i") or 0.0) * 10),
                "phaseId": PHASE_INDEX[channel.phase],
                "importEnergy": _joules(imported),
                "exportEnergy": _joules(exported),
            }
        )
    totals = values.get("totals") or {}
    reactive = sum(
        load.get("q") or 0.0 for load in values.get("loads") or () if load.get("kind") in ("grid", "solar", "battery")
    )
    imported, exported = _grid_energy(site, registers)
    return {
        "totalPower": totals.get("consumption") or 0.0,
        "totalReactivePower": round(reactive, 1),
        "totalImportEnergy": _joules(imported),
        "totalExportEnergy": _joules(exported),
        "utcTimeStamp": round(float(values.get("t") or 0.0) * 1000),
        "channelPowers": channels,
        "voltages": [
            {"voltage": voltage, "phaseId": PHASE_INDEX[phase]}
            for phase, voltage in phase_voltages(site, values).items()
        ],
    }


def aggregated(site: Site, period_end_unix: float, registers: dict) -> dict:
    """The five-minute message: the energy counters (J) at the end of the period that just closed."""
    ct_energy = (registers or {}).get("ct", {})
    imported, exported = _grid_energy(site, registers)
    return {
        "utcTimeStamp": round(period_end_unix * 1000),
        "intervalSeconds": AGGREGATION_PERIOD_S,
        "totalImportEnergy": _joules(imported),
        "totalExportEnergy": _joules(exported),
        "channels": [
            {
                "publishIndex": channel.publish_index,
                "importEnergy": _joules((ct_energy.get(channel.ct) or (0.0, 0.0))[0]),
                "exportEnergy": _joules((ct_energy.get(channel.ct) or (0.0, 0.0))[1]),
            }
            for channel in site.channels
        ],
    }


def retained_messages(site: Site) -> dict[str, bytes]:
    """Every retained topic of a location with its payload: configuration and plug states."""
    messages = {
        config_topic(site): orjson.dumps(config(site)),
        channel_config_topic(site): orjson.dumps(channel_config(site)),
        home_control_topic(site): orjson.dumps(home_control_config(site)),
    }
    for relay in site.relays:
        messages[plug_state_topic(site, relay.pk)] = orjson.dumps(plug_state(relay.is_on, relay.changed_at_ms))
    return messages


class CommandRefused(ValueError):
    """A setstate message that is not one (wrong topic or payload)."""


def parse_setstate(topic: str, payload: bytes) -> tuple[str, int, bool]:
    """``(location uuid, relay id, on)`` of ``servicelocation/<uuid>/plug/<id>/setstate``."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "servicelocation" or parts[2] != "plug" or parts[4] != "setstate":
        raise CommandRefused(f"not a setstate topic: {topic[:200]}")
    if not parts[3].isdigit() or len(parts[3]) > 18:
        raise CommandRefused(f"plug id must be a whole number, got {parts[3][:40]!r}")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRefused(f"setstate payload too large: {len(payload)} bytes, limit {MAX_COMMAND_BYTES}")
    try:
        # pysmappee itself tolerates single quotes in a setstate payload; so do we.
        message = orjson.loads(payload.replace(b"'", b'"'))
    except orjson.JSONDecodeError as exc:
        raise CommandRefused(f"setstate payload is not JSON: {exc}") from None
    value = message.get("value") if isinstance(message, dict) else None
    if not isinstance(value, str) or value.upper() not in ("ON", "OFF", "ON_ON", "OFF_OFF"):
        raise CommandRefused('setstate payload must be {"value": "ON"} or {"value": "OFF"}')
    return parts[1], int(parts[3]), value.upper().startswith("ON")

"""Runs pysmappee's local client against our broker and reports what it reads (one JSON line each).

Started by tests/integrations/test_pysmappee.py with the Python of .venv-pysmappee (pysmappee
0.2.29 and paho-mqtt 1.x); it imports nothing of this project. pysmappee connects to
``smappee<serial>.local:1883``: the name is resolved to the broker here, and the port set to the
broker's. Commands on stdin: ``SET <plug id> ON|OFF`` (pysmappee's own setstate), ``QUIT``.

    python pysmappee_probe.py SERIAL BROKER_HOST BROKER_PORT
"""

import json
import socket
import sys
import threading
import time

serial, broker_host, broker_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
smappee_host = f"smappee{serial}.local"

_getaddrinfo = socket.getaddrinfo


def resolve_to_broker(host, *args, **kwargs):
    return _getaddrinfo(broker_host if host == smappee_host else host, *args, **kwargs)


socket.getaddrinfo = resolve_to_broker

from pysmappee import Smappee  # noqa: E402
from pysmappee.config import config  # noqa: E402
from pysmappee.mqtt import SmappeeLocalMqtt  # noqa: E402

config["MQTT"]["local"]["port"] = broker_port


def say(kind, **data):
    print(json.dumps({"kind": kind, **data}), flush=True)


client = SmappeeLocalMqtt(serial_number=serial)
ready = client.start_and_wait_for_config()
say("config", serial=ready, phase_type=client.phase_type, measurements=client.measurements)

smappee = Smappee(api=client, serialnumber=serial)
smappee.load_local_service_location()
location = next(iter(smappee.service_locations.values()))
say(
    "location",
    phase_type=location.phase_type,
    measurements={
        str(m.id): {"name": m.name, "indexes": [c["consumptionIndex"] for c in m.channels]}
        for m in location.measurements.values()
    },  # fmt: skip
    actuators={str(a.id): {"name": a.name, "state": a.state} for a in location.actuators.values()},
)


def commands():
    for line in sys.stdin:
        parts = line.split()
        if parts and parts[0] == "QUIT":
            break
        if len(parts) == 3 and parts[0] == "SET":
            client.set_actuator_state(None, int(parts[1]), f"{parts[2]}_{parts[2]}")
    client.stop()
    sys.exit(0)


threading.Thread(target=commands, daemon=True).start()

last = None
while True:
    reading = {
        "total_power": location.total_power,
        "total_reactive_power": location.total_reactive_power,
        "phase_voltages": location.phase_voltages,
        "measurements": {str(m.id): m.active_total for m in location.measurements.values()},
        "actuators": {str(a.id): a.state for a in location.actuators.values()},
    }
    if reading != last and reading["total_power"] is not None:
        say("reading", **reading)
        last = reading
    time.sleep(0.05)

"""pysmappee, the public Smappee client, reads our Smappee-compatible MQTT on the real Mosquitto.

pysmappee 0.2.29 (from the package index, in .venv-pysmappee with paho-mqtt 1.x: bin/setup makes
it, and so does this test when it is missing) runs its local client in a subprocess
(tests/integrations/pysmappee_probe.py): ``SmappeeLocalMqtt(serial_number=...)``,
``start_and_wait_for_config()``, ``Smappee(api=client, serialnumber=...)``,
``load_local_service_location()``, with ``smappee<serial>.local`` resolved to the broker. While
frames stream into the location, what it reads must equal our live values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devices.models import Event, Gateway, Relay
from metering import live
from metering.integrations import publisher
from metering.integrations.pool import Broker
from metering.models import RelayCommand
from metering.relays import acknowledge
from tests.conftest import IN_CI
from tests.factories import T0
from tests.integrations.mqtt_helpers import Listener, clear_retained, ingest, integrated_location, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv-pysmappee" / "bin" / "python"
PROBE = Path(__file__).with_name("pysmappee_probe.py")
SERIAL = "5090000042"  # a Genius for pysmappee: its serial starts with 50


@pytest.fixture(scope="session")
def pysmappee_python() -> Path:
    """The Python of .venv-pysmappee, made (idempotently) by bin/pysmappee-venv."""
    result = subprocess.run([ROOT / "bin" / "pysmappee-venv"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not VENV_PYTHON.exists():
        message = f"could not install pysmappee into .venv-pysmappee: {result.stderr[-2000:]}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return VENV_PYTHON


class Probe:
    """pysmappee's client in its own process; its reports arrive as JSON lines."""

    def __init__(self, python: Path, broker_url: str):
        host, port, _tls = Broker.from_url(broker_url).address
        self.process = subprocess.Popen(
            [str(python), str(PROBE), SERIAL, host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.reports: list[dict] = []
        self.errors: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.reports), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.errors), daemon=True).start()

    @staticmethod
    def _read(stream, into: list) -> None:
        for line in stream:
            try:
                into.append(json.loads(line) if into is not None and line.startswith("{") else line)
            except ValueError:
                into.append(line)

    def first(self, kind: str) -> dict | None:
        return next((r for r in self.reports if isinstance(r, dict) and r.get("kind") == kind), None)

    def readings(self) -> list[dict]:
        return [r for r in self.reports if isinstance(r, dict) and r.get("kind") == "reading"]

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("QUIT")
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)


def clear_stale_smappee_topics(url: str) -> None:
    """pysmappee reads every location's Smappee topics on the broker (it subscribes to ``#``):
    clear the retained ones an interrupted run left behind."""
    listener = Listener(url, "servicelocation/#")
    time.sleep(0.5)
    for topic in listener.topics():
        listener.publish(topic, b"", retain=True)
    listener.close()


def varying_frame(seq: int) -> dict:
    """Loads that change with every frame, so a reading can only match the frame it came from."""
    k = seq % 17
    return {
        "loads_w": {
            "A": (800.0 + 40.0 * k, 100.0),
            "B": (400.0 + 25.0 * k, 20.0),
            "C": (300.0 + 10.0 * k, -40.0),
            "D": (600.0 + 30.0 * k, 250.0),
        }
    }


@pytest.fixture
def smappee_location(mqtt_url, settings):
    settings.MQTT_URL = mqtt_url
    publisher.reset()
    clear_stale_smappee_topics(mqtt_url)
    location, gateway = integrated_location("PYS", smappee_mqtt=True)
    Gateway.objects.filter(pk=gateway.pk).update(serial=SERIAL)
    gateway.refresh_from_db()
    yield location, gateway
    clear_retained(mqtt_url, location)
    publisher.reset()


def test_pysmappee_reads_our_phase_type_measurements_and_live_values(mqtt_url, pysmappee_python, smappee_location):
    location, gateway = smappee_location
    ingest(gateway, "PYS", 1)  # the first frame publishes the retained configuration
    wait_for(lambda: publisher.pool().connections()[0].connected.is_set(), what="the publisher's connection")
    ingest(gateway, "PYS", 2)
    probe = Probe(pysmappee_python, mqtt_url)
    try:
        described = wait_for(
            lambda: probe.first("location"), timeout_s=40, what=f"pysmappee's service location {probe.errors}"
        )
        config = probe.first("config")
        assert config["serial"] == SERIAL
        assert described["phase_type"] == "THREE_STAR"
        # Our loads as pysmappee's measurements: Grid (CONSUMPTION + GRID) on its three CTs, the heat
        # pump (a submeter) on one; ids are the lowest publish index.
        assert described["measurements"] == {
            "0": {"name": "Grid", "indexes": [0, 1, 2]},
            "3": {"name": "Heat pump", "indexes": [3]},
        }
        # Our two Output-module relays are its plugs.
        relays = {str(r.pk): r.name for r in Relay.objects.filter(module__location=location)}
        assert {key: value["name"] for key, value in described["actuators"].items()} == relays

        # Frames stream, as from a gateway, several a second: each of pysmappee's readings must be
        # exactly the live values of one of our frames.
        snapshots = []
        seq, deadline = 3, time.monotonic() + 30
        while time.monotonic() < deadline and len(probe.readings()) < 4:
            ingest(gateway, "PYS", seq, t=T0 + seq - 1, **varying_frame(seq))
            snapshots.append(live.latest(location.pk))
            seq += 1
            time.sleep(0.15)
        readings = probe.readings()
        assert len(readings) >= 4, f"pysmappee read {len(readings)} realtime messages; stderr: {probe.errors[-5:]}"
        matched = set()
        for reading in readings[1:]:  # the first may be from before the varying frames
            candidates = [s for s in snapshots if s["totals"]["consumption"] == reading["total_power"]]
            assert candidates, f"no frame had the total power pysmappee read: {reading['total_power']}"
            values = candidates[-1]
            grid, heat_pump = values["loads"]
            voltages = [phase["v_ln"] for phase in grid["phases"]]
            assert reading["phase_voltages"] == voltages
            # Each measurement's power sums its CTs' powers (rounded to 0.1 W each).
            assert reading["measurements"]["0"] == pytest.approx(grid["p"], abs=0.15)
            assert reading["measurements"]["3"] == pytest.approx(heat_pump["p"], abs=0.05)
            matched.add(reading["total_power"])
        assert len(matched) >= 3, "readings follow the frames as they stream"
    finally:
        probe.close()


def test_pysmappee_switches_a_relay_through_our_relay_path(mqtt_url, pysmappee_python, smappee_location):
    location, gateway = smappee_location
    relay = Relay.objects.select_related("module").filter(module__location=location, number="1").get()
    ingest(gateway, "PYS", 1)
    wait_for(lambda: publisher.pool().connections()[0].connected.is_set(), what="the publisher's connection")
    ingest(gateway, "PYS", 2)
    probe = Probe(pysmappee_python, mqtt_url)
    try:
        described = wait_for(
            lambda: probe.first("location"), timeout_s=40, what=f"pysmappee's service location {probe.errors}"
        )
        assert described["actuators"][str(relay.pk)]["state"] == "OFF_OFF"  # from the retained plug state
        wait_for(lambda: publisher.pool().connections()[0].subscribed.is_set(), what="the publisher's subscriptions")
        probe.send(f"SET {relay.pk} ON")
        command = wait_for(lambda: RelayCommand.objects.filter(relay=relay).first(), what="a relay command")
        assert command.on is True and command.status == RelayCommand.PENDING
        event = Event.objects.get(location=location, kind=Event.RELAY)
        assert "Smappee" in event.message and relay.name in event.message
        # The device acknowledges: the retained plug state follows, and pysmappee sees the plug on.
        acknowledge(gateway, {"type": "ack", "command": command.pk, "relay": relay.ref, "on": True})
        listener = Listener(mqtt_url, f"servicelocation/{location.uuid}/plug/{relay.pk}/state")
        state = wait_for(
            lambda: listener.latest(f"servicelocation/{location.uuid}/plug/{relay.pk}/state"), what="plug state"
        )
        assert json.loads(state)["value"] == "ON"
        assert any(retained for _t, _p, retained in listener.messages), "the plug state is retained"
        listener.close()
        seq = 3
        while not any(r["actuators"].get(str(relay.pk)) == "ON_ON" for r in probe.readings()):
            assert seq < 60, f"pysmappee never saw the plug on; stderr: {probe.errors[-5:]}"
            ingest(gateway, "PYS", seq)
            seq += 1
            time.sleep(0.2)
    finally:
        probe.close()


def test_the_probe_runs_nothing_of_this_project():
    source = PROBE.read_text()
    assert "django" not in source.lower() and "metering" not in source and "devices" not in source
    assert sys.executable != str(VENV_PYTHON)

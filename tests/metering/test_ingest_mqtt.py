"""Frames over MQTT against the real Mosquitto broker (MQTT_URL, or 127.0.0.1:1883)."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.models import Event
from metering.ingest.broker import broker_address
from metering.ingest.mqtt import MqttIngest
from metering.models import PowerBoxState
from tests.factories import T0, make_location, star_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


def wait_for(predicate, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


class Device:
    """A gateway talking MQTT: publishes frames and collects the server's replies and commands."""

    def __init__(self, url: str, serial: str):
        host, port, _ = broker_address(url)
        self.serial = serial
        self.replies: list[dict] = []
        self.commands: list[dict] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self.ready.set()
        self.client.connect(host, port)
        self.client.subscribe([(f"infinity/{serial}/replies", 1), (f"infinity/{serial}/commands", 1)])
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, client, userdata, message):
        target = self.replies if message.topic.endswith("/replies") else self.commands
        target.append(orjson.loads(message.payload))

    def publish(self, payload: bytes, topic: str = "frames"):
        self.client.publish(f"infinity/{self.serial}/{topic}", payload, qos=1).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def worker(mqtt_url):
    group = f"test{uuid.uuid4().hex[:8]}"
    ingest = MqttIngest(mqtt_url, group=group)
    ingest.start()
    assert ingest.subscribed.wait(10), "the ingest worker did not subscribe"
    yield ingest
    ingest.stop()


@pytest.fixture
def device(mqtt_url):
    devices = []

    def make(serial: str) -> Device:
        devices.append(Device(mqtt_url, serial))
        return devices[-1]

    yield make
    for d in devices:
        d.close()


def test_it_ingests_frames_published_on_the_gateways_topic(worker, device):
    _, token = make_location()
    gateway = device("GW-T")
    gateway.publish(orjson.dumps({"token": token, "frames": [star_frame(seq=1, t=T0), star_frame(seq=2, t=T0 + 1.0)]}))
    reply = wait_for(lambda: gateway.replies and gateway.replies[0])
    assert reply == {"type": "ack", "accepted": [{"seq": 1, "status": "ok"}, {"seq": 2, "status": "ok"}]}
    assert PowerBoxState.objects.get().frames == 2


def test_it_refuses_a_wrong_token_with_an_event_and_stores_nothing(worker, device):
    location, _ = make_location()
    gateway = device("GW-T")
    gateway.publish(orjson.dumps({"token": "stolen", "frame": star_frame(seq=1)}))
    reply = wait_for(lambda: gateway.replies and gateway.replies[0])
    assert reply["type"] == "error" and reply["field"] == "token"
    assert "invalid gateway token for GW-T" in reply["error"]
    assert not PowerBoxState.objects.exists()
    event = Event.objects.get(kind=Event.INVALID_FRAME)
    assert event.location == location and "MQTT message refused" in event.message


def test_it_refuses_a_malformed_frame_naming_the_field(worker, device):
    _, token = make_location()
    frame = star_frame(seq=1)
    frame["currents"]["CTH-T/A"] = frame["currents"]["CTH-T/A"][:10]
    gateway = device("GW-T")
    gateway.publish(orjson.dumps({"token": token, "frame": frame}))
    reply = wait_for(lambda: gateway.replies and gateway.replies[0])
    assert reply["type"] == "error" and reply["field"].startswith("frames[0].currents.")
    assert not PowerBoxState.objects.exists()
    gateway.publish(b"{oops")
    second = wait_for(lambda: len(gateway.replies) > 1 and gateway.replies[1])
    assert second["error"].startswith("malformed JSON")


def test_it_sends_relay_commands_on_the_commands_topic(worker, device, settings, mqtt_url, owner):
    from metering.relays import request_relay

    settings.MQTT_URL = mqtt_url
    location, token = make_location()
    gateway = device("GW-T")
    relay = location.output_modules.get().relays.get(number="2")
    request_relay(relay, True, None, owner)
    command = wait_for(lambda: gateway.commands and gateway.commands[0])
    assert command["relay"] == "OUT-T/2" and command["on"] is True
    gateway.publish(
        orjson.dumps({"token": token, "type": "ack", "command": command["id"], "relay": "OUT-T/2", "on": True}), "acks"
    )
    wait_for(lambda: gateway.replies and gateway.replies[0])
    relay.refresh_from_db()
    assert relay.is_on


def test_it_splits_the_load_between_workers_of_a_shared_subscription(mqtt_url, device):
    _, token = make_location()
    group = f"split{uuid.uuid4().hex[:8]}"
    workers = [MqttIngest(mqtt_url, group=group) for _ in range(2)]
    for w in workers:
        w.start()
        assert w.subscribed.wait(10)
    try:
        gateway = device("GW-T")
        for seq in range(1, 21):
            gateway.publish(orjson.dumps({"token": token, "frame": star_frame(seq=seq, t=T0 + seq, n=640)}))
        wait_for(lambda: sum(w.handled for w in workers) == 20)
        assert all(w.handled > 0 for w in workers), [w.handled for w in workers]
        assert PowerBoxState.objects.get().frames == 20
    finally:
        for w in workers:
            w.stop()

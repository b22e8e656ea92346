"""A listener on the real broker, locations with integrations, frames ingested in the test's thread."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.models import Gateway
from metering.ingest.frames import frame_from_dict
from metering.ingest.process import ingest_frames
from metering.integrations import publisher
from metering.integrations.pool import Broker
from tests.factories import T0, make_location, star_frame


def wait_for(predicate, timeout_s: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Listener:
    """Subscribes to topics on the broker and keeps every message (topic, payload, retained)."""

    def __init__(self, url: str, *topics: str):
        host, port, _tls = Broker.from_url(url).address
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args, **kwargs: self._subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe([(topic, 0) for topic in topics])
        self.client.loop_start()
        assert self._subscribed.wait(10), "the listener could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _retain in self.messages if t == topic and payload]

    def latest(self, topic: str) -> bytes | None:
        found = self.on(topic)
        return found[-1] if found else None

    def latest_payload(self, topic: str) -> bytes | None:
        """The last payload on ``topic``, empty ones included (a cleared retained message)."""
        with self._lock:
            found = [payload for t, payload, _retain in self.messages if t == topic]
        return found[-1] if found else None

    def topics(self) -> set[str]:
        with self._lock:
            return {t for t, payload, _retain in self.messages if payload}

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def integrated_location(serial: str, **integrations):
    """The test house with a gateway serial of its own, integrations set as given. Returns (location, gateway)."""
    location, _token = make_location(serial_prefix=serial)
    for name, value in integrations.items():
        setattr(location, name, value)
    location.save()
    gateway = Gateway.objects.get(location=location)
    return location, gateway


def ingest(gateway: Gateway, serial: str, seq: int, t: float | None = None, **frame) -> None:
    doc = star_frame(serial_prefix=serial, seq=seq, t=T0 + seq - 1 if t is None else t, **frame)
    ingest_frames(gateway, [frame_from_dict(doc, now=doc["t"] + 2)])


def clear_retained(url: str, location) -> None:
    """Remove every retained message a test location left on the broker (other tests share it)."""
    setup = publisher.setup_of(location.pk)
    topics = set(setup.retained)
    if setup.site is not None:
        topics.add(f"infinity/{setup.site.uuid}/availability")
    if not topics:
        return
    cleaner = Listener(url, f"cleanup/{uuid.uuid4().hex}")
    for topic in topics:
        cleaner.publish(topic, b"", retain=True)
    cleaner.close()

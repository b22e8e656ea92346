"""Ingest over MQTT (Mosquitto): frames in, relay commands out.

Topics, per gateway serial:

- ``infinity/<serial>/frames`` — device → server. The payload is JSON: ``{"token": "<gateway
  token>", "frames": [<frame>, ...]}`` (or ``"frame": <frame>``). The token travels in the
  envelope because the server cannot see the credentials a device gave the broker.
- ``infinity/<serial>/acks`` — device → server, relay acknowledgements, with ``"token"`` too.
- ``infinity/<serial>/replies`` — server → device: one ``ack`` or ``error`` per message.
- ``infinity/<serial>/commands`` — server → device: relay commands.

Workers subscribe through the MQTT v5 shared subscription ``$share/<group>/...``, so several
``manage.py ingest_mqtt`` processes split the load. Refused messages become an Event on the
gateway's location and a log line.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
from django.db import close_old_connections, connections
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.models import Event, Gateway, hash_token
from metering import commands
from metering.frames import MAX_FRAME_BYTES, MAX_FRAMES_PER_BODY, FrameError, FrameTooLarge, frame_from_dict
from metering.ingest import record_invalid_frame
from metering.pipeline.stream import Busy, Refused, stream

log = logging.getLogger(__name__)

SHARE_GROUP = "infinity"
FRAMES_TOPIC = "infinity/+/frames"
ACKS_TOPIC = "infinity/+/acks"


def broker_address(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls


def new_client(url: str, client_id: str = "") -> mqtt.Client:
    host, port, tls = broker_address(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    parts = urlsplit(url)
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    if tls:
        client.tls_set()
    client._infinity_address = (host, port)  # noqa: SLF001 - remembered for connect()
    return client


def publish_command(url: str, gateway_serial: str, message: dict) -> None:
    """Publish one relay command to the gateway's commands topic (QoS 1)."""
    client = new_client(url)
    host, port = client._infinity_address
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(f"infinity/{gateway_serial}/commands", orjson.dumps(message), qos=1)
        info.wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def handle_message(topic: str, payload: bytes) -> dict:
    """Process one MQTT message; returns the reply for the device (``ack`` or ``error``)."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "infinity":
        return {"type": "error", "error": f"unexpected topic {topic}", "field": None}
    serial, kind = parts[1], parts[2]
    gateway = Gateway.objects.select_related("location").filter(serial=serial).first()
    if len(payload) > MAX_FRAME_BYTES:
        return _refuse(
            gateway, serial, FrameTooLarge(f"frame too large: {len(payload)} bytes, limit {MAX_FRAME_BYTES}")
        )
    try:
        envelope = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return _refuse(gateway, serial, FrameError(f"malformed JSON: {exc}"))
    if not isinstance(envelope, dict):
        return _refuse(gateway, serial, FrameError("an MQTT message is a JSON object with 'token' and 'frames'"))
    token = envelope.get("token")
    if (
        gateway is None
        or not isinstance(token, str)
        or not gateway.token_hash
        or hash_token(token) != gateway.token_hash
    ):
        return _refuse(
            gateway, serial, FrameError(f"missing or invalid gateway token for {serial}", "token"), unauthenticated=True
        )
    try:
        if kind == "acks":
            relay = commands.acknowledge(gateway, envelope)
            return {"type": "ack", "relay": relay.ref, "on": relay.is_on}
        docs = envelope.get("frames", [envelope["frame"]] if "frame" in envelope else None)
        if not isinstance(docs, list) or not docs:
            raise FrameError("the message needs 'frame' (an object) or 'frames' (a non-empty list)", "frames")
        if len(docs) > MAX_FRAMES_PER_BODY:
            raise FrameError(f"too many frames in one message: {len(docs)}, limit {MAX_FRAMES_PER_BODY}", "frames")
        frames = []
        for index, doc in enumerate(docs):
            try:
                frames.append(frame_from_dict(doc))
            except FrameError as problem:
                problem.field = f"frames[{index}].{problem.field}" if problem.field else f"frames[{index}]"
                raise
        outcome = stream().submit(gateway, frames, "MQTT")
    except Busy as busy:
        log.warning("MQTT message for gateway %s not taken: %s", serial, busy.message)
        return {"type": "error", **busy.as_dict(), "status": busy.status}
    except Refused as problem:  # recorded where it was refused
        return {"type": "error", **problem.as_dict()}
    except commands.CommandError as problem:
        return _refuse(gateway, serial, FrameError(str(problem), "relay"))
    except FrameError as problem:
        return _refuse(gateway, serial, problem)
    return {"type": "ack", "accepted": [r.as_dict() for r in outcome.receipts]}


def _refuse(gateway: Gateway | None, serial: str, problem: FrameError, unauthenticated: bool = False) -> dict:
    log.warning("MQTT message for gateway %s refused: %s (field %s)", serial, problem.message, problem.field)
    if gateway is not None:
        if unauthenticated:
            Event.objects.create(
                location_id=gateway.location_id,
                kind=Event.INVALID_FRAME,
                module=serial,
                message=f"MQTT message refused: {problem.message}",
                data=problem.as_dict() | {"transport": "MQTT"},
            )
        else:
            record_invalid_frame(gateway, problem, "MQTT")
    return {"type": "error", **problem.as_dict()}


class MqttIngest:
    """Subscribes to every gateway's frames and acks topics and ingests them."""

    def __init__(self, url: str, group: str = SHARE_GROUP, client_id: str = ""):
        self.url = url
        self.group = group
        self.client = new_client(url, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args, **kwargs: self.subscribed.set()
        self.handled = 0

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_code)
            return
        client.subscribe([(f"$share/{self.group}/{FRAMES_TOPIC}", 1), (f"$share/{self.group}/{ACKS_TOPIC}", 1)])
        log.info("subscribed to %s and %s (shared group %s)", FRAMES_TOPIC, ACKS_TOPIC, self.group)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        # Runs in the network thread: close the database connections that thread opened.
        connections.close_all()

    def _on_message(self, client, userdata, message) -> None:
        close_old_connections()
        try:
            reply = handle_message(message.topic, message.payload)
        except Exception:  # one bad message must not stop the worker
            log.exception("MQTT message on %s could not be processed", message.topic)
            reply = {"type": "error", "error": "internal error, message not stored", "field": None}
        finally:
            close_old_connections()
        self.handled += 1
        serial = message.topic.split("/")[1] if message.topic.count("/") == 2 else None
        if serial:
            properties = Properties(PacketTypes.PUBLISH)
            client.publish(f"infinity/{serial}/replies", orjson.dumps(reply), qos=0, properties=properties)

    def start(self) -> None:
        host, port = self.client._infinity_address
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def run_forever(self) -> None:
        host, port = self.client._infinity_address
        self.client.connect(host, port, keepalive=30)
        self.client.loop_forever(retry_first_connection=True)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

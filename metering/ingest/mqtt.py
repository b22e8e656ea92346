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
gateway's location and a log line. A thin adapter over :mod:`metering.ingest.gateway`; commands
are published by :mod:`metering.ingest.broker`.
"""

from __future__ import annotations

import logging
import threading

import orjson
from django.db import close_old_connections, connections
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.models import Gateway, hash_token
from metering.ingest import gateway as gateways
from metering.ingest.broker import new_client
from metering.ingest.frames import MAX_FRAME_BYTES, MAX_FRAMES_PER_BODY, FrameError, FrameTooLarge, frame_from_dict
from metering.ingest.gateway import MQTT

log = logging.getLogger(__name__)

SHARE_GROUP = "infinity"
FRAMES_TOPIC = "infinity/+/frames"
ACKS_TOPIC = "infinity/+/acks"


def handle_message(topic: str, payload: bytes) -> dict:
    """Process one MQTT message; returns the reply for the device (``ack`` or ``error``)."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "infinity":
        return {"type": "error", "error": f"unexpected topic {topic}", "field": None}
    serial, kind = parts[1], parts[2]
    gateway = Gateway.objects.select_related("location").filter(serial=serial).first()
    if len(payload) > MAX_FRAME_BYTES:
        problem = FrameTooLarge(f"frame too large: {len(payload)} bytes, limit {MAX_FRAME_BYTES}")
        return _refuse(gateway, serial, problem)
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
        problem = FrameError(f"missing or invalid gateway token for {serial}", "token")
        return _refuse(gateway, serial, problem, authenticated=False)
    if kind == "acks":
        acknowledged = gateways.acknowledge(gateway, envelope)
        if acknowledged.problem is not None:
            return _refuse(gateway, serial, acknowledged.problem)
        return {"type": "ack", **acknowledged.as_dict()}
    received = gateways.receive_frames(gateway, MQTT, lambda: frames_of(envelope))
    if received.problem is not None:
        return {"type": "error", **received.error()}
    return {"type": "ack", "accepted": [r.as_dict() for r in received.receipts]}


def frames_of(envelope: dict) -> list:
    """The frames of an envelope's ``"frame"`` (one object) or ``"frames"`` (a list)."""
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
    return frames


def _refuse(gateway: Gateway | None, serial: str, problem: FrameError, authenticated: bool = True) -> dict:
    log.warning("MQTT message for gateway %s refused: %s (field %s)", serial, problem.message, problem.field)
    return {"type": "error", **gateways.refuse(gateway, problem, MQTT, authenticated=authenticated).error()}


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
        except gateways.UNAVAILABLE as problem:  # the gateway's lookup: publish again later
            reply = {"type": "error", **gateways.unavailable(problem).as_dict(), "status": 503}
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

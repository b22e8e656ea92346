"""Messages from the server to a gateway, on every path it may be listening on.

A gateway with an open ingest WebSocket is in the channel-layer group :func:`gateway_group`;
with ``MQTT_URL`` set, it may also subscribe to ``infinity/<serial>/commands`` on the broker.
(An HTTP gateway gets what waits for it in the reply to its next request: see
:func:`metering.relays.pending_for`.) The MQTT connection helpers live here too, shared by the
MQTT ingest worker (:mod:`metering.ingest.mqtt`).
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

# The event type a gateway's socket handles (IngestConsumer.device_command).
DEVICE_COMMAND = "device.command"


def gateway_group(gateway_id: int) -> str:
    """The channel-layer group of a gateway's ingest sockets."""
    return f"gateway.{gateway_id}"


def commands_topic(gateway_serial: str) -> str:
    return f"infinity/{gateway_serial}/commands"


def send_to_gateway(
    gateway_id: int, gateway_serial: str, message: dict, *, publish_in_background: bool = False
) -> None:
    """Send ``message`` to the gateway's open sockets and, with ``MQTT_URL``, its commands topic.

    The broker being down is logged, not raised: the sockets and HTTP polling still deliver.
    :func:`publish` may wait seconds for a broker that hangs: with ``publish_in_background``
    (a caller that must never wait: an ingest thread, an MQTT network thread) it is done on a
    thread of its own, in order.
    """
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(gateway_group(gateway_id), {"type": DEVICE_COMMAND, "command": message})
    if not settings.MQTT_URL:
        return
    if publish_in_background:
        _publications().submit(_publish_logged, settings.MQTT_URL, gateway_serial, message)
    else:
        _publish_logged(settings.MQTT_URL, gateway_serial, message)


def _publish_logged(url: str, gateway_serial: str, message: dict) -> None:
    try:
        publish(url, commands_topic(gateway_serial), message)
    except (OSError, RuntimeError, ValueError) as exc:  # paho: refused, timed out, not connected
        log.warning("could not publish to gateway %s over MQTT: %s", gateway_serial, exc)


@functools.cache
def _publications() -> ThreadPoolExecutor:
    # One thread: commands are rare (a switch), and keep their order.
    return ThreadPoolExecutor(1, thread_name_prefix="gateway-publish")


def wait_for_publications(timeout_s: float = 30.0) -> None:
    """Return once every background publication asked for so far is done (tests, shutdown)."""
    _publications().submit(lambda: None).result(timeout=timeout_s)


def broker_address(url: str) -> tuple[str, int, bool]:
    """(host, port, TLS) of an ``mqtt://`` or ``mqtts://`` URL, the port filled in."""
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls


def new_client(url: str, client_id: str = "") -> mqtt.Client:
    """An MQTT v5 client for the broker at ``url`` (credentials and TLS from the URL), not connected."""
    host, port, tls = broker_address(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    parts = urlsplit(url)
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    if tls:
        client.tls_set()
    client._infinity_address = (host, port)  # noqa: SLF001 - remembered for connect()
    return client


def publish(url: str, topic: str, message: dict) -> None:
    """Publish one message (QoS 1) on a connection of its own, waiting up to 5 s for the broker."""
    client = new_client(url)
    host, port = client._infinity_address
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(topic, orjson.dumps(message), qos=1)
        info.wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()

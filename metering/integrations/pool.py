"""One MQTT connection per broker, shared by every location that publishes to it.

A pooled connection never makes its caller wait: it connects in paho's own thread
(``connect_async`` + ``loop_start``) and reconnects there with a back-off. What is published
while it is down is dropped (the next second brings fresh values), except retained messages
(configurations, relay states, availability): the latest payload of each retained topic waits
and is sent once at the next connection. :attr:`Connection.generation` counts connections (and
requests to send everything again, such as Home Assistant's restart), so the publisher sends a
location's retained messages again to a broker that may have lost them. A broker that accepts
the connection but reads slowly cannot make memory grow either: beyond :data:`MAX_UNSENT`
messages waiting for the socket, new ones are dropped.

Nothing here knows Django: :mod:`metering.integrations.publisher` wires it to the live values.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

# Messages handed to paho but not yet written to the socket; more are dropped.
MAX_UNSENT = 2_000
# Retained messages waiting for a connection, per broker (the latest payload per topic).
MAX_PENDING_TOPICS = 20_000
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 60
# A broken broker is reported at most this often (a log line, nothing else).
WARN_EVERY_S = 300.0


@dataclass(frozen=True)
class Broker:
    """Where to publish: an ``mqtt://`` or ``mqtts://`` URL (no credentials in it) and credentials."""

    url: str
    username: str = ""
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> Broker:
        """A broker from a URL that may carry ``user:password@`` (the server's ``MQTT_URL``)."""
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:  # an IPv6 literal
            netloc = f"[{netloc}]"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return cls(f"{parts.scheme}://{netloc}", parts.username or "", parts.password or "")

    @property
    def address(self) -> tuple[str, int, bool]:
        parts = urlsplit(self.url)
        tls = parts.scheme == "mqtts"
        return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls

    def __repr__(self) -> str:  # never the password, not even in a traceback
        return f"Broker({self.url!r}, username={self.username!r})"

    __str__ = __repr__


MessageHandler = Callable[["Connection", str, bytes], None]
ConnectHandler = Callable[["Connection"], None]


class Connection:
    """A paho client for one broker, connected in the background."""

    def __init__(
        self,
        broker: Broker,
        subscriptions: tuple[str, ...] = (),
        on_message: MessageHandler | None = None,
        on_connect: ConnectHandler | None = None,
    ):
        self.broker = broker
        self.subscriptions = subscriptions
        self._handle_message = on_message
        self._handle_connect = on_connect
        self._lock = threading.RLock()  # _send runs under it while waiting messages go out
        self._pending: dict[str, bytes] = {}
        self._unsent = 0
        self._last_warning = 0.0
        self.connected = threading.Event()
        # Set once the broker granted this session's subscriptions (commands reach us from then on).
        self.subscribed = threading.Event()
        self.generation = 0  # counts successful connections: callers re-send what a new session lacks
        self.dropped = 0
        host, port, tls = broker.address
        # MQTT 3.1.1 for the widest choice of homeowners' brokers; Mosquitto also shares
        # subscriptions ($share/...) at this protocol level.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"infinity-integrations-{uuid.uuid4().hex[:12]}"
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password or None)
        if tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect_fail = self._on_connect_fail
        try:
            self.client.connect_async(host, port, keepalive=30)
        except (OSError, ValueError) as exc:  # an unusable address: the loop thread would only spin
            self._warn("cannot connect to MQTT broker %s: %s", broker, exc)
        self.client.loop_start()

    # --- paho callbacks (its network thread) ---------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._warn("MQTT broker %s refused the connection: %s", self.broker, reason_code)
            return
        if self.subscriptions:
            client.subscribe([(topic, 0) for topic in self.subscriptions])
        with self._lock:  # waiting messages go out before any newer one for the same topic
            self.generation += 1
            self._unsent = 0
            pending, self._pending = list(self._pending.items()), {}
            for topic, payload in pending:
                self._send(topic, payload, retain=True)
            self.connected.set()
        if self._handle_connect is not None:
            try:
                self._handle_connect(self)
            except Exception:
                log.exception("MQTT connect handler for %s failed", self.broker)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(code.is_failure for code in reason_codes):
            self._warn("MQTT broker %s refused a subscription: %s", self.broker, reason_codes)
            return
        self.subscribed.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._warn("cannot reach MQTT broker %s; retrying in the background", self.broker)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if reason_code.is_failure:
            self._warn("lost MQTT broker %s (%s); reconnecting in the background", self.broker, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self._unsent = max(0, self._unsent - 1)

    def _on_message(self, client, userdata, message) -> None:
        if self._handle_message is None:
            return
        try:
            self._handle_message(self, message.topic, message.payload)
        except Exception:  # one bad message must not stop the connection
            log.exception("MQTT message on %s from %s could not be handled", message.topic, self.broker)

    # --- publishing (any thread) -----------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Hand one QoS 0 message to paho; False when it was not sent now.

        A retained message published while disconnected waits for the next connection.
        """
        with self._lock:
            if not self.connected.is_set():
                self.dropped += not retain
                if retain:
                    if topic not in self._pending and len(self._pending) >= MAX_PENDING_TOPICS:
                        self._pending.pop(next(iter(self._pending)))
                    self._pending[topic] = payload
                return False
        return self._send(topic, payload, retain=retain)

    def resend(self) -> None:
        """Ask the publisher to send every retained message again (the broker or its reader lost them)."""
        with self._lock:
            self.generation += 1

    def _send(self, topic: str, payload: bytes, *, retain: bool) -> bool:
        with self._lock:
            if self._unsent >= MAX_UNSENT:
                self.dropped += 1
                backlog = True
            else:
                self._unsent += 1
                backlog = False
        if backlog:
            self._warn("MQTT broker %s does not keep up; dropping messages", self.broker)
            return False
        info = self.client.publish(topic, payload, qos=0, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            with self._lock:
                self._unsent = max(0, self._unsent - 1)
                self.dropped += 1
            return False
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def _warn(self, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S or self._last_warning == 0.0:
            self._last_warning = now
            log.warning(message, *args)


class Pool:
    """Connections by broker (URL and credentials), created on first use."""

    def __init__(
        self,
        subscriptions: tuple[str, ...] = (),
        on_message: MessageHandler | None = None,
        on_connect: ConnectHandler | None = None,
    ):
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.on_connect = on_connect
        self._connections: dict[Broker, Connection] = {}
        self._lock = threading.Lock()

    def get(self, broker: Broker) -> Connection:
        with self._lock:
            connection = self._connections.get(broker)
            if connection is None:
                connection = Connection(broker, self.subscriptions, self.on_message, self.on_connect)
                self._connections[broker] = connection
            return connection

    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections.values())

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()

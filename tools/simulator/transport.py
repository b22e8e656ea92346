"""How a simulated gateway talks to the server: HTTP, WebSocket or MQTT, with its token.

Every transport does the same four things:

``encode(frame)``
    An :class:`OutgoingFrame` as the bytes this transport sends (:class:`Payload`): JSON, or
    on the WebSocket by default the compact binary encoding of :mod:`metering.ingest.frames`.
``send(payload)``
    Deliver one payload and return the server's :class:`Reply` (accepted with a status, or
    refused with the error and field the server names). Relay commands that came back with it
    are in ``reply.commands``. Raises :class:`TransportError` when the network fails (retry
    later, the payload was not delivered) and :class:`FatalTransportError` when retrying
    cannot help (token refused, no ingest endpoint at that URL).
``poll_commands()``
    Relay commands that arrived on their own (WebSocket messages, the MQTT commands topic).
``ack(doc)``
    Acknowledge a command: ``{"type": "ack", "command": id, "relay": ..., "on": ...}``.

Wire formats (SPEC 5.2 and the relay protocol):

* HTTP: ``POST {url}/api/v1/ingest/frames`` with ``Authorization: Bearer <token>``, keep-alive;
  the answer is ``{"accepted": [{"seq", "status"}], "commands": [...]}`` or
  ``{"error", "field"}`` with a 4xx status. Acks go to ``POST {url}/api/v1/ingest/acks``; while
  the server has no such endpoint (404) that is logged once.
* WebSocket (the ``websockets`` sync client): ``{ws_url}/ws/ingest/`` with the Authorization
  header on the handshake; one ``{"type": "ack", "seq": N, ...}`` or ``{"type": "error",
  "error", "field", "seq"}`` text message back per frame; commands arrive as ``{"type":
  "command", ...}`` text messages and acks go back as text messages.
* MQTT v5: broker login = gateway serial and token; each frame published at QoS 1 to
  ``infinity/<serial>/frames`` in the envelope ``{"token": ..., "frame": {...}}`` (the server is
  another client of the broker and cannot see the device's login); the server's verdicts come
  back on ``infinity/<serial>/replies``, commands on ``infinity/<serial>/commands``, and acks
  go to ``infinity/<serial>/acks`` with ``"token"`` added (docs/ingest.md).
"""

from __future__ import annotations

import http.client
import logging
import queue
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

log = logging.getLogger(__name__)

__all__ = [
    "FatalTransportError",
    "HttpTransport",
    "MqttTransport",
    "OutgoingFrame",
    "Payload",
    "Reply",
    "TransportError",
    "WebSocketTransport",
    "make_transport",
]


class TransportError(Exception):
    """The network failed; the payload was not delivered and may be sent again later."""


class FatalTransportError(TransportError):
    """Retrying cannot help: the token was refused or nothing listens at that address."""


@dataclass
class OutgoingFrame:
    """A frame's samples ready to be encoded (SPEC 5.2)."""

    powerbox: str
    seq: int
    t: float
    fs_hz: float
    voltages: dict[str, np.ndarray]
    currents: dict[str, np.ndarray]
    inputs: dict[str, tuple[int, int]]

    def to_doc(self) -> dict[str, Any]:
        """The JSON document, samples as numpy arrays rounded to 0.01 V and 0.1 mA."""
        return {
            "v": 1,
            "powerbox": self.powerbox,
            "seq": self.seq,
            "t": self.t,
            "fs": self.fs_hz,
            "voltages": {k: np.round(v, 2) for k, v in self.voltages.items()},
            "currents": {k: np.round(i, 4) for k, i in self.currents.items()},
            "inputs": {ref: {"state": s, "pulses": p} for ref, (s, p) in self.inputs.items()},
        }

    def to_json(self) -> bytes:
        return dumps(self.to_doc())

    def to_binary(self) -> bytes:
        from metering.ingest.frames import InputReading, SampleFrame, encode_binary

        frame = SampleFrame(
            version=1,
            powerbox=self.powerbox,
            seq=self.seq,
            t=self.t,
            fs_hz=self.fs_hz,
            voltages=self.voltages,
            currents=self.currents,
            inputs={ref: InputReading(state=s, pulses=p) for ref, (s, p) in self.inputs.items()},
        )
        return encode_binary(frame)


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass
class Payload:
    """Bytes to send for the frame ``seq`` taken at Unix time ``t``; ``binary`` picks a
    WebSocket binary message. ``fault`` names a deliberately injected fault ("duplicate",
    "bad_json", ...), ``note`` describes it."""

    data: bytes
    seq: int | None
    binary: bool = False
    note: str = ""
    fault: str | None = None
    t: float | None = None


@dataclass
class Reply:
    """What the server said about one payload.

    ``status`` is the server's receipt status ("ok", "duplicate", "late", "gap") when it
    accepted the frame, ``error``/``field`` when it refused it.
    """

    ok: bool
    seq: int | None = None
    status: str | None = None
    error: str | None = None
    field: str | None = None
    commands: list[dict[str, Any]] = dataclass_field(default_factory=list)


def _loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


# ----------------------------------------------------------------------------------- HTTP


class HttpTransport:
    """Frames as JSON POSTs on one keep-alive connection (http.client)."""

    name = "HTTP"

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url must be http(s)://host[:port], got {url!r}")
        self.url = url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port
        self.https = parts.scheme == "https"
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._acks_missing_logged = False
        self._pending_acks: list[dict[str, Any]] = []

    def encode(self, frame: OutgoingFrame) -> Payload:
        return Payload(frame.to_json(), frame.seq, t=frame.t)

    def encode_doc(self, doc: dict[str, Any]) -> bytes:
        """Any JSON document as this transport would send a frame document."""
        return dumps(doc)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _post(self, path: str, body: bytes) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", self.prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # The server closed the idle keep-alive connection: one fresh try.
                self.close()
                if attempt == 2:
                    raise TransportError(f"HTTP {self.url}: {exc}") from exc
                continue
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise TransportError(f"HTTP {self.url}: {exc}") from exc
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, _loads(data)
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, payload: Payload) -> Reply:
        status, doc = self._post("/api/v1/ingest/frames", payload.data)
        doc = doc if isinstance(doc, dict) else {}
        if status == 401:
            raise FatalTransportError(f"the server refused the gateway token: {doc.get('error') or 'HTTP 401'}")
        if status == 404:
            raise FatalTransportError(f"no ingest endpoint at {self.url}/api/v1/ingest/frames (HTTP 404)")
        if status == 429 or status >= 500:
            raise TransportError(f"HTTP {status} from {self.url}: {doc.get('error') or 'server error'}")
        commands = [c for c in doc.get("commands") or [] if isinstance(c, dict)]
        if 200 <= status < 300:
            accepted = doc.get("accepted") or [{}]
            receipt = accepted[0] if isinstance(accepted[0], dict) else {}
            self._flush_acks()
            return Reply(True, receipt.get("seq", payload.seq), receipt.get("status", "ok"), commands=commands)
        return Reply(
            False, payload.seq, error=doc.get("error") or f"HTTP {status}", field=doc.get("field"), commands=commands
        )

    def poll_commands(self) -> list[dict[str, Any]]:
        return []  # over HTTP, commands ride on the ingest replies

    def ack(self, doc: dict[str, Any]) -> None:
        self._pending_acks.append(doc)
        self._flush_acks()

    def _flush_acks(self) -> None:
        while self._pending_acks:
            doc = self._pending_acks[0]
            try:
                status, body = self._post("/api/v1/ingest/acks", dumps(doc))
            except TransportError as exc:
                log.warning("could not acknowledge command %s yet: %s", doc.get("command"), exc)
                return
            self._pending_acks.pop(0)
            if status == 404:
                if not self._acks_missing_logged:
                    log.warning("the server has no %s/api/v1/ingest/acks yet (HTTP 404): acks are dropped", self.url)
                    self._acks_missing_logged = True
            elif not 200 <= status < 300:
                error = body.get("error") if isinstance(body, dict) else None
                log.warning("ack of command %s refused: HTTP %s %s", doc.get("command"), status, error or "")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ------------------------------------------------------------------------------ WebSocket


class WebSocketTransport:
    """Frames as WebSocket messages (binary by default, JSON text with ``binary=False``),
    one reply read back per frame; the client is the ``websockets`` library's sync client."""

    name = "WebSocket"

    def __init__(self, ws_url: str, token: str, *, binary: bool = True, timeout: float = 10.0) -> None:
        parts = urlsplit(ws_url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        if scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a WebSocket or HTTP URL: {ws_url!r}")
        self.url = parts._replace(scheme=scheme).geturl().rstrip("/") + "/ws/ingest/"
        self.token = token
        self.binary = binary
        self.timeout = timeout
        self._ws = None
        self._commands: list[dict[str, Any]] = []

    def encode(self, frame: OutgoingFrame) -> Payload:
        if self.binary:
            return Payload(frame.to_binary(), frame.seq, binary=True, t=frame.t)
        return Payload(frame.to_json(), frame.seq, t=frame.t)

    def encode_doc(self, doc: dict[str, Any]) -> bytes:
        return dumps(doc)

    def _socket(self):
        if self._ws is None:
            from websockets.exceptions import InvalidHandshake, InvalidStatus
            from websockets.sync.client import connect

            try:
                self._ws = connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=self.timeout,
                    close_timeout=2,
                    compression=None,
                    max_size=None,
                    proxy=None,
                    legacy=True,  # a plain connection we keep open and close ourselves
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise FatalTransportError(
                        f"the server refused the WebSocket at {self.url} (HTTP {status}): check the gateway token"
                    ) from exc
                if status == 404:
                    raise FatalTransportError(f"no ingest WebSocket at {self.url} (HTTP 404)") from exc
                raise TransportError(f"WebSocket {self.url}: HTTP {status}") from exc
            except (OSError, InvalidHandshake) as exc:  # TimeoutError is an OSError
                raise TransportError(f"WebSocket {self.url}: {exc}") from exc
        return self._ws

    def _broken(self, exc: Exception) -> TransportError:
        from websockets.exceptions import ConnectionClosed

        self.close()
        if isinstance(exc, ConnectionClosed) and exc.rcvd is not None and exc.rcvd.code == 4401:
            return FatalTransportError("the server closed the WebSocket: gateway token refused (4401)")
        return TransportError(f"WebSocket {self.url}: {exc}")

    def send(self, payload: Payload) -> Reply:
        from websockets.exceptions import WebSocketException

        ws = self._socket()
        try:
            ws.send(payload.data if payload.binary else payload.data.decode())
            while True:
                reply = self._handle(ws.recv(timeout=self.timeout))
                if reply is not None:
                    return reply
        except (OSError, WebSocketException) as exc:  # TimeoutError is an OSError
            raise self._broken(exc) from exc

    def _handle(self, message: str | bytes) -> Reply | None:
        """A reply to our frame, or None after stashing a command or ignoring noise."""
        doc = _loads(message)
        if not isinstance(doc, dict):
            log.warning("ignored a WebSocket message that is not a JSON object: %.80r", message)
            return None
        kind = doc.get("type")
        if kind == "command":
            self._commands.append(doc)
            return None
        if kind == "ack" and "command" not in doc and "relay" not in doc:
            return Reply(True, doc.get("seq"), doc.get("status", "ok"), commands=self._take_commands())
        if kind == "error" and doc.get("field") != "relay" and "command" not in doc:
            error, field = doc.get("error"), doc.get("field")
            return Reply(False, doc.get("seq"), error=error, field=field, commands=self._take_commands())
        log.info("WebSocket message: %s", doc)
        return None

    def _take_commands(self) -> list[dict[str, Any]]:
        commands, self._commands = self._commands, []
        return commands

    def poll_commands(self) -> list[dict[str, Any]]:
        from websockets.exceptions import WebSocketException

        try:
            while self._ws is not None:
                reply = self._handle(self._ws.recv(timeout=0))
                if reply is not None:
                    log.info("reply outside a frame exchange: %s", reply)
        except TimeoutError:
            pass
        except (OSError, WebSocketException) as exc:
            log.warning("%s", self._broken(exc))
        return self._take_commands()

    def ack(self, doc: dict[str, Any]) -> None:
        from websockets.exceptions import WebSocketException

        try:
            self._socket().send(dumps(doc).decode())
        except TransportError as exc:
            log.warning("could not acknowledge command %s: %s", doc.get("command"), exc)
        except (OSError, WebSocketException) as exc:
            log.warning("could not acknowledge command %s: %s", doc.get("command"), self._broken(exc))

    def close(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass


# ----------------------------------------------------------------------------------- MQTT


class MqttTransport:
    """Frames published at QoS 1 over MQTT v5 (paho-mqtt 2.x, its network thread).

    The broker login is the gateway serial and token; the server, another client of the
    broker, reads the token from the message envelope ``{"token": ..., "frame": {...}}``. The
    PUBACK makes :meth:`send` succeed; the server's verdicts arrive later on the replies topic,
    in publishing order, and :meth:`take_replies` pairs them with what was published.
    """

    name = "MQTT"

    def __init__(self, mqtt_url: str, token: str, serial: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(mqtt_url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError(f"--mqtt-url must be mqtt(s)://host[:port], got {mqtt_url!r}")
        self.tls = parts.scheme in ("mqtts", "ssl")
        self.host, self.port = parts.hostname, parts.port or (8883 if self.tls else 1883)
        self.url = mqtt_url
        self.token = token
        self.serial = serial
        self.timeout = timeout
        self.topic_frames = f"infinity/{serial}/frames"
        self.topic_commands = f"infinity/{serial}/commands"
        self.topic_acks = f"infinity/{serial}/acks"
        self.topic_replies = f"infinity/{serial}/replies"
        self._client = None
        self._connected = threading.Event()
        self._answered = threading.Event()  # a CONNACK came, accepting or refusing
        self._refused: str | None = None
        self._commands: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._awaiting: deque[Payload] = deque(maxlen=1000)  # published, no reply yet

    def encode(self, frame: OutgoingFrame) -> Payload:
        return Payload(self.encode_doc(frame.to_doc()), frame.seq, t=frame.t)

    def encode_doc(self, doc: dict[str, Any]) -> bytes:
        return dumps({"token": self.token, "frame": doc})

    def _start(self):
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"simulator-{self.serial}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(self.serial, self.token)
        if self.tls:
            client.tls_set_context(ssl.create_default_context())
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise TransportError(f"MQTT {self.host}:{self.port}: {exc}") from exc
        client.loop_start()
        self._client = client
        self._answered.wait(self.timeout)
        if not self._connected.is_set():
            refused = self._refused
            self.close()
            if refused:
                raise FatalTransportError(f"the MQTT broker refused the gateway: {refused}")
            raise TransportError(f"MQTT {self.host}:{self.port}: no CONNACK within {self.timeout:g} s")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            client.disconnect()
            self._answered.set()
        else:
            self._refused = None
            # Ready only once the broker confirms the subscriptions: a reply or command sent
            # before that would be lost.
            client.subscribe([(self.topic_commands, 1), (self.topic_replies, 1)])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._connected.set()
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()

    def _on_message(self, client, userdata, message) -> None:
        doc = _loads(message.payload)
        if not isinstance(doc, dict):
            log.warning("ignored a message on %s that is not a JSON object", message.topic)
        elif message.topic == self.topic_replies:
            self._replies.put(doc)
        else:
            self._commands.put(doc)

    def send(self, payload: Payload) -> Reply:
        if self._client is None:
            self._start()
        if not self._connected.is_set():
            raise TransportError(f"MQTT {self.host}:{self.port}: not connected (reconnecting)")
        info = self._client.publish(self.topic_frames, payload.data, qos=1)
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise TransportError(f"MQTT publish failed: {exc}") from exc
        if not info.is_published():
            raise TransportError(f"MQTT {self.host}:{self.port}: no PUBACK within {self.timeout:g} s")
        self._awaiting.append(payload)
        return Reply(True, payload.seq, "published", commands=self.poll_commands())

    def awaiting_replies(self) -> int:
        """Payloads published whose verdict has not come back yet."""
        return len(self._awaiting)

    def take_replies(self) -> list[tuple[Payload, Reply]]:
        """The server's verdicts that arrived since the last call, with the payload each is about.

        Replies to acknowledgements are logged and skipped. A refused token is fatal.
        """
        verdicts = []
        while True:
            try:
                doc = self._replies.get_nowait()
            except queue.Empty:
                return verdicts
            if doc.get("type") == "ack" and "accepted" not in doc:
                log.info("the server took the acknowledgement of relay %s", doc.get("relay"))
                continue
            if doc.get("type") == "error" and doc.get("field") == "relay":
                log.warning("the server refused a relay acknowledgement: %s", doc.get("error"))
                continue
            if doc.get("type") == "error" and doc.get("field") == "token":
                raise FatalTransportError(f"the server refused the gateway token: {doc.get('error')}")
            if not self._awaiting:
                continue
            payload = self._awaiting.popleft()
            if doc.get("type") == "ack":
                receipt = (doc.get("accepted") or [{}])[0]
                verdicts.append((payload, Reply(True, receipt.get("seq", payload.seq), receipt.get("status", "ok"))))
            else:
                verdicts.append((payload, Reply(False, payload.seq, error=doc.get("error"), field=doc.get("field"))))

    def poll_commands(self) -> list[dict[str, Any]]:
        commands = []
        while True:
            try:
                commands.append(self._commands.get_nowait())
            except queue.Empty:
                return commands

    def ack(self, doc: dict[str, Any]) -> None:
        if self._client is None or not self._connected.is_set():
            log.warning("could not acknowledge command %s: MQTT not connected", doc.get("command"))
            return
        self._client.publish(self.topic_acks, dumps({**doc, "token": self.token}), qos=1)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._connected.clear()
        self._answered.clear()


def make_transport(
    kind: str, *, url: str, mqtt_url: str, token: str, serial: str, binary: bool = True, timeout: float = 10.0
) -> HttpTransport | WebSocketTransport | MqttTransport:
    """The transport named ``kind`` ("http", "ws" or "mqtt")."""
    if kind == "http":
        return HttpTransport(url, token, timeout=timeout)
    if kind == "ws":
        return WebSocketTransport(url, token, binary=binary, timeout=timeout)
    if kind == "mqtt":
        return MqttTransport(mqtt_url, token, serial, timeout=timeout)
    raise ValueError(f"unknown transport {kind!r}; use http, ws or mqtt")

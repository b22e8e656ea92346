"""The load: simulated gateways, browsers and a page prober, in a process of their own.

Started by :mod:`tools.loadtest.run` (``multiprocessing`` spawn) with everything precomputed:
each gateway's payload (its frame with ``seq`` and ``t`` patched per send, see
:mod:`tools.loadtest.frames`), each browser's session cookie. Driven over a pipe:

- ``("idle", seconds)``: the page prober alone; answers ``{"pages": (n, p50, p99), "errors"}``;
- ``("start",)``: browsers connect, then every gateway sends a frame every ``period_s``;
- ``("window", counted)``: the figures since the last window (and whether they count for the run);
- ``("stop",)``: no new frames; waits for the answers under way, closes; answers every
  gateway's sent and acknowledged ``seq`` numbers and the run's overall figures.

A gateway's frame ``k`` covers ``[t0_i + k * period_s, ... + duration)`` and is sent when it
ends, at its ``end_t``, as a device sends a frame once it has taken it; the gateways' phases are
spread evenly over the period. A live card's ``data-t`` is the ``end_t`` of the frame it shows
(``metering.live``), so the card's latency is its arrival time less its ``data-t``: the time
from the frame's sending to its card in the browser, with the load generator's own send lag
included (reported apart as well).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from tools.loadtest.stats import Windowed

DATA_T = re.compile(rb'data-t="([0-9.]+)"')
CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")
NUMBER = re.compile(r"\d+(\.\d+)?")
ACK_TIMEOUT_S = 20.0  # a reply later than this is counted as missing (the server answers 503 after 10 s)
WS_WINDOW = 8  # frames a WebSocket gateway sends before it waits for acknowledgements
RECONNECT_S = 1.0
CONNECT_CONCURRENCY = 20
PAGE_INTERVAL_S = 0.5  # one page a second per web process: enough samples, little load
STOP_WAIT_S = 25.0
COUNTED = ("ok", "gap", "late")  # statuses of a frame that was stored


@dataclass
class Gateway:
    index: int
    transport: str  # "ws", "http" or "mqtt"
    serial: str
    token: str
    payload: object  # frames.BinaryPayload or frames.JsonPayload
    port: int
    first_seq: int
    sent: dict[int, float] = field(default_factory=dict)  # seq -> wall time sent
    acked: dict[int, str] = field(default_factory=dict)  # seq -> status


@dataclass
class Browser:
    location_id: int
    cookie: str
    port: int


@dataclass
class Figures:
    """What happened since the last window."""

    acked: Counter = field(default_factory=Counter)  # status -> frames
    by_transport: Counter = field(default_factory=Counter)  # transport -> frames stored (ok/gap/late)
    errors: Counter = field(default_factory=Counter)  # kind -> count
    cards: int = 0


class Load:
    def __init__(self, config: dict) -> None:
        self.period_s = config["period_s"]
        self.duration_s = config["duration_s"]
        self.gateways = [Gateway(**g) for g in config["gateways"]]
        self.browsers = [Browser(**b) for b in config["browsers"]]
        self.pages = config["pages"]  # [(location id, cookie)]
        self.web_ports = config["web_ports"]
        self.mqtt = config["mqtt"]  # (host, port)
        self.figures = Figures()
        self.sent_total = 0
        self.answered_total = 0  # frames acknowledged, refused, or given up on (their socket closed)
        self.card_latency = Windowed()
        self.page_latency = Windowed()
        self.ack_latency = Windowed()
        self.send_lag = Windowed()
        self.sending = False
        self.lock = threading.Lock()  # MQTT replies arrive on paho's thread
        self.tasks: list[asyncio.Task] = []
        self.browser_sockets: list = []
        self.mqtt_client = None

    # -- helpers

    def unanswered(self, frames: int = 1) -> None:
        """Frames that got a refusal or no answer at all: no longer in flight."""
        with self.lock:
            self.answered_total += frames

    def error(self, kind: str, detail: str = "") -> None:
        """Count an error by its kind and its detail with the numbers masked ("waits for 10.0 s"
        and "waits for 20.1 s" are one error)."""
        if detail:
            kind = f"{kind}: {NUMBER.sub('#', detail[:100])}"
        with self.lock:
            self.figures.errors[kind] += 1

    def acknowledge(self, gateway: Gateway, seq: int, status: str, latency_s: float | None) -> None:
        with self.lock:
            self.answered_total += 1
            gateway.acked[seq] = status
            self.figures.acked[status] += 1
            if status in COUNTED:
                self.figures.by_transport[gateway.transport] += 1
            if latency_s is not None:
                self.ack_latency.add(latency_s)

    def cut(self, counted: bool) -> dict:
        with self.lock:
            figures, self.figures = self.figures, Figures()
            cards = self.card_latency.cut(counted)
            pages = self.page_latency.cut(counted)
            acks = self.ack_latency.cut(counted)
            lag = self.send_lag.cut(counted)
        return {
            "acked": dict(figures.acked),
            "by_transport": dict(figures.by_transport),
            "errors": dict(figures.errors),
            "cards": cards,
            "pages": pages,
            "acks": acks,
            "send_lag": lag,
            "browsers_open": sum(1 for s in self.browser_sockets if s is not None),
            "in_flight": self.sent_total - self.answered_total,
        }

    # -- page prober

    async def probe_pages(self, stop: asyncio.Event) -> None:
        connections = {port: HttpConnection(port) for port in self.web_ports}
        k = 0
        try:
            while not stop.is_set():
                location_id, cookie = self.pages[k % len(self.pages)]
                port = self.web_ports[k % len(self.web_ports)]
                k += 1
                started = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(
                        connections[port].request(
                            "GET", f"/locations/{location_id}/", {"Cookie": f"sessionid={cookie}"}
                        ),
                        30,
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    self.error(f"page: {type(exc).__name__}")
                    connections[port].close()
                    connections[port] = HttpConnection(port)
                    await asyncio.sleep(RECONNECT_S)
                    continue
                elapsed = time.perf_counter() - started
                if status == 200:
                    with self.lock:
                        self.page_latency.add(elapsed)
                else:
                    self.error(f"page: HTTP {status}")
                await asyncio.sleep(max(PAGE_INTERVAL_S - elapsed, 0.0))
        finally:
            for connection in connections.values():
                connection.close()

    # -- browsers

    async def open_browsers(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self.browser_sockets = [None] * len(self.browsers)

        async def one(number: int, browser: Browser) -> None:
            async with gate:
                await self.connect_browser(number, browser)
            self.tasks.append(asyncio.create_task(self.listen(number, browser)))

        await asyncio.gather(*(one(n, b) for n, b in enumerate(self.browsers)))

    async def connect_browser(self, number: int, browser: Browser) -> bool:
        import websockets

        try:
            self.browser_sockets[number] = await websockets.connect(
                f"ws://127.0.0.1:{browser.port}/ws/locations/{browser.location_id}/",
                additional_headers={
                    "Origin": f"http://127.0.0.1:{browser.port}",
                    "Cookie": f"sessionid={browser.cookie}",
                },
                open_timeout=30,
                ping_interval=None,
                max_size=None,
                compression=None,
            )
            return True
        except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
            self.browser_sockets[number] = None
            self.error(f"browser connect: {type(exc).__name__}")
            return False

    async def listen(self, number: int, browser: Browser) -> None:
        import websockets

        while True:
            socket_ = self.browser_sockets[number]
            if socket_ is None:
                await asyncio.sleep(RECONNECT_S)
                await self.connect_browser(number, browser)
                continue
            try:
                async for message in socket_:
                    now = time.time()
                    data = message.encode() if isinstance(message, str) else message
                    found = DATA_T.search(data, 0, 600)
                    if found:
                        with self.lock:
                            self.figures.cards += 1
                            self.card_latency.add(now - float(found[1]))
                code = socket_.close_code
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            self.browser_sockets[number] = None
            if not self.sending:
                return
            self.error(f"browser socket closed ({code})")

    # -- gateways

    def schedule(self, gateway: Gateway, t0: float, k: int) -> tuple[int, float, float]:
        """seq, t and sending time of the gateway's frame ``k``."""
        start = round(t0 + gateway.index * self.period_s / len(self.gateways) + k * self.period_s, 3)
        return gateway.first_seq + k, start, start + self.duration_s

    async def run_gateway(self, gateway: Gateway, t0: float) -> None:
        sender = {"ws": self.ws_sender, "http": self.http_sender, "mqtt": self.mqtt_sender}[gateway.transport]
        send = await sender(gateway)
        k = 0
        try:
            while self.sending:
                seq, t, at = self.schedule(gateway, t0, k)
                k += 1
                delay = at - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if not self.sending:
                        break
                sent_at = time.time()
                with self.lock:
                    self.send_lag.add(sent_at - at)
                gateway.sent[seq] = sent_at
                with self.lock:
                    self.sent_total += 1
                await send(seq, t, sent_at)
        finally:
            await send(None, None, None)  # close

    async def ws_sender(self, gateway: Gateway):
        """Frames over the gateway's ingest WebSocket, each sent on time while fewer than
        :data:`WS_WINDOW` wait for their acknowledgement (read by a task of their own): the
        offered load stays one frame a second when the server is slow, and the backlog shows it."""
        import websockets

        window = asyncio.Semaphore(WS_WINDOW)
        in_flight: dict[int, float] = {}  # seq -> sent at
        state: dict = {"socket": None, "reader": None}

        def settle(seq) -> float | None:
            sent_at = in_flight.pop(seq, None)
            if sent_at is not None:
                window.release()
            return sent_at

        async def read(socket_) -> None:
            try:
                async for message in socket_:
                    reply = orjson.loads(message)
                    sent_at = settle(reply.get("seq"))
                    if reply.get("type") == "ack":
                        latency = time.time() - sent_at if sent_at is not None else None
                        self.acknowledge(gateway, reply["seq"], reply["status"], latency)
                    else:
                        self.unanswered()
                        self.error(f"ws gateway: HTTP {reply.get('status')}", str(reply.get("error")))
            except websockets.WebSocketException as exc:
                if self.sending:
                    self.error(f"ws gateway: {type(exc).__name__}")
            finally:  # frames still waiting get no acknowledgement on this socket
                for seq in list(in_flight):
                    settle(seq)
                    self.unanswered()
                if state["socket"] is socket_:
                    state["socket"] = None

        async def drop_socket() -> None:
            socket_, state["socket"] = state["socket"], None
            if socket_ is not None:
                await socket_.close()
            if state["reader"] is not None:
                await asyncio.gather(state["reader"], return_exceptions=True)

        async def send(seq, t, sent_at) -> None:
            if seq is None:  # the end: wait for the answers under way, then close
                deadline = time.monotonic() + ACK_TIMEOUT_S
                while in_flight and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                await drop_socket()
                return
            try:
                await asyncio.wait_for(window.acquire(), ACK_TIMEOUT_S)
            except TimeoutError:
                self.unanswered()  # this one was never sent
                self.error("ws gateway: no acknowledgement in time", f"{WS_WINDOW} frames waited {ACK_TIMEOUT_S} s")
                await drop_socket()
                return
            in_flight[seq] = sent_at
            try:
                if state["socket"] is None:
                    state["socket"] = await websockets.connect(
                        f"ws://127.0.0.1:{gateway.port}/ws/ingest/",
                        additional_headers={"Authorization": f"Bearer {gateway.token}"},
                        max_size=None,
                        compression=None,
                        open_timeout=30,
                    )
                    state["reader"] = asyncio.create_task(read(state["socket"]))
                await state["socket"].send(gateway.payload.make(seq, t))
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                if settle(seq) is not None:
                    self.unanswered()
                self.error(f"ws gateway: {type(exc).__name__}")
                await drop_socket()

        return send

    async def http_sender(self, gateway: Gateway):
        state = {"connection": HttpConnection(gateway.port)}
        headers = {"Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json"}

        async def send(seq, t, sent_at) -> None:
            if seq is None:
                state["connection"].close()
                return
            try:
                status, body = await asyncio.wait_for(
                    state["connection"].request("POST", "/api/v1/ingest/frames", headers, gateway.payload.make(seq, t)),
                    ACK_TIMEOUT_S,
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.unanswered()
                self.error(f"http gateway: {type(exc).__name__}")
                state["connection"].close()
                state["connection"] = HttpConnection(gateway.port)
                return
            if status != 200:
                self.unanswered()
                self.error(f"http gateway: HTTP {status}")
                return
            for receipt in orjson.loads(body)["accepted"]:
                self.acknowledge(gateway, receipt["seq"], receipt["status"], time.time() - sent_at)

        return send

    async def mqtt_sender(self, gateway: Gateway):
        client = self.mqtt_connect()
        topic = f"infinity/{gateway.serial}/frames"

        async def send(seq, t, sent_at) -> None:
            if seq is None:
                return
            result = client.publish(topic, gateway.payload.make(seq, t), qos=1)
            if result.rc != 0:
                self.unanswered()
                self.error(f"mqtt gateway: publish rc {result.rc}")

        return send

    def mqtt_connect(self):
        """One MQTT connection for all MQTT gateways, subscribed to their replies."""
        if self.mqtt_client is not None:
            return self.mqtt_client
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        by_serial = {g.serial: g for g in self.gateways if g.transport == "mqtt"}
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        subscribed = threading.Event()

        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            client.subscribe("infinity/+/replies", qos=0)

        def on_message(client, userdata, message) -> None:
            now = time.time()
            gateway = by_serial.get(message.topic.split("/")[1])
            if gateway is None:
                return
            reply = orjson.loads(message.payload)
            if reply.get("type") != "ack":
                self.unanswered()
                self.error(f"mqtt gateway: HTTP {reply.get('status')}", str(reply.get("error")))
                return
            for receipt in reply["accepted"]:
                sent_at = gateway.sent.get(receipt["seq"])
                self.acknowledge(gateway, receipt["seq"], receipt["status"], now - sent_at if sent_at else None)

        client.on_connect = on_connect
        client.on_message = on_message
        client.on_subscribe = lambda *args, **kwargs: subscribed.set()
        client.max_queued_messages_set(0)
        client.connect(*self.mqtt, keepalive=30)
        client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the MQTT broker did not confirm the replies subscription")
        self.mqtt_client = client
        return client

    # -- the control loop

    async def serve(self, control) -> None:
        loop = asyncio.get_running_loop()
        prober_stop = asyncio.Event()
        prober = None
        gateway_tasks: list[asyncio.Task] = []
        while True:
            command = await loop.run_in_executor(None, control.recv)
            kind = command[0]
            if kind == "idle":
                stop = asyncio.Event()
                task = asyncio.create_task(self.probe_pages(stop))
                await asyncio.sleep(command[1])
                stop.set()
                await task
                control.send(self.cut(counted=False))
            elif kind == "start":
                self.sending = True
                await self.open_browsers()
                if any(g.transport == "mqtt" for g in self.gateways):
                    await loop.run_in_executor(None, self.mqtt_connect)
                t0 = time.time() + 1.0
                prober = asyncio.create_task(self.probe_pages(prober_stop))
                gateway_tasks = [asyncio.create_task(self.run_gateway(g, t0)) for g in self.gateways]
                control.send(("started", t0, sum(1 for s in self.browser_sockets if s is not None)))
            elif kind == "window":
                control.send(self.cut(counted=command[1]))
            elif kind == "stop":
                self.sending = False
                await asyncio.wait(gateway_tasks, timeout=STOP_WAIT_S)
                await self.wait_for_mqtt_replies()
                prober_stop.set()
                if prober is not None:
                    await prober
                last = self.cut(counted=command[1] if len(command) > 1 else True)
                await self.close()
                control.send(self.final(last))
                return

    async def wait_for_mqtt_replies(self) -> None:
        deadline = time.monotonic() + STOP_WAIT_S
        mqtt_gateways = [g for g in self.gateways if g.transport == "mqtt"]
        while time.monotonic() < deadline and any(len(g.acked) < len(g.sent) for g in mqtt_gateways):
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def close_one(socket_) -> None:
            async with gate:
                await socket_.close()

        await asyncio.gather(*(close_one(s) for s in self.browser_sockets if s is not None), return_exceptions=True)
        if self.mqtt_client is not None:
            self.mqtt_client.disconnect()
            self.mqtt_client.loop_stop()

    def final(self, last: dict) -> dict:
        return {
            "last": last,
            "gateways": [
                {"index": g.index, "transport": g.transport, "sent": sorted(g.sent), "acked": g.acked}
                for g in self.gateways
            ],
            "cards": self.card_latency.overall(),
            "pages": self.page_latency.overall(),
            "acks": self.ack_latency.overall(),
            "send_lag": self.send_lag.overall(),
        }


class HttpConnection:
    """A keep-alive HTTP/1.1 connection, one request at a time (no dependency, little CPU)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = CONTENT_LENGTH.search(head)
        if length is None:
            raise OSError("response without Content-Length")
        payload = await self.reader.readexactly(int(length[1]))
        return int(head.split(b" ", 2)[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def run(config: dict, control) -> None:
    """The load process's entry point (``multiprocessing`` spawn)."""
    asyncio.run(Load(config).serve(control))

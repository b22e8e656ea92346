"""The production roles as processes of their own, and the outside world the fault tests play.

:class:`Stack` starts web processes (``python -m config.server``), ``run_ingest`` workers and
``ingest_mqtt`` on the private servers of :mod:`tests.faults.services`, as docs/deploy.md runs
them. :class:`Device` is a gateway sending frames of a known, constant power over HTTP and
resending what is not acknowledged (:class:`MqttDevice` over MQTT); :class:`RegisterWatch` samples a
Power Box's registers while it runs, :class:`LeaseWatch` who holds each shard; :class:`CardSocket`
is a browser's card socket that reconnects as the page's htmx ws extension does.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import redis
import websockets

from tests.factories import star_frame
from tests.faults.services import free_port, port_open, wait_until

BASE_DIR = Path(__file__).resolve().parents[2]
SECRET_KEY = "fault-tests-secret-key-" + "x" * 40
SHARDS = 16  # run_ingest's default (INGEST_SHARDS)
# How long a process may take to start: Django's start-up takes seconds of CPU, many more on a
# loaded machine (two cores shared with other test runs). A bound on the set-up, not on a fault's
# outcome: those keep the bounds the issue and the docs promise.
STARTUP_S = 120.0

N = 1280  # samples per frame: 0.2 s at 6,400 Hz, ten 50 Hz cycles
FRAME_S = N / 6400
CYCLE_S = 0.02
# star_frame's house: Grid on CTs A-C, Heat pump on D, constant powers (W).
LOAD_W = {"Grid": 1000.0 + 500.0 + 250.0, "Heat pump": 800.0}
# A device's wait for an answer before it gives up and sends the frame again.
DEVICE_TIMEOUT_S = 15.0


class Role:
    """One process of the stack, its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict, directory: Path):
        self.name = name
        self.command = command
        self.env = env
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                self.command, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Stack:
    """Web processes and workers on one database, one Redis and (optionally) one broker."""

    def __init__(self, directory: Path, database_url: str, redis_url: str | None, mqtt_url: str | None = None):
        self.directory = directory
        self.database_url = database_url
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "0",
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "SECURE_HSTS_SECONDS": "0",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url or "",
            "INGEST_STREAM_URL": redis_url or "",
            "INGEST_PREFIX": "ingest",
            "INGEST_SHARDS": str(SHARDS),
            "INGEST_REPLY_TIMEOUT_S": "3",
            "LOG_LEVEL": "INFO",
            "VAR_DIR": str(directory),
            "PYTHONUNBUFFERED": "1",
        }
        if mqtt_url:
            self.env["MQTT_URL"] = mqtt_url
        else:
            self.env.pop("MQTT_URL", None)
        self.redis_url = redis_url
        self.roles: list[Role] = []

    def run(self, *args: str) -> str:
        """``python ARGS`` in the stack's environment, to its end; its output."""
        done = subprocess.run(
            [sys.executable, *args], cwd=BASE_DIR, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def seed(self, *prefixes: str, migrate: bool = False) -> dict:
        """Test houses (tests.faults.seed) in the stack's database, migrated first if asked."""
        args = ["-m", "tests.faults.seed", *(["--migrate"] if migrate else [])]
        for prefix in prefixes:
            args += ["--location", prefix]
        return orjson.loads(self.run(*args).strip().splitlines()[-1])

    def _role(self, name: str, command: list[str]) -> Role:
        role = Role(name, [sys.executable, *command], self.env, self.directory)
        self.roles.append(role)
        return role

    def web(self, port: int | None = None) -> Web:
        port = port or free_port()
        role = self._role(
            f"web-{port}", ["-m", "config.server", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
        )
        return Web(role, port)

    def worker(self, name: str, lease_s: float = 1.0) -> Role:
        return self._role(name, ["manage.py", "run_ingest", "--name", name, "--lease-s", str(lease_s)])

    def wait_for_workers(self, *names: str, timeout_s: float = STARTUP_S) -> None:
        """Until the workers ``names`` hold an equal share of the shards each: a shard that moves
        to another worker loses its Power Boxes' leftover samples, which a test must not mix up
        with the fault it makes."""
        client = redis.Redis.from_url(self.redis_url)
        keys = [f"ingest:lease:{shard}" for shard in range(SHARDS)]

        def settled() -> bool:
            holders = [holder.decode() if holder else None for holder in client.mget(keys)]
            return all(holders.count(name) == SHARDS // len(names) for name in names)

        try:
            wait_until(settled, timeout_s, f"workers {', '.join(names)} to share the shards")
        finally:
            client.close()

    def ingest_mqtt(self) -> Role:
        return self._role("ingest_mqtt", ["manage.py", "ingest_mqtt"])

    def stop(self) -> None:
        for role in self.roles:  # all at once: each takes a moment to finish cleanly
            if role.process.poll() is None:
                role.process.send_signal(signal.SIGTERM)
        for role in self.roles:
            role.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {role.name}\n{role.output()[-3000:]}" for role in self.roles)


@dataclass
class Web:
    role: Role
    port: int

    def wait_ready(self, timeout_s: float = STARTUP_S) -> float:
        return wait_until(lambda: self.answers(), timeout_s, f"the web process on port {self.port}")

    def answers(self) -> bool:
        if self.role.process.poll() is not None:
            raise AssertionError(f"web process died: {self.role.output()[-3000:]}")
        if not port_open(self.port):
            return False
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/accounts/login/")
            return connection.getresponse().status == 200
        except OSError:
            return False


# ------------------------------------------------------------------------------------ devices


@dataclass
class Answer:
    seq: int
    status: int | None  # HTTP status, None for a lost connection
    receipt: str  # "ok", "duplicate"... for 200, else the error
    sent_at: float = 0.0
    at: float = field(default_factory=time.monotonic)  # answered (or given up)


class Device:
    """A gateway sending one Power Box's frames over HTTP, each until it is acknowledged.

    Every frame carries the same constant powers (star_frame's house), so the energy of ``n``
    frames is known: ``LOAD_W * n * FRAME_S``. ``answers`` keeps every answer, with its time.
    """

    def __init__(self, port: int, token: str, prefix: str, loads_w: dict | None = None):
        self.port = port
        self.token = token
        self.prefix = prefix
        self.serial = f"PB-{prefix}"
        self.t0 = round(time.time()) - 600.0
        self.template = star_frame(serial_prefix=prefix, seq=1, t=self.t0, n=N, loads_w=loads_w)
        self.answers: list[Answer] = []
        self.sent = 0  # frames acknowledged so far: 1..sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_loads(self, loads_w: dict) -> None:
        """From the next frame on, these powers (W, var) per CT letter."""
        self.template = star_frame(serial_prefix=self.prefix, seq=1, t=self.t0, n=N, loads_w=loads_w)

    def body(self, seq: int) -> bytes:
        return orjson.dumps({**self.template, "seq": seq, "t": self.t0 + (seq - 1) * FRAME_S})

    def post(self, seq: int) -> Answer:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEVICE_TIMEOUT_S)
            connection.request(
                "POST",
                "/api/v1/ingest/frames",
                body=self.body(seq),
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            payload = response.read()
            connection.close()
        except OSError as exc:
            return Answer(seq, None, f"{type(exc).__name__}: {exc}")
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return Answer(seq, response.status, payload[:200].decode(errors="replace"))
        if response.status == 200:
            return Answer(seq, 200, doc["accepted"][0]["status"])
        return Answer(seq, response.status, doc.get("error", ""))

    def send(self, seq: int, pause_s: float = 0.2) -> Answer:
        """Send until acknowledged, as a gateway does after a 5xx or a lost connection (the test
        then asserts which errors it saw)."""
        while True:
            sent_at = time.monotonic()
            answer = self.post(seq)
            answer.sent_at = sent_at
            self.answers.append(answer)
            if answer.status == 200:
                self.sent = max(self.sent, seq)
                return answer
            if answer.status is not None and answer.status < 500:
                raise AssertionError(f"frame {seq} refused: {answer}")  # a device would not resend it
            time.sleep(pause_s)

    def start(self, interval_s: float = 0.05) -> None:
        """Send frames one after the other in a thread of its own until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                self.send(self.sent + 1)
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name=f"device-{self.prefix}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the frame in flight is acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), f"device {self.prefix} still waits for an acknowledgement"

    def sent_between(self, start: float, end: float) -> list[Answer]:
        """The answers to what was sent from ``start`` on and answered before ``end``."""
        return [answer for answer in self.answers if answer.sent_at >= start and answer.at < end]

    def acknowledged_after(self, moment: float) -> Answer:
        return next(answer for answer in self.answers if answer.status == 200 and answer.at > moment)

    def refusals(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status != 200]

    def wait_for_acks(self, count: int, timeout_s: float = 30) -> None:
        first = self.sent
        wait_until(lambda: self.sent >= first + count, timeout_s, f"{count} frames of {self.prefix} acknowledged")


# ------------------------------------------------------------------------------------ registers


class Registers:
    """A Power Box's ingest state read straight from the database (what the workers committed)."""

    QUERY = (
        "SELECT s.frames, s.duplicates, s.gaps, s.registers FROM metering_powerboxstate s "
        "JOIN devices_powerbox p ON p.id = s.powerbox_id WHERE p.serial = %s"
    )

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.connection: psycopg.Connection | None = None

    def read(self, serial: str) -> dict | None:
        if self.connection is None or self.connection.closed:
            self.connection = psycopg.connect(self.database_url, autocommit=True, connect_timeout=2)
        try:
            row = self.connection.execute(self.QUERY, (serial,)).fetchone()
        except psycopg.Error:
            self.connection.close()
            raise
        if row is None:
            return None
        frames, duplicates, gaps, registers = row
        return {"frames": frames, "duplicates": duplicates, "gaps": gaps, "registers": registers}

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def flat_registers(registers: dict) -> dict[str, float]:
    """``{"load": {"Grid": [imp, exp]}, "ct": {...}}`` as ``{"load Grid import": imp, ...}``."""
    flat = {}
    for group, named in registers.items():
        for name, (imported, exported) in named.items():
            flat[f"{group} {name} import"] = imported
            flat[f"{group} {name} export"] = exported
    return flat


def frame_energy_wh(power_w: float, frames: float) -> float:
    return power_w * frames * FRAME_S / 3600


def assert_counted_once(state: dict, frames: int, starts: int) -> None:
    """Each load's import register holds the energy of ``frames`` frames, counted once.

    Each worker that starts metering the Power Box (the first, each takeover, each restart)
    lacks the leftover samples of the frame before: under one cycle each (docs/ingest.md). A
    frame counted twice or lost would be a fifth of a second: ten cycles.
    """
    loads = state["registers"]["load"]
    for load, power_w in LOAD_W.items():
        expected_wh = frame_energy_wh(power_w, frames)
        tolerance_wh = 2e-3 * expected_wh + power_w * CYCLE_S * starts / 3600
        got_wh = loads[load][0]
        assert abs(got_wh - expected_wh) <= tolerance_wh, (
            f"{load}: {got_wh:.5f} Wh, the {frames} frames sent hold {expected_wh:.5f} Wh "
            f"(± {tolerance_wh:.5f}: {(got_wh - expected_wh) / frame_energy_wh(power_w, 1):+.2f} frames)"
        )


class RegisterWatch:
    """Samples a Power Box's registers every 50 ms in a thread: none may ever go negative, go
    down (a reset) or jump (grow by more than the frames counted since the sample before)."""

    def __init__(self, database_url: str, serial: str, interval_s: float = 0.05):
        self.registers = Registers(database_url)
        self.serial = serial
        self.interval_s = interval_s
        self.samples: list[tuple[float, int, dict[str, float]]] = []
        self.read_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"registers-{serial}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                state = self.registers.read(self.serial)
            except psycopg.Error:
                self.read_errors += 1  # the database is restarting
                state = None
            if state is not None:
                self.samples.append((time.monotonic(), state["frames"], flat_registers(state["registers"])))
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.registers.close()

    def problems(self) -> list[str]:
        """Every sample against the one before it."""
        found = []
        most_w = max(LOAD_W.values())
        for (_, frames_before, before), (_, frames, now) in zip(self.samples, self.samples[1:]):
            if frames < frames_before:
                found.append(f"frame count went down: {frames_before} -> {frames}")
            # A frame adds its own energy plus, at most, the leftover of the one before (< 1 cycle).
            bound_wh = (frames - frames_before) * frame_energy_wh(most_w, 1 + CYCLE_S / FRAME_S) + 1e-9
            for name, value in now.items():
                previous = before.get(name, 0.0)
                if value < 0:
                    found.append(f"{name} negative: {value}")
                if value < previous - 1e-9:
                    found.append(f"{name} went down: {previous} -> {value}")
                if value - previous > bound_wh:
                    found.append(f"{name} jumped by {value - previous:.5f} Wh with {frames - frames_before} frames")
        return found


class LeaseWatch:
    """Samples which worker holds each shard every 50 ms in a thread; ``moves()`` lists every
    change (a shard that moved or went without a lease), the first sample being the reference."""

    def __init__(self, redis_url: str, interval_s: float = 0.05):
        self.client = redis.Redis.from_url(redis_url)
        self.keys = [f"ingest:lease:{shard}" for shard in range(SHARDS)]
        self.interval_s = interval_s
        self.samples: list[list[bytes | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.client.mget(self.keys))
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()

    def moves(self) -> list[str]:
        first = self.samples[0]
        return sorted(
            {
                f"shard {shard}: {first[shard]!r} -> {holder!r}"
                for sample in self.samples
                for shard, holder in enumerate(sample)
                if holder != first[shard]
            }
        )


# ------------------------------------------------------------------------------------ browsers


class CardSocket:
    """A signed-in browser's card socket (``/ws/locations/<id>/``) in a thread of its own.

    It reconnects as the page's htmx ws extension (hx-ws 2) does: after an abnormal close (1006,
    1011-1013) only, following a "full jitter" pause, a random time up to 1 s doubled per failed
    attempt (at most 64 s), counted again from 0 once a socket opens. ``pushes`` holds the time
    of every live-values card it received.
    """

    RECONNECT_CODES = {1006, 1011, 1012, 1013}

    def __init__(self, port: int, location_id: int, session: str):
        self.url = f"ws://127.0.0.1:{port}/ws/locations/{location_id}/"
        self.headers = {"Cookie": f"sessionid={session}", "Origin": f"http://127.0.0.1:{port}"}
        self.pushes: list[float] = []
        self.opened: list[float] = []
        self.closes: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="card-socket", daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        jitter = random.Random(11)  # the same pauses in every run
        retries = 0
        while not self._stop.is_set():
            opened = len(self.opened)
            code = await self._once()
            self.closes.append((time.monotonic(), code))
            if code not in self.RECONNECT_CODES:
                return
            retries = 0 if len(self.opened) > opened else retries
            await asyncio.sleep(jitter.uniform(0, 2 ** min(retries, 6)))
            retries += 1

    async def _once(self) -> int | None:
        try:
            async with websockets.connect(self.url, additional_headers=self.headers, open_timeout=5) as socket:
                self.opened.append(time.monotonic())
                while not self._stop.is_set():
                    try:
                        message = await asyncio.wait_for(socket.recv(), 0.2)
                    except TimeoutError:
                        continue
                    if 'id="card-live-values"' in message:
                        self.pushes.append(time.monotonic())
                return 1000
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else 1006
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            return 1006  # the server is not there: what a browser reports too

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def pushed_after(self, moment: float) -> float | None:
        return next((at for at in self.pushes if at > moment), None)


class MqttDevice(Device):
    """A gateway sending its frames over MQTT (QoS 1) and reading its replies topic; a frame not
    answered within ``wait_s`` is published again, as after a lost connection."""

    def __init__(self, mqtt_url: str, gateway_serial: str, token: str, prefix: str, wait_s: float = 2.0):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        super().__init__(0, token, prefix)
        self.gateway_serial = gateway_serial
        self.wait_s = wait_s
        self.replies: list[dict] = []
        self.connected: list[float] = []
        self._replied = threading.Condition()
        address = mqtt_url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)  # a device retries promptly
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(address[0], int(address[1]), keepalive=10)
        self.client.loop_start()
        wait_until(lambda: self.connected, 10, "the device's MQTT connection")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(f"infinity/{self.gateway_serial}/replies", qos=1)
        self.connected.append(time.monotonic())

    def _on_message(self, client, userdata, message) -> None:
        with self._replied:
            self.replies.append(orjson.loads(message.payload))
            self._replied.notify_all()

    def post(self, seq: int) -> Answer:
        envelope = {"token": self.token, "frame": orjson.loads(self.body(seq))}
        with self._replied:
            seen = len(self.replies)
        info = self.client.publish(f"infinity/{self.gateway_serial}/frames", orjson.dumps(envelope), qos=1)
        if info.rc != 0:
            time.sleep(self.wait_s)
            return Answer(seq, None, f"not published (paho rc {info.rc})")
        deadline = time.monotonic() + self.wait_s
        with self._replied:
            while True:
                for reply in self.replies[seen:]:
                    if reply.get("type") == "ack" and reply["accepted"][0]["seq"] == seq:
                        return Answer(seq, 200, reply["accepted"][0]["status"])
                    if reply.get("type") == "error":
                        return Answer(seq, reply.get("status", 500), reply.get("error", ""))
                seen = len(self.replies)
                left = deadline - time.monotonic()
                if left <= 0:
                    return Answer(seq, None, f"no reply within {self.wait_s:g} s")
                self._replied.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

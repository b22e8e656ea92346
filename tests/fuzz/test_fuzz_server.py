"""A real server (``python -m config.server``, daphne) under a stream of hostile requests keeps
answering, and its memory stays bounded.

The server runs on a free loopback port with a throwaway SQLite database (whatever
DATABASE_URL says: this is about the process, not the database). The stream is bounded in count
and time: oversized and lying Content-Lengths, 20 MB bodies with and without a token, huge seq
and pulse jumps, hypothesis's hostile JSON bodies and binary WebSocket messages, a WebSocket
message over the 8 MiB frame limit. Then a valid frame must still be accepted, and the server's
resident memory must have grown by less than :data:`RSS_GROWTH_LIMIT_KB`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import budget
from tests.fuzz.strategies import FS_HZ, N_SAMPLES, T0, binary_case, dumps, frame_doc, json_case

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[2]
RSS_GROWTH_LIMIT_KB = 150 * 1024
BIG_BODY_BYTES = 20 * 1024 * 1024
# Refusing the 20 MB bodies must not read one of them: the peak stays below half of one.
PEAK_GROWTH_LIMIT_KB = BIG_BODY_BYTES // 2 // 1024
ANSWER_TIMEOUT_S = 10.0
INGEST = "/api/v1/ingest/frames"

# The test house of tests.factories.make_location as an installation file.
HOUSE = {
    "location": {"name": "Fuzz house", "timezone": "Europe/Brussels", "topology": "3P+N", "frequency": 50},
    "gateway": {"model": "genius", "serial": "GW-T", "connectivity": "ethernet"},
    "powerbox": {"serial": "PB-T"},
    "ct_hubs": [{"serial": "CTH-T", "inputs": dict.fromkeys("ABCD", "AC-CT-100A")}],
    "input_modules": [
        {
            "serial": "INP-T",
            "inputs": {
                "1": {"name": "Gas", "mode": "pulse", "unit": "m3", "pulses_per_unit": 100},
                "2": {"name": "Front door", "mode": "status"},
            },
        }
    ],
    "loads": [
        {
            "name": "Grid",
            "kind": "grid",
            "cts": [{"ct": f"CTH-T/{letter}", "phase": phase} for letter, phase in zip("ABC", ("L1", "L2", "L3"))],
        },
        {"name": "Heat pump", "kind": "appliance", "cts": [{"ct": "CTH-T/D", "phase": "L1"}]},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory now (``VmRSS``) or at its peak since the last reset (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


def reset_peak_rss(pid: int) -> None:
    """Start ``VmHWM`` again from the current resident memory (Linux, the process's owner)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Server:
    def __init__(self, var_dir: Path):
        self.var_dir = var_dir
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MQTT_URL"}}
        self.env.update(
            DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(var_dir), SECRET_KEY="fuzz", DEBUG="0",
            ALLOWED_HOSTS="127.0.0.1,localhost", SECURE_SSL_REDIRECT="0", LOG_LEVEL="ERROR",
        )  # fmt: skip
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def prepare(self) -> str:
        """Migrate, install the house; the gateway's token."""
        self.manage("migrate", "--no-input", "-v", "0")
        path = self.var_dir / "house.json"
        path.write_text(json.dumps(HOUSE))
        return json.loads(self.manage("import_installation", str(path), "--json").strip().splitlines()[-1])[
            "gateway_token"
        ]

    def start(self) -> None:
        log = open(self.var_dir / "server.log", "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "config.server", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"the server did not start: {self.log()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return (self.var_dir / "server.log").read_text()[-3000:]

    def post(self, body: bytes, token: str | None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=ANSWER_TIMEOUT_S)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request("POST", INGEST, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def raw_request(self, headers: dict[str, str], body_bytes: int, chunked: bool = False) -> tuple[int | None, float]:
        """Send the headers, then up to ``body_bytes`` of body while the server listens; (status, seconds).

        The server may answer and close before the body is sent, as it should for a body it
        refuses anyway; ``None`` when no answer came within :data:`ANSWER_TIMEOUT_S`.
        """
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_TIMEOUT_S) as s:
            head = f"POST {INGEST} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
            s.sendall(head.encode())
            chunk = b"x" * (1 << 20)
            if chunked:
                chunk = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            sent = 0
            try:
                while sent < body_bytes:
                    s.sendall(chunk[: body_bytes - sent])
                    sent += len(chunk)
                if chunked:
                    s.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed early
            try:
                first = s.recv(64)
            except OSError:
                return None, time.monotonic() - started
        parts = first.split()
        status = int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else None
        return status, time.monotonic() - started


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path)
    token = running.prepare()
    running.start()
    try:
        yield running, token
    finally:
        running.stop()


def test_it_keeps_answering_hostile_requests_in_bounded_memory(server):
    import websockets.sync.client as ws

    running, token = server
    problems: list[str] = []
    sent = {"json": 0, "binary": 0}
    seq = iter(range(1, 10_000))
    frames_sent = iter(range(10_000))  # every frame starts where the previous one ended

    def valid(n: int | None = None, pulses: int = 1000) -> tuple[int, bytes]:
        t = T0 + next(frames_sent) * N_SAMPLES / FS_HZ
        return running.post(dumps(frame_doc(next(seq) if n is None else n, t, pulses=pulses)), token)

    for _ in range(5):
        status, content = valid()
        assert status == 200, content
    baseline_kb = rss_kb(running.process.pid)
    # A body read whole and freed afterwards leaves VmRSS as it was: its peak shows it.
    reset_peak_rss(running.process.pid)

    for _round in range(3):
        # A Content-Length the body will never reach: refused on the headers, not after waiting.
        status, seconds = running.raw_request(
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Length": str(10**12)}, 0
        )
        if status != 413:
            problems.append(f"Content-Length 10**12 without a body: {status} after {seconds:.1f} s, expected 413")
        bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for headers, chunked, wanted in (
            ({"Content-Type": "application/json", "Content-Length": str(BIG_BODY_BYTES)}, False, {401}),
            ({**bearer, "Content-Length": str(BIG_BODY_BYTES)}, False, {413}),
            ({**bearer, "Transfer-Encoding": "chunked"}, True, {413}),
            ({**bearer, "Content-Length": "-1"}, False, set(range(400, 500))),
            ({**bearer, "Content-Length": "lots"}, False, set(range(400, 500))),
        ):
            status, seconds = running.raw_request(headers, BIG_BODY_BYTES, chunked)
            if status not in wanted:
                shown = {k: v for k, v in headers.items() if k != "Authorization"} | {
                    "token": "Authorization" in headers
                }
                problems.append(f"20 MB body {shown}: {status} after {seconds:.1f} s, expected {min(wanted)}")
        # Huge seq and pulse jumps: answered at once, whatever the size of the jump.
        for n, pulses in ((2**40, 0), (2**53 - 2, 2**53 - 1), (2**53 - 1, 0), (1, 2**52)):
            started = time.monotonic()
            try:
                status, content = valid(n, pulses)
            except OSError as exc:
                problems.append(f"seq {n}, pulses {pulses}: no answer ({exc})")
                continue
            if status >= 500 or time.monotonic() - started > 5:
                problems.append(f"seq {n}, pulses {pulses}: {status} after {time.monotonic() - started:.1f} s")

    refused_peak_kb = rss_kb(running.process.pid, "VmHWM") - baseline_kb
    assert refused_peak_kb < PEAK_GROWTH_LIMIT_KB, (
        f"refusing 20 MB bodies took the server {refused_peak_kb / 1024:.0f} MB above its resting memory"
    )

    @settings(max_examples=budget(100))
    @given(case=json_case, with_token=st.booleans())
    def hostile_json(case, with_token):
        sent["json"] += 1
        try:
            status, content = running.post(case.body, token if with_token else None)
        except OSError as exc:
            problems.append(f"no answer to {case!r}: {exc}")
            return
        if status != 200 and not (400 <= status < 500 and orjson.loads(content).get("error")):
            problems.append(f"{status} {content[:200]!r} for {case!r}")

    hostile_json()

    url = f"ws://127.0.0.1:{running.port}/ws/ingest/"
    auth = {"Authorization": f"Bearer {token}"}
    with ws.connect(url, additional_headers=auth, max_size=None, open_timeout=10) as socket_:

        @settings(max_examples=budget(100))
        @given(case=binary_case())
        def hostile_binary(case):
            sent["binary"] += 1
            socket_.send(case.body)
            reply = orjson.loads(socket_.recv(timeout=ANSWER_TIMEOUT_S))
            if reply.get("type") not in ("ack", "error") or (reply["type"] == "error" and not reply.get("error")):
                problems.append(f"reply {reply} to {case!r}")

        try:
            hostile_binary()
        except Exception as exc:  # noqa: BLE001 - a closed or silent socket is the finding
            problems.append(f"the ingest socket failed during hostile binary messages: {type(exc).__name__}: {exc}")

    # Over the 8 MiB frame limit: an error reply or a close for a message too big, no crash.
    with ws.connect(url, additional_headers=auth, max_size=None, open_timeout=10) as socket_:
        try:
            socket_.send(b"IFB1" + bytes(9 * 1024 * 1024))
            reply = orjson.loads(socket_.recv(timeout=ANSWER_TIMEOUT_S))
            if reply.get("type") != "error":
                problems.append(f"a 9 MiB binary message got {reply}")
        except Exception as exc:  # noqa: BLE001
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            if code not in (1009, 1008):
                problems.append(f"a 9 MiB binary message: {type(exc).__name__}: {exc}")

    assert running.process.poll() is None, f"the server died: {running.log()}"
    status, content = valid()
    assert status == 200, f"a valid frame after the hostile stream: {status} {content[:300]!r}"
    growth_kb = rss_kb(running.process.pid) - baseline_kb
    assert growth_kb < RSS_GROWTH_LIMIT_KB, f"the server grew by {growth_kb / 1024:.0f} MB"
    assert not problems, "\n".join(problems)
    assert sent["json"] >= 50 and sent["binary"] >= 50, sent  # the stream ran

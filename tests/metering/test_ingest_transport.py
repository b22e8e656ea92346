"""Ingest transports hardened: WebSocket message size, bodies refused before they are read,
rotated tokens refused at once.

Size and body tests run against a real server (``python -m config.server config.asgi:application``
on a throwaway SQLite database with the benchmark's reference installation), since what they
check happens in daphne before Django sees the request.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import websockets
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from config.asgi import application
from devices.models import Gateway, hash_token
from metering.ingest.frames import MAX_FRAME_BYTES, encode_binary, frame_from_dict
from tests.factories import make_location, star_frame
from tests.loops import run_in_own_loop
from tools.bench_ingest import reference_frame

REPO = Path(__file__).resolve().parents[2]
URL = "/api/v1/ingest/frames"
UNAUTHORIZED = {
    "error": "missing or invalid gateway token (send 'Authorization: Bearer <token>')",
    "field": "Authorization",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """(port, token) of a real server with the reference installation (3 voltages + 28 CTs)."""
    with tempfile.TemporaryDirectory() as var_dir:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MQTT_URL")}
        env |= {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "VAR_DIR": var_dir,
            "SECRET_KEY": "transport-test",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
        }
        install = "import sys; from tools.bench_ingest import setup_django, install; setup_django(sys.argv[1], False); print(install()[1])"
        token = subprocess.run(
            [sys.executable, "-c", install, var_dir], cwd=REPO, env=env, check=True, capture_output=True, text=True
        ).stdout.split()[-1]
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "config.server", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    pytest.fail("config.server did not start: " + process.stderr.read().decode()[-2000:])
                time.sleep(0.1)
        try:
            yield port, token
        finally:
            process.terminate()
            process.wait(10)


class Frames:
    """Reference frames stretched to ``cycles_s`` seconds, each with the next seq, ending now."""

    def __init__(self) -> None:
        self.seq = 0

    def make(self, seconds: int) -> dict:
        self.seq += 1
        base = reference_frame()
        frame = {**base, "seq": self.seq, "t": time.time() - seconds - 1}
        for group in ("voltages", "currents"):  # 1 s holds 50 whole cycles: repeating it stays continuous
            frame[group] = {ref: np.tile(samples, seconds).tolist() for ref, samples in base[group].items()}
        return frame


@pytest.fixture(scope="module")
def frames() -> Frames:
    return Frames()


def exchange(port: int, request: bytes, body_chunks=(), timeout_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes (then ``body_chunks`` while the server takes them) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(request)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except OSError:  # the server answered and stopped reading
            pass
        received = b""
        while b"\r\n\r\n" not in received or len(received) < head_and_length(received):
            data = s.recv(65536)
            if not data:
                break
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def head_and_length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b": ")
        if name.lower() == b"content-length":
            return len(head) + 4 + int(value)
    return 1 << 62  # no length: until the server closes


def post_head(port: int, *headers: str) -> bytes:
    lines = [f"POST {URL} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def ws_exchange(port: int, token: str, messages: list) -> list:
    """Send each message and collect the reply, or the close code once the server closes."""
    replies = []
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/ingest/",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
        compression=None,
        open_timeout=10,
    ) as ws:
        for message in messages:
            try:
                await ws.send(message)
                replies.append(orjson.loads(await asyncio.wait_for(ws.recv(), 20)))
            except websockets.ConnectionClosed as closed:
                replies.append(closed.rcvd.code if closed.rcvd else None)
                break
    return replies


# 6. WebSocket messages up to the frame limit


def test_it_acknowledges_websocket_frames_over_one_mib(server, frames):
    port, token = server
    binary = encode_binary(frame_from_dict(frames.make(seconds=3)))  # 31 channels x 19,200 samples
    text = orjson.dumps(frames.make(seconds=1)).decode()  # the reference JSON frame
    assert 1 << 20 < len(binary) < MAX_FRAME_BYTES and 1 << 20 < len(text) < MAX_FRAME_BYTES

    replies = run_in_own_loop(lambda: ws_exchange(port, token, [binary, text]))

    assert replies == [
        {"type": "ack", "seq": frames.seq - 1, "status": "ok"},
        {"type": "ack", "seq": frames.seq, "status": "ok"},
    ]


def test_it_answers_a_websocket_message_at_the_limit_and_closes_with_1009_above_it(server):
    port, token = server
    at_limit, over_limit = b"IFB1" + bytes(MAX_FRAME_BYTES - 4), b"IFB1" + bytes(MAX_FRAME_BYTES - 3)

    replies = run_in_own_loop(lambda: ws_exchange(port, token, [at_limit, over_limit]))

    assert replies[0]["type"] == "error"  # read and refused by the frame rules: the socket stays open
    assert replies[1] == 1009  # "message too big", a close frame rather than a dropped connection


# 7. Bodies refused before they are read


def test_it_refuses_a_request_without_a_token_before_reading_its_body(server):
    port, _ = server
    started = time.monotonic()

    status, headers, body = exchange(port, post_head(port, "Content-Length: 200000000") + b'{"v": 1')

    assert (status, orjson.loads(body)) == (401, UNAUTHORIZED)
    assert headers["www-authenticate"] == 'Bearer realm="ingest"'
    assert time.monotonic() - started < 3  # not waiting for the 200 MB


def test_it_refuses_a_wrong_token_before_reading_the_body(server):
    port, _ = server
    request = post_head(port, "Authorization: Bearer wrong", "Content-Length: 200000000") + b'{"v": 1'

    status, _, body = exchange(port, request)

    assert (status, orjson.loads(body)) == (401, UNAUTHORIZED)


def test_it_gates_the_ingest_url_behind_a_root_path_header_too(server):
    port, _ = server
    lines = [f"POST /x{URL} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Daphne-Root-Path: /x", "Content-Length: 200000000"]
    started = time.monotonic()

    status, _, body = exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + b'{"v": 1')

    assert (status, orjson.loads(body)) == (401, UNAUTHORIZED)
    assert time.monotonic() - started < 3  # not waiting for the 200 MB


@pytest.mark.parametrize("path", ["/accounts/login/", f"{URL}/"])
def test_it_refuses_any_other_body_larger_than_django_would_read_before_reading_it(server, path):
    port, _ = server
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Length: 200000000"]
    started = time.monotonic()

    status, _, body = exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + b"x")

    assert status == 413
    assert orjson.loads(body)["error"] == "request body too large: 200000000 bytes, limit 16777216"
    assert time.monotonic() - started < 3


def test_it_refuses_a_declared_body_over_the_limit_before_reading_it(server):
    port, token = server
    request = post_head(port, f"Authorization: Bearer {token}", "Content-Length: 200000000") + b'{"v": 1'

    status, _, body = exchange(port, request)

    assert status == 413
    assert orjson.loads(body) == {"error": f"frame too large: 200000000 bytes, limit {MAX_FRAME_BYTES}", "field": None}


def test_it_stores_a_chunked_frame_and_refuses_a_chunked_body_over_the_limit_with_413_json(server, frames):
    port, token = server
    head = post_head(port, f"Authorization: Bearer {token}", "Transfer-Encoding: chunked")

    def chunked(body: bytes, size: int = 1 << 20):
        for start in range(0, len(body), size):
            piece = body[start : start + size]
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
        yield b"0\r\n\r\n"

    status, _, body = exchange(port, head, chunked(orjson.dumps(frames.make(seconds=1))))
    assert (status, orjson.loads(body)["accepted"]) == (200, [{"seq": frames.seq, "status": "ok"}])

    status, headers, body = exchange(port, head, chunked(b" " * (17 << 20)))
    assert (status, headers["content-type"]) == (413, "application/json")
    refusal = orjson.loads(body)
    assert refusal["error"].startswith("frame too large: ") and refusal["field"] is None


def test_it_answers_a_content_length_that_is_not_a_number_with_400_json(server):
    port, token = server
    request = post_head(port, f"Authorization: Bearer {token}", "Content-Length: abc") + b"{}"

    status, headers, body = exchange(port, request)

    assert (status, headers["content-type"]) == (400, "application/json")
    assert orjson.loads(body)["error"] == "malformed HTTP request"


# 8. A rotated token fails at once, in every process


@pytest.mark.django_db
def test_it_refuses_a_token_rotated_in_another_process_on_the_next_request(client):
    _, token = make_location()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert (
        client.post(URL, orjson.dumps(star_frame(seq=1)), content_type="application/json", **headers).status_code == 200
    )

    # As another process does it: no signal here, so nothing kept in this process is dropped.
    Gateway.objects.filter(token_hash=hash_token(token)).update(token_hash=hash_token("rotated"))

    response = client.post(URL, orjson.dumps(star_frame(seq=2)), content_type="application/json", **headers)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


@pytest.mark.django_db(transaction=True)
def test_it_closes_an_open_socket_at_its_next_frame_once_its_token_is_rotated():
    _, token = make_location()

    async def run():
        communicator = WebsocketCommunicator(
            application, "/ws/ingest/", headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        await communicator.send_to(bytes_data=encode_binary(frame_from_dict(star_frame(seq=1))))
        first = orjson.loads(await communicator.receive_from(timeout=10))
        await sync_to_async(Gateway.objects.filter(token_hash=hash_token(token)).update)(token_hash="")
        await communicator.send_to(bytes_data=encode_binary(frame_from_dict(star_frame(seq=2))))
        second = orjson.loads(await communicator.receive_from(timeout=10))
        closed = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return first, second, closed

    first, second, closed = async_to_sync(run)()
    assert first == {"type": "ack", "seq": 1, "status": "ok"}
    assert second == {
        "type": "error",
        "error": "gateway token rotated or revoked",
        "field": "Authorization",
        "seq": None,
    }
    assert closed == {"type": "websocket.close", "code": 4401}


# Refusals: a frame refused (the device's clock is ahead, 422) told from a malformed one (400)


@pytest.mark.django_db
def test_it_answers_a_frame_from_a_clock_ahead_with_422_and_a_malformed_one_with_400(client):
    _, token = make_location()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    ahead = client.post(URL, orjson.dumps(star_frame(t=time.time() + 3600)), content_type="application/json", **headers)
    malformed = client.post(URL, b'{"v": 1', content_type="application/json", **headers)

    assert (ahead.status_code, ahead.json()["field"]) == (422, "t")
    assert malformed.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_it_gives_the_status_of_a_refused_frame_in_its_websocket_error():
    _, token = make_location()

    async def run():
        communicator = WebsocketCommunicator(
            application, "/ws/ingest/", headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        replies = []
        for message in (star_frame(t=time.time() + 3600), star_frame(seq="one")):
            await communicator.send_to(text_data=orjson.dumps(message).decode())
            replies.append(orjson.loads(await communicator.receive_from(timeout=10)))
        await communicator.disconnect()
        return replies

    ahead, malformed = async_to_sync(run)()
    assert (ahead["type"], ahead["field"], ahead["status"]) == ("error", "t", 422)
    assert (malformed["type"], malformed["field"], malformed["status"]) == ("error", "seq", 400)


def test_it_looks_at_kept_tokens_without_touching_the_cache_on_the_event_loop(monkeypatch):
    """The gate runs on the server's event loop: a cache (Redis) that is down or hangs must not
    reach it; an unknown token then goes to the lookup on the gate's thread."""
    from metering import installed
    from metering.ingest.auth import kept_gateway_for

    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(installed.cache, "get", down)
    installed.forget()

    assert kept_gateway_for(b"Bearer some-token") is None

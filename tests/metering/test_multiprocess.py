"""The two process roles for real: a web process (daphne) that only checks and hands frames to the
stream, and a ``run_ingest`` worker that meters, stores and pushes the cards back through Redis.

Both are processes of their own on the test database and this machine's Redis, as in production
(docs/deploy.md); the test talks to the web process as a gateway (HTTP, WebSocket) and as a
browser (the location's card socket) would.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
import redis
import websockets
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from metering.ingest.frames import encode_binary, frame_from_dict
from metering.models import PowerBoxState
from tests.dashboard.test_browser import free_port
from tests.factories import make_location, star_frame
from tests.loops import run_in_own_loop
from tests.metering.test_pipeline import database_url, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[2]
REPLY_TIMEOUT_S = 3


class Role:
    """One process of the stack, its output in a log file."""

    def __init__(self, command: list[str], env: dict, log: Path):
        self.log_path = log
        self.log = log.open("w")
        self.process = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text()[-3000:]


@pytest.fixture
def stack(redis_url, tmp_path):
    """Start a web process and an ingest worker on one stream (a key prefix of this test's own)."""
    prefix = f"test-stack-{uuid.uuid4().hex[:12]}"
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,  # the test's sessions are signed with it
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "INGEST_STREAM_URL": redis_url,
        "INGEST_PREFIX": prefix,
        "INGEST_SHARDS": "4",
        "INGEST_REPLY_TIMEOUT_S": str(REPLY_TIMEOUT_S),
        "LOG_LEVEL": "INFO",
        "VAR_DIR": str(tmp_path),
    }
    env.pop("MQTT_URL", None)
    worker = Role(
        [sys.executable, "manage.py", "run_ingest", "--lease-s", "1", "--name", "worker-1"],
        env,
        tmp_path / "ingest.log",
    )
    web = Role(
        [sys.executable, "-m", "config.server", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        env,
        tmp_path / "web.log",
    )
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: answers(port), timeout_s=30)
        wait_for(lambda: client.exists(*[f"{prefix}:lease:{shard}" for shard in range(4)]) == 4, timeout_s=30)
        yield port, worker, web
    finally:
        web.stop()
        worker.stop()
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/accounts/login/")
        return connection.getresponse().status == 200
    except OSError:
        return False


def post_frames(port: int, token: str, frames: list[dict]) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        "/api/v1/ingest/frames",
        body=orjson.dumps(frames),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    return response.status, orjson.loads(response.read())


def signed_in_cookie(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"sessionid={session.session_key}"


def test_it_meters_in_the_worker_and_pushes_its_card_to_the_web_processs_browsers(stack, owner):
    port, worker, web = stack
    location, token = make_location(members={owner: "owner"})
    t0 = 1_764_090_000.0
    cookie = signed_in_cookie(owner)
    second = encode_binary(frame_from_dict(star_frame(seq=2, t=t0 + 1)))

    async def scenario() -> tuple[list[dict], str]:
        card_socket = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/locations/{location.pk}/",
            additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
        )
        device_socket = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/ingest/", additional_headers={"Authorization": f"Bearer {token}"}
        )
        async with card_socket, device_socket:
            status, body = await asyncio.to_thread(post_frames, port, token, [star_frame(seq=1, t=t0)])
            assert status == 200, body
            card = ""
            while 'id="card-live-values"' not in card:  # rendered by the worker, sent through Redis
                card = await asyncio.wait_for(card_socket.recv(), 10)
            await device_socket.send(second)
            acks = [orjson.loads(await asyncio.wait_for(device_socket.recv(), 10))]
            return [*body["accepted"], *acks], card

    receipts, card = run_in_own_loop(scenario)
    assert receipts == [{"seq": 1, "status": "ok"}, {"type": "ack", "seq": 2, "status": "ok"}]
    assert "Heat pump" in card
    state = PowerBoxState.objects.get(powerbox__location=location)
    assert (state.frames, state.last_seq) == (2, 2)
    assert "Traceback" not in web.output() + worker.output()


def test_it_answers_503_and_stores_nothing_in_the_web_process_while_no_worker_runs(stack):
    port, worker, web = stack
    location, token = make_location()
    worker.stop(signal.SIGKILL)

    status, body = post_frames(port, token, [star_frame(seq=1)])

    assert status == 503
    assert "no ingest worker answered" in body["error"]
    assert not PowerBoxState.objects.filter(powerbox__location=location, frames__gt=0).exists()

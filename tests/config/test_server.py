"""The server entry point ``python -m config.server``: daphne handing request bodies over in large pieces."""

import gc
import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daphne.server import Server

from config.management.commands.runserver import Command as Runserver
from config.server import GC_THRESHOLDS, InfinityServer

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server_port():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "config.server", "-b", "127.0.0.1", "-p", str(port), "tests.config.body_echo_asgi:app"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("config.server did not start: " + server.stderr.read().decode()[-2000:])
            time.sleep(0.1)
    yield port
    server.terminate()
    server.wait(10)


def test_a_frame_sized_body_reaches_the_application_in_one_or_two_pieces(server_port):
    body = b"x" * 1_600_000  # a reference JSON frame is 1.53 MB
    connection = http.client.HTTPConnection("127.0.0.1", server_port, timeout=10)
    connection.request("POST", "/", body=body)
    response = connection.getresponse()
    pieces = json.loads(response.read())["pieces"]
    assert response.status == 200
    assert sum(pieces) == len(body)
    assert len(pieces) <= 2  # stock daphne: 196 pieces of 8 KiB


def test_runserver_serves_with_the_same_server():
    assert Runserver.server_cls is InfinityServer


def test_before_serving_it_leaves_the_startup_objects_out_of_full_collections(monkeypatch):
    # Full collections walking every module, model and URL pattern paused the server for
    # 100-150 ms every few seconds under load (tools.bench_push).
    monkeypatch.setattr(Server, "run", lambda self: None)
    thresholds = gc.get_threshold()
    try:
        InfinityServer(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"]).run()
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)

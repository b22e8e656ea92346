"""Handing rendered cards to the channel layer from the threads that ingest frames."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from dashboard import broadcast


class SlowLayer:
    """A channel layer whose group_send finishes only when the test says so."""

    def __init__(self, fail: bool = False):
        self.sent: list[tuple[str, dict]] = []
        self.fail = fail
        self.release: asyncio.Event | None = None

    async def group_send(self, group: str, message: dict) -> None:
        self.release = self.release or asyncio.Event()
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the channel layer is down")
        self.sent.append((group, message))


def in_a_thread_of_its_own(work):
    """Run ``work`` where no event loop runs (the browser tests leave Playwright's in this one)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(work).result(timeout=30)


def test_a_push_from_an_ingest_thread_does_not_wait_for_the_channel_layer(monkeypatch):
    layer = SlowLayer()
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: layer)

    async def scenario():
        returned = threading.Event()

        def ingest_thread():
            broadcast.send(7, '<section id="card-live-values"></section>')
            returned.set()

        await asyncio.wait_for(sync_to_async(ingest_thread, thread_sensitive=False)(), 5)
        assert returned.is_set() and layer.sent == []  # the thread went on; the send is under way
        while layer.release is None:
            await asyncio.sleep(0.01)
        layer.release.set()
        while not layer.sent:
            await asyncio.sleep(0.01)

    in_a_thread_of_its_own(lambda: asyncio.run(scenario()))
    assert layer.sent == [("location.7", {"type": "card.update", "html": '<section id="card-live-values"></section>'})]


def test_a_failed_send_is_logged(monkeypatch, caplog):
    layer = SlowLayer(fail=True)
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: layer)

    async def scenario():
        await sync_to_async(broadcast.send, thread_sensitive=False)(7, "<p>card</p>")
        while layer.release is None:
            await asyncio.sleep(0.01)
        layer.release.set()
        for _ in range(200):
            if "could not send to group location.7" in caplog.text:
                return
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="dashboard.broadcast"):
        in_a_thread_of_its_own(lambda: asyncio.run(scenario()))
    assert "could not send to group location.7" in caplog.text
    assert "the channel layer is down" in caplog.text


def test_without_an_event_loop_a_push_is_sent_before_it_returns():
    layer = get_channel_layer()

    async def browser_and_command() -> dict:
        channel = await layer.new_channel()
        await layer.group_add("location.8", channel)
        # a management command or a shell: a thread with no server loop (a pub/sub layer
        # delivers only to members subscribed when the card is sent: this one is)
        await asyncio.get_running_loop().run_in_executor(None, broadcast.send, 8, "<p>card</p>")
        return await asyncio.wait_for(layer.receive(channel), 5)

    assert in_a_thread_of_its_own(lambda: asyncio.run(browser_and_command())) == {
        "type": "card.update",
        "html": "<p>card</p>",
    }


def test_without_an_event_loop_pushes_go_through_one_loop_that_keeps_its_connection(monkeypatch):
    """An ingest worker has no server loop: a new loop per card would open a new Redis
    connection per card (tools.bench_layers)."""
    layer = LoopNotingLayer()
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: layer)

    def ingest_worker() -> None:
        broadcast.send(7, "<p>first</p>")
        broadcast.send(8, "<p>second</p>")

    in_a_thread_of_its_own(ingest_worker)
    in_a_thread_of_its_own(ingest_worker)
    assert [(group, html) for group, html, _ in layer.sent] == [
        ("location.7", "<p>first</p>"),
        ("location.8", "<p>second</p>"),
    ] * 2
    assert len({loop for _, _, loop in layer.sent}) == 1


class LoopNotingLayer:
    """A channel layer that delivers at once, noting in which event loop."""

    def __init__(self):
        self.sent: list[tuple[str, str, int]] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.sent.append((group, message["html"], id(asyncio.get_running_loop())))


def test_a_thread_waits_for_a_free_slot_and_drops_the_card_when_the_loop_is_stuck(monkeypatch, settings, caplog):
    settings.CARD_SENDS_IN_FLIGHT = 1
    monkeypatch.setattr(broadcast, "SEND_WAIT_MAX_S", 0.3)
    layer = SlowLayer()  # never finishes a send
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: layer)

    async def scenario() -> float:
        def ingest_thread() -> float:
            broadcast.send(7, "<p>first</p>")  # takes the only slot
            started = time.monotonic()
            broadcast.send(7, "<p>second</p>")  # waits for it, then gives up
            return time.monotonic() - started

        return await sync_to_async(ingest_thread, thread_sensitive=False)()

    with caplog.at_level(logging.WARNING, logger="dashboard.broadcast"):
        waited = in_a_thread_of_its_own(lambda: asyncio.run(scenario()))
    assert waited >= 0.3
    assert "cards for group location.7 dropped" in caplog.text


class Layer:
    """A channel layer that delivers at once, noting on which thread."""

    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []  # (group, html, thread name)

    async def group_send(self, group: str, message: dict) -> None:
        self.sent.append((group, message["html"], threading.current_thread().name))


@pytest.fixture
def two_quick_frames(monkeypatch):
    """A layer, and live cards that render the load power a frame brings (no database)."""
    layer = Layer()
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(broadcast, "_location", lambda location_id: object())
    monkeypatch.setattr(broadcast, "render_live_cards", lambda location, values: f"<p>{values['p']} W</p>")

    def frames() -> tuple[float, float]:
        """Two frames 50 ms apart, as ingest hands them over; returns when each came."""
        first_at = time.monotonic()
        assert broadcast.push_live(7, {"p": 1210.0}) is True
        time.sleep(0.05)
        second_at = time.monotonic()
        assert broadcast.push_live(7, {"p": 1234.0}) is False
        return first_at, second_at

    return layer, frames


def wait_for(condition, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_it_pushes_the_second_of_two_quick_frames_within_the_interval_without_an_event_loop(
    two_quick_frames, monkeypatch
):
    layer, frames = two_quick_frames
    closed = []
    monkeypatch.setattr(broadcast, "connections", SimpleNamespace(close_all=lambda: closed.append(True)), raising=False)

    def management_command() -> tuple[float, float]:  # MQTT ingest: no server loop
        first_at, second_at = frames()
        assert [html for _, html, _ in layer.sent] == ["<p>1210.0 W</p>"]
        wait_for(lambda: len(layer.sent) == 2)
        return time.monotonic() - first_at, time.monotonic() - second_at

    after_first, after_second = in_a_thread_of_its_own(management_command)
    assert after_first >= 0.85 and after_second < 1.3  # at the end of the interval the first frame began
    assert layer.sent[1][:2] == ("location.7", "<p>1234.0 W</p>")
    wait_for(lambda: closed == [True])  # the timer thread closed its database connections
    time.sleep(1.0)
    assert len(layer.sent) == 2  # one trailing push


def test_it_pushes_the_second_of_two_quick_frames_within_the_interval_through_the_serving_loop(
    two_quick_frames, monkeypatch
):
    layer, frames = two_quick_frames
    closed = []
    close_all = lambda: closed.append(threading.current_thread().name)  # noqa: E731
    monkeypatch.setattr(broadcast, "connections", SimpleNamespace(close_all=close_all), raising=False)

    async def scenario() -> tuple[float, float]:
        first_at, second_at = await sync_to_async(frames, thread_sensitive=False)()
        while len(layer.sent) < 2 and time.monotonic() < second_at + 3:
            await asyncio.sleep(0.01)
        waited = time.monotonic() - first_at, time.monotonic() - second_at
        await asyncio.sleep(1.0)
        return waited

    after_first, after_second = in_a_thread_of_its_own(lambda: asyncio.run(scenario()))
    assert after_first >= 0.85 and after_second < 1.3
    assert [html for _, html, _ in layer.sent] == ["<p>1210.0 W</p>", "<p>1234.0 W</p>"]  # and no more
    loop_thread = layer.sent[0][2]
    assert layer.sent[1][2] == loop_thread  # sent by the serving loop, as every push
    assert len(closed) == 1 and closed[0].startswith("card-push")  # rendered on the pusher, which closed its connection

"""Handing rendered cards to the channel layer from the threads that ingest frames."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync, sync_to_async
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

    def management_command() -> dict:  # or a shell: no server loop
        async def member() -> str:
            channel = await layer.new_channel()
            await layer.group_add("location.8", channel)
            return channel

        channel = async_to_sync(member)()
        broadcast.send(8, "<p>card</p>")
        return async_to_sync(layer.receive)(channel)

    assert in_a_thread_of_its_own(management_command) == {"type": "card.update", "html": "<p>card</p>"}


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

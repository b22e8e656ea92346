"""The in-memory channel layer sweeps expired messages once a second, not on every message."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

from config.layers import InMemoryChannelLayer


def test_it_sweeps_at_most_once_a_second(monkeypatch):
    sweeps = []
    monkeypatch.setattr(ChannelsInMemoryChannelLayer, "_clean_expired", lambda self: sweeps.append(1))
    layer = InMemoryChannelLayer()

    async def traffic():
        await layer.group_add("location.1", "specific.inmemory!a")
        for _ in range(3):
            await layer.group_send("location.1", {"type": "card.update", "html": "<p>x</p>"})

    async_to_sync(traffic)()
    assert len(sweeps) == 1
    layer._swept_at -= layer.sweep_every_s  # a second later
    async_to_sync(traffic)()
    assert len(sweeps) == 2


def test_it_still_delivers_to_every_member():
    layer = InMemoryChannelLayer()

    async def traffic():
        await layer.group_add("location.1", "specific.inmemory!a")
        await layer.group_add("location.1", "specific.inmemory!b")
        await layer.group_send("location.1", {"type": "card.update", "html": "<p>x</p>"})
        return [await layer.receive("specific.inmemory!a"), await layer.receive("specific.inmemory!b")]

    assert async_to_sync(traffic)() == [{"type": "card.update", "html": "<p>x</p>"}] * 2

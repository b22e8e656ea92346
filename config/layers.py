"""The in-memory channel layer, with a cheaper expiry sweep."""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    """Channels' in-memory layer, sweeping out expired messages and group memberships at most
    once a second instead of on every send and receive.

    The stock sweep walks every channel and every member of every group, so with hundreds of
    sockets it costs more than delivering the message. Messages expire after a minute and
    memberships after a day: a sweep a second changes nothing anyone can observe.

    Kept for ``tools/bench_push.py`` (``--layer memory``: 200 locations, ~500 sockets, the
    embedded default's layer). Measured after the layout split (2026-12-04, 10 s phases on a busy
    machine): 158 of 200 frames/s ingested, p99 74 ms with it; 30 frames/s, no card in time without.
    """

    sweep_every_s = 1.0
    _swept_at = float("-inf")

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < self.sweep_every_s:
            return
        self._swept_at = now
        super()._clean_expired()

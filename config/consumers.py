"""A Channels consumer base for messages whose handlers need no database connection check."""

from __future__ import annotations

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer


class WithoutConnectionHop(AsyncWebsocketConsumer):
    """Handles the message types in :attr:`no_connection_check` without Channels' hop first.

    Channels' ``dispatch`` runs ``close_old_connections`` on its database thread before every
    handler. A handler that touches no database, or hands its database work to threads that
    check their own connections, does not need it: at hundreds of messages a second that hop is
    a fifth of a message's CPU and a GIL hand-off in its latency. Kept for ``tools/bench_push.py``
    (browser sockets' ``card.update``) and ``tools/bench_ingest.py`` (device sockets' frames):
    after the layout split (2026-12-04, ``bench_push --layer memory --seconds 10``, busy machine)
    158 of 200 frames/s and p99 74 ms with it, 111 frames/s and p99 166 ms without.
    """

    no_connection_check: frozenset[str] = frozenset()

    async def dispatch(self, message: dict) -> None:
        if message["type"] in self.no_connection_check:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

"""The ASGI application :mod:`tools.bench_push` runs under daphne: the real one plus a baseline.

Everything of :data:`config.asgi.application` is served unchanged; on top, for the benchmark only:

- ``/ws/bench/<id>/``: :class:`BareConsumer`, a stock ``AsyncWebsocketConsumer`` that joins
  ``bench.<id>`` and forwards ``event["html"]`` (no session, no origin check, no ORM): what raw
  Channels costs to deliver a ``group_send``.
- ``POST /bench/send?group=<id>&t=<data-t>&size=<bytes>``: ``group_send`` to ``bench.<id>`` of a
  fragment of ``size`` bytes whose root element carries ``data-t`` like a live card, answered
  ``204`` once sent. Handled in the event loop, without Django. With ``&to=location`` the same
  fragment goes to ``location.<id>`` as a ``card.update``: the real consumer without ingest.
- ``GET /bench/stats``: frames that reached :func:`dashboard.broadcast.push_live` and those it
  coalesced (dropped because the location's cards were pushed less than a second before), per
  location, as JSON.
- ``POST /bench/profile?action=start|stop&dir=<path>``: cProfile of the event loop thread and of
  every worker thread (Django's per-request threads, Channels' database thread) between start
  and stop, written to ``<dir>/loop.prof`` and ``<dir>/threads.prof``. Timed with each
  thread's CPU clock, so time spent waiting (for the GIL, a lock, the network) is not counted.

Never route to this module outside the benchmark: the send endpoint is unauthenticated.
"""

from __future__ import annotations

import cProfile
import os
import re
import threading
import time
from collections import Counter
from urllib.parse import parse_qs

import orjson
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from config.asgi import application as real_application
from dashboard import broadcast

BENCH_WS = re.compile(r"^/ws/bench/(\d+)/$")


def bench_group(group_id: int) -> str:
    return f"bench.{group_id}"


class BareConsumer(AsyncWebsocketConsumer):
    """The baseline: join a group on connect, forward what arrives, leave on disconnect."""

    async def connect(self) -> None:
        self.group = bench_group(self.scope["url_route"]["kwargs"]["pk"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def bench_update(self, event: dict) -> None:
        await self.send(text_data=event["html"])


bare_consumer = BareConsumer.as_asgi()


def fragment(data_t: str, size: int) -> str:
    """A root element with ``data-t`` like a live card, padded to ``size`` characters."""
    head = f'<section id="bench-card" class="card" data-t="{data_t}">'
    tail = "</section>"
    return head + "x" * max(size - len(head) - len(tail), 0) + tail


# ----------------------------------------------------------------------------- coalescing count

_frames: Counter[int] = Counter()
_coalesced: Counter[int] = Counter()
_push_live = broadcast.push_live


def counting_push_live(location_id: int, values: dict, now: float | None = None) -> bool:
    """:func:`dashboard.broadcast.push_live`, counting the frames it did not push."""
    pushed = _push_live(location_id, values, now)
    _frames[location_id] += 1
    if not pushed:
        _coalesced[location_id] += 1
    return pushed


# on_live_values_updated looks push_live up in its module at every call.
broadcast.push_live = counting_push_live


# ----------------------------------------------------------------------------- profiling


class Profiles:
    """One cProfile per thread: the loop's, and each worker thread's from its first call on.

    A profile is stopped in its own thread (the CPU clock is per thread); the profiles of worker
    threads still running a request at the stop are left out."""

    def __init__(self) -> None:
        self.loop: cProfile.Profile | None = None
        self.threads: list[tuple[threading.Thread, cProfile.Profile]] = []
        self.lock = threading.Lock()

    def _start_in_this_thread(self, *args) -> None:
        profile = cProfile.Profile(time.thread_time)
        with self.lock:
            self.threads.append((threading.current_thread(), profile))
        profile.enable()  # replaces this hook for the thread

    def _stop_in_this_thread(self) -> threading.Thread:
        here = threading.current_thread()
        with self.lock:
            mine = [profile for thread, profile in self.threads if thread is here]
        mine[-1].disable()
        return here

    async def start(self) -> None:
        self.loop, self.threads = cProfile.Profile(time.thread_time), []
        threading.setprofile(self._start_in_this_thread)  # threads started from now on
        await sync_to_async(self._start_in_this_thread)()  # Channels' database thread, already running
        self.loop.enable()

    async def stop(self, directory: str) -> None:
        import pstats

        if self.loop is None:
            return
        self.loop.disable()
        threading.setprofile(None)
        database_thread = await sync_to_async(self._stop_in_this_thread)()  # Channels' database thread
        self.loop.dump_stats(os.path.join(directory, "loop.prof"))
        with self.lock:
            threads = list(self.threads)
        merged = None
        for thread, profile in threads:
            if thread.is_alive() and thread is not database_thread:
                continue
            profile.create_stats()
            if not profile.stats:
                continue
            if merged is None:
                merged = pstats.Stats(profile)
            else:
                merged.add(profile)
        if merged is not None:
            merged.dump_stats(os.path.join(directory, "threads.prof"))
        self.loop = None


profiles = Profiles()


# ----------------------------------------------------------------------------- ASGI


async def _read_body(receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _respond(send, status: int, body: bytes = b"", content_type: bytes = b"application/json") -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def bench_http(scope, receive, send) -> None:
    path = scope["path"]
    query = {name: values[-1] for name, values in parse_qs(scope.get("query_string", b"").decode()).items()}
    await _read_body(receive)
    if path == "/bench/send":
        html = fragment(query["t"], int(query["size"]))
        if query.get("to") == "location":
            group, event = broadcast.group_name(int(query["group"])), {"type": "card.update", "html": html}
        else:
            group, event = bench_group(int(query["group"])), {"type": "bench.update", "html": html}
        await get_channel_layer().group_send(group, event)
        await _respond(send, 204)
    elif path == "/bench/stats":
        body = {"frames": dict(_frames), "coalesced": dict(_coalesced)}
        await _respond(send, 200, orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))
    elif path == "/bench/profile":
        if query.get("action") == "start":
            await profiles.start()
        else:
            await profiles.stop(query["dir"])
        await _respond(send, 204)
    else:
        await _respond(send, 404)


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/bench/"):
        return await bench_http(scope, receive, send)
    if scope["type"] == "websocket":
        match = BENCH_WS.match(scope["path"])
        if match:
            scope = {**scope, "url_route": {"args": (), "kwargs": {"pk": int(match[1])}}}
            return await bare_consumer(scope, receive, send)
    return await real_application(scope, receive, send)

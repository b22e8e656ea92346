"""Live-card push benchmark: ``python -m tools.bench_push [--locations 200]
[--clients-per-location 2.5] [--seconds 20] [--ramp-seconds 3] [--layer memory|redis|both] [--ingest ws|http]``.

For each channel layer (in-memory, and Redis at ``--redis-url``), one daphne process on a free
127.0.0.1 port serves :mod:`tools.bench_asgi` (the real application plus a bare baseline
consumer) with its own SQLite database in a temporary ``VAR_DIR``, prepared before the server
starts: ``--locations`` star houses (:func:`tools.fixtures.make_location`) and one user who is
a member of all of them, signed in once for a session cookie. Every location's first frame is
ingested before anything is measured (it creates the state row and loads the installation).
Then, back to back, with the same number of sockets and groups:

1. *Ingest -> live cards*: ``--clients-per-location`` browser-like WebSocket clients per
   location (``/ws/locations/<id>/`` with the session cookie and an ``Origin`` header; 2.5 means
   2 and 3 alternately) while every location's gateway sends one frame a second (the star
   house's frame of :data:`SAMPLES` samples on 7 channels, JSON) over its own ingest WebSocket
   ``/ws/ingest/`` (``--ingest ws``, the default: a gateway streaming every second keeps its
   socket open) or POSTed to ``/api/v1/ingest/frames`` (``--ingest http``), the locations'
   seconds spread evenly over ``--http-connections`` senders with one frame in flight each. The
   server renders the live cards once per location and pushes them to the location's group.
2. *Baseline*: as many clients on ``/ws/bench/<id>/`` (a stock ``AsyncWebsocketConsumer`` in
   group ``bench.<id>`` that forwards ``event["html"]``) while the same schedule POSTs
   ``/bench/send``, which makes, from the event loop, a ``group_send`` of a fragment of the size
   the live cards had in phase 1: what Channels itself costs, under the same daphne and layer.

With ``--consumer-phase``, a third phase between them sends the baseline's fragments as
``card.update`` to the location groups, so the real ``LocationConsumer`` (session, origin check,
its ``dispatch``) is measured without ingest: the consumer's share of the difference.

Each phase first runs its schedule for ``--ramp-seconds`` (frames, group_sends and messages as
measured, counted for loss) before the ``--seconds`` whose latencies make the figures: the
500 sockets have just connected, and the server takes a second or two to settle (the p99
including the ramp-up is reported too).

Latency is from the wall time just before a frame's POST (recorded by the load generator) to
the arrival at each client of the fragment carrying that frame's time (``data-t`` of its root
element). Expected messages are the frames ingested times the clients of their location, less
the frames the server's one-push-a-second coalescing dropped (counted in the server, reported
apart); lost = expected - received within :data:`DRAIN_MAX_S` of the last request. The daphne
process's CPU time (all threads, and its event loop thread) comes from ``/proc``. A frame sent
later than its second (the load generator waits for each reply) shows as send lag: the run
kept pace when its p99 stays within :data:`KEEP_PACE_MS`.

Loopback only and bounded: each phase stops sending :data:`BEHIND_MAX_S` after its schedule's
end, and frames the server had no time for are reported as unsent; about two minutes for the
defaults. The server, the load generator and the clients share this machine's cores, so the
load generator's CPU time and the load average are reported too. ``--profile DIR`` adds a
profiled run of both phases per layer (cProfile of daphne's event loop thread and worker
threads on their CPU clocks; not part of the figures) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson

from tools.bench_ingest import PLAIN_HTTP

REPO = Path(__file__).resolve().parent.parent
ASGI_APP = "tools.bench_asgi:application"
FS_HZ = 6400.0
#: Samples per channel of a frame: 0.1 s at 6,400 Hz, 5 whole mains cycles. The benchmark is
#: about the pushes; a full 1 s frame would spend the shared cores on JSON parsing.
SAMPLES = 640
CONNECT_CONCURRENCY = 20
# Frames still unsent this long after the schedule's end are given up (and reported): the
# server does not keep up with the offered rate, and the run stays bounded.
BEHIND_MAX_S = 5.0
NOT_SENT = "unsent (server behind)"
DRAIN_MAX_S = 10.0  # after the last request, wait this long at most for the expected messages...
QUIET_S = 3.0  # ...or until none arrived for this long
SEQ0 = 1_000_000_000
T_PLACEHOLDER = 1_000_000_000.0
P99_TARGET_MS = 250.0
RATIO_TARGET = 1.5
KEEP_PACE_MS = 1000.0
RAMP_S = 3
DATA_T = re.compile(r'data-t="([0-9.]+)"')
CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Exit|Full)\b.*")


# ----------------------------------------------------------------------------- the database


@dataclass
class Site:
    """One simulated location: its gateway's token and frame, and its number of browser tabs."""

    index: int
    pk: int
    token: str
    clients: int
    body: bytearray
    seq_at: int
    t_at: int

    def frame(self, seq: int, t: float) -> bytes:
        self.body[self.seq_at : self.seq_at + 10] = b"%010d" % seq
        self.body[self.t_at : self.t_at + 12] = b"%012.1f" % t
        return bytes(self.body)


def clients_per_site(locations: int, per_location: float) -> list[int]:
    """Spread ``per_location * locations`` clients evenly: 2.5 gives 2, 3, 2, 3, ..."""
    return [math.floor((i + 1) * per_location) - math.floor(i * per_location) for i in range(locations)]


def setup_django(var_dir: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.update({"VAR_DIR": var_dir, "SECRET_KEY": "bench", "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1"})
    os.environ.update(PLAIN_HTTP)
    for name in ("DATABASE_URL", "REDIS_URL", "MQTT_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def prepare(locations: int, per_location: float, samples: int) -> tuple[list[Site], str]:
    """Star houses with one member in the database Django is set up with; (sites, session id)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client

    from tools.fixtures import make_location, star_frame

    sites = []
    with transaction.atomic():
        user = get_user_model().objects.create_user("bench")
        for index, clients in enumerate(clients_per_site(locations, per_location)):
            prefix = f"B{index:04d}"
            location, token = make_location(name=f"Bench {index}", serial_prefix=prefix, members={user: "viewer"})
            body = bytearray(orjson.dumps(star_frame(prefix, seq=SEQ0, t=T_PLACEHOLDER, n=samples)))
            seq_at = body.index(b'"seq":%d' % SEQ0) + len(b'"seq":')
            t_at = body.index(b'"t":%.1f' % T_PLACEHOLDER) + len(b'"t":')
            sites.append(Site(index, location.pk, token, clients, body, seq_at, t_at))
    browser = Client()
    browser.force_login(user)
    with connection.cursor() as cursor:  # one file to copy for each layer
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return sites, browser.cookies["sessionid"].value


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m daphne`` serving :mod:`tools.bench_asgi` with its own ``VAR_DIR``."""

    def __init__(self, var_dir: str, redis_url: str | None):
        self.port = free_port()
        self.log_path = Path(var_dir) / "daphne.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "VAR_DIR": var_dir,
            "SECRET_KEY": "bench",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            **PLAIN_HTTP,
        }
        for name in ("DATABASE_URL", "REDIS_URL", "MQTT_URL"):
            env.pop(name, None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                # -v 0: no access log (the project's runserver logs requests at WARNING only).
                [sys.executable, "-m", "config.server", "-v", "0", "-b", "127.0.0.1", "-p", str(self.port), ASGI_APP],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"daphne did not start:\n{self.log_tail()}")

    def cpu_s(self) -> tuple[float, float]:
        """User + system CPU seconds of the daphne process so far: (all threads, event loop thread)."""

        def seconds(stat: Path) -> float:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        pid = self.process.pid
        return seconds(Path(f"/proc/{pid}/stat")), seconds(Path(f"/proc/{pid}/task/{pid}/stat"))

    def errors(self) -> dict[str, int]:
        """The exceptions daphne logged (their last traceback line), by count."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return dict(Counter(line[:160] for line in lines if EXCEPTION_LINE.match(line)))

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ----------------------------------------------------------------------------- load generator


class HttpConnection:
    """A keep-alive HTTP/1.1 connection to the server, one request at a time."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = CONTENT_LENGTH.search(head)
        payload = await self.reader.readexactly(int(length[1])) if length else b""
        return int(head.split(b" ", 2)[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    async def aclose(self) -> None:
        self.close()


class GatewaySockets:
    """Each site's gateway socket (``/ws/ingest/`` with its token), opened at its first frame;
    one frame at a time on each, answered by its acknowledgement."""

    def __init__(self, port: int):
        self.port = port
        self.sockets: dict[int, object] = {}

    async def send_frame(self, site: Site, body: bytes) -> dict:
        import websockets

        socket_ = self.sockets.get(site.index)
        if socket_ is None:
            socket_ = self.sockets[site.index] = await websockets.connect(
                f"ws://127.0.0.1:{self.port}/ws/ingest/",
                additional_headers={"Authorization": f"Bearer {site.token}"},
                max_size=None,
                compression=None,
            )
        await socket_.send(body.decode())
        return orjson.loads(await socket_.recv())

    async def aclose(self) -> None:
        await asyncio.gather(*(socket_.close() for socket_ in self.sockets.values()), return_exceptions=True)


async def ask(port: int, method: str, target: str) -> tuple[int, bytes]:
    """One request on a connection of its own."""
    connection = HttpConnection(port)
    try:
        return await connection.request(method, target)
    finally:
        connection.close()


@dataclass
class Sent:
    """What the load generator sent in a phase: the send time of each (site, k) that succeeded."""

    times: dict[tuple[int, int], float] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    lag_s: list[float] = field(default_factory=list)  # actual send time - scheduled time
    last_at: float = 0.0


async def generate(
    port: int, sites: list[Site], frames: int, request, connections: int, first_k: int = 1, transport=HttpConnection
) -> Sent:
    """Frame ``k`` (``first_k``, ``first_k + 1``, ...) of site ``i`` at ``start + k - first_k +
    i / len(sites)`` seconds; ``request(connection, site, k)`` sends it and returns True when the
    server accepted it, else why not."""
    sent = Sent()
    start = time.perf_counter() + 0.2
    deadline = start + frames + BEHIND_MAX_S
    ks = range(first_k, first_k + frames)

    async def worker(mine: list[Site]) -> None:
        connection = transport(port)
        schedule = sorted((start + k - first_k + site.index / len(sites), k, site) for k in ks for site in mine)
        try:
            for done, (at, k, site) in enumerate(schedule):
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif time.perf_counter() > deadline:
                    sent.failed[NOT_SENT] = sent.failed.get(NOT_SENT, 0) + len(schedule) - done
                    break
                sent_at = time.perf_counter()
                sent.lag_s.append(sent_at - at)
                outcome = await request(connection, site, k)
                if outcome is True:
                    sent.times[(site.index, k)] = sent_at
                else:
                    sent.failed[outcome] = sent.failed.get(outcome, 0) + 1
        finally:
            await connection.aclose()

    await asyncio.gather(*(worker(sites[c::connections]) for c in range(connections)))
    sent.last_at = time.perf_counter()
    return sent


async def warm_up(port: int, sites: list[Site], request, connections: int, transport=HttpConnection) -> None:
    """Frame 0 of every site, unmeasured: the first frame of a location creates its state row and
    loads its installation, and the first render compiles the templates."""

    async def worker(mine: list[Site]) -> None:
        connection = transport(port)
        try:
            for site in mine:
                await request(connection, site, 0)
        finally:
            await connection.aclose()

    await asyncio.gather(*(worker(sites[c::connections]) for c in range(connections)))


# ----------------------------------------------------------------------------- browsers


@dataclass
class Browser:
    """One browser tab's socket and the ``(data-t, arrival time, length)`` of each message."""

    site: Site
    socket: object = None
    arrivals: list[tuple[float, float, int]] = field(default_factory=list)
    other: int = 0  # messages without data-t (the events card)

    async def listen(self) -> None:
        import websockets

        try:
            async for message in self.socket:
                now = time.perf_counter()
                found = DATA_T.search(message, 0, 400)
                if found:
                    self.arrivals.append((float(found[1]), now, len(message)))
                else:
                    self.other += 1
        except websockets.ConnectionClosed:
            pass


async def open_browsers(
    port: int, sites: list[Site], path: str, cookie: str | None
) -> tuple[list[Browser], list[asyncio.Task], Counter[str]]:
    """Connect every site's browsers; (connected, their listening tasks, why others were refused)."""
    import websockets

    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    refused: Counter[str] = Counter()
    headers = {"Origin": f"http://127.0.0.1:{port}"}
    if cookie:
        headers["Cookie"] = f"sessionid={cookie}"
    browsers = [Browser(site) for site in sites for _ in range(site.clients)]

    async def connect(browser: Browser) -> None:
        async with gate:
            try:
                browser.socket = await websockets.connect(
                    f"ws://127.0.0.1:{port}{path.format(pk=browser.site.pk)}",
                    additional_headers=headers,
                    open_timeout=60,
                    ping_interval=None,
                    max_size=None,
                )
            except (OSError, websockets.InvalidHandshake, TimeoutError) as error:
                browser.socket = None
                refused[f"{type(error).__name__}: {error}"[:120]] += 1

    await asyncio.gather(*(connect(browser) for browser in browsers))
    connected = [browser for browser in browsers if browser.socket is not None]
    return connected, [asyncio.create_task(browser.listen()) for browser in connected], refused


async def close_browsers(browsers: list[Browser], listeners: list[asyncio.Task]) -> None:
    """Close the sockets a few at a time, as browsers leave, and give the server a second to
    leave the groups: hundreds of closes at once exhaust channels_redis's connection pool."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def close(browser: Browser) -> None:
        async with gate:
            await browser.socket.close()

    await asyncio.gather(*(close(browser) for browser in browsers), return_exceptions=True)
    await asyncio.gather(*listeners, return_exceptions=True)
    await asyncio.sleep(1)


async def drain(browsers: list[Browser], expected: int) -> None:
    """Wait for ``expected`` messages with ``data-t``, at most :data:`DRAIN_MAX_S`, or until none
    arrived for :data:`QUIET_S`."""
    started = changed_at = time.perf_counter()
    count = -1
    while time.perf_counter() - started < DRAIN_MAX_S:
        now_count = sum(len(browser.arrivals) for browser in browsers)
        if now_count >= expected:
            return
        if now_count != count:
            count, changed_at = now_count, time.perf_counter()
        elif time.perf_counter() - changed_at >= QUIET_S:
            return
        await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------- one phase


def percentiles_ms(latencies_s: list[float]) -> dict[str, float | None]:
    if not latencies_s:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    values = np.asarray(latencies_s) * 1000
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


async def run_phase(
    server: Server,
    sites: list[Site],
    seconds: int,
    connections: int,
    *,
    path: str,
    cookie: str | None,
    request,
    t0: float,
    duration_s: float,
    first_k: int = 1,
    ramp_s: int = 0,
    coalesced=None,
    profile_dir: str | None = None,
    transport=HttpConnection,
) -> dict:
    """Open the browsers, run the schedule, wait for the messages, close; the phase's figures.

    ``coalesced()`` gives the server's count of coalesced frames per site so far."""
    browsers, listeners, refused = await open_browsers(server.port, sites, path, cookie)
    clients = Counter(browser.site.index for browser in browsers)
    skipped_before = await coalesced() if coalesced else Counter()
    if profile_dir:
        await ask(server.port, "POST", "/bench/profile?action=start")
    (cpu_before, loop_before), wall_before, own_before = server.cpu_s(), time.perf_counter(), time.process_time()
    sent = await generate(server.port, sites, ramp_s + seconds, request, connections, first_k, transport)
    skipped = (await coalesced() if coalesced else Counter()) - skipped_before
    coalesced_messages = sum(count * clients[index] for index, count in skipped.items())
    expected = sum(clients[index] for index, _ in sent.times) - coalesced_messages
    await drain(browsers, expected)
    cpu_after, loop_after = server.cpu_s()
    cpu_s, loop_s, wall_s = cpu_after - cpu_before, loop_after - loop_before, time.perf_counter() - wall_before
    own_cpu_s = time.process_time() - own_before
    if profile_dir:
        await ask(server.port, "POST", f"/bench/profile?action=stop&dir={profile_dir}")
    await close_browsers(browsers, listeners)

    received, unmatched, latencies, ramp_latencies, sizes = set(), 0, [], [], []
    for number, browser in enumerate(browsers):
        for data_t, arrival, length in browser.arrivals:
            k = round(data_t - duration_s - t0)
            sent_at = sent.times.get((browser.site.index, k))
            if sent_at is None or (number, k) in received:
                unmatched += 1
                continue
            received.add((number, k))
            sizes.append(length)
            (ramp_latencies if k < first_k + ramp_s else latencies).append(arrival - sent_at)
    sent_k: dict[int, list[int]] = {}
    for index, k in sent.times:
        sent_k.setdefault(index, []).append(k)
    missing = [  # which frame a coalescing site dropped is not known here
        (browser.site.pk, k)
        for number, browser in enumerate(browsers)
        if browser.site.index not in skipped
        for k in sent_k.get(browser.site.index, [])
        if (number, k) not in received
    ]
    return {
        "lost_examples": sorted(missing)[:10],
        "sockets": len(browsers),
        "sockets_wanted": sum(site.clients for site in sites),
        "sockets_refused": dict(refused),
        "frames_offered": len(sites) * (ramp_s + seconds),
        "frames_sent": len(sent.times),
        "frames_per_s": len(sent.times) / (sent.last_at - wall_before),
        "frames_failed": sent.failed,
        "frames_coalesced": sum(skipped.values()),
        "messages_coalesced": coalesced_messages,
        "messages_expected": expected,
        "messages_received": len(received),
        "messages_lost": expected - len(received),
        "messages_unmatched": unmatched,
        "messages_other": sum(browser.other for browser in browsers),
        "fragment_chars": int(np.median(sizes)) if sizes else None,
        **percentiles_ms(latencies),
        "p99_with_ramp_ms": percentiles_ms(latencies + ramp_latencies)["p99_ms"],
        "send_lag_p99_ms": float(np.percentile(sent.lag_s, 99) * 1000) if sent.lag_s else None,
        "wall_s": wall_s,
        "daphne_cpu_s": cpu_s,
        "daphne_loop_thread_cpu_s": loop_s,
        "daphne_cpu_ms_per_message": 1000 * cpu_s / len(received) if received else None,
        "load_generator_cpu_s": own_cpu_s,
    }


# ----------------------------------------------------------------------------- one layer


async def run_layer(
    server: Server,
    sites: list[Site],
    cookie: str,
    seconds: int,
    samples: int,
    connections: int,
    profile_dir: str | None,
    consumer_phase: bool = False,
    ingest_over: str = "http",
    ramp_s: int = 0,
) -> dict:
    duration_s = samples / FS_HZ
    t0 = float(int(time.time()) - 1)  # frame k has t = t0 + k: a second old when it is sent

    async def ingest(connection: HttpConnection, site: Site, k: int) -> bool | str:
        body = site.frame(SEQ0 + k, t0 + k)
        status, reply = await connection.request(
            "POST",
            "/api/v1/ingest/frames",
            {"Content-Type": "application/json", "Authorization": f"Bearer {site.token}"},
            body,
        )
        if status != 200:
            return f"HTTP {status}"
        receipt = orjson.loads(reply)["accepted"][0]["status"]
        return True if receipt == "ok" else receipt

    async def ingest_ws(sockets: GatewaySockets, site: Site, k: int) -> bool | str:
        reply = await sockets.send_frame(site, site.frame(SEQ0 + k, t0 + k))
        if reply.get("type") != "ack":
            return f"error: {reply.get('error')}"
        return True if reply["status"] == "ok" else reply["status"]

    if ingest_over == "ws":
        ingest, ingest_transport = ingest_ws, GatewaySockets
    else:
        ingest_transport = HttpConnection

    async def coalesced() -> Counter[int]:
        _, reply = await ask(server.port, "GET", "/bench/stats")
        by_pk = {int(pk): count for pk, count in orjson.loads(reply)["coalesced"].items()}
        return Counter({site.index: by_pk[site.pk] for site in sites if by_pk.get(site.pk)})

    def server_sends(to: str):
        """A request that makes the server send a fragment of the live cards' size to ``to``'s group."""

        async def request(connection: HttpConnection, site: Site, k: int) -> bool | str:
            status, _ = await connection.request(
                "POST", f"/bench/send?to={to}&group={site.pk}&t={t0 + k + duration_s:.3f}&size={size}"
            )
            return True if status == 204 else f"HTTP {status}"

        return request

    phase = functools.partial(run_phase, server, sites, seconds, connections, t0=t0, duration_s=duration_s)
    await warm_up(server.port, sites, ingest, connections, ingest_transport)
    await asyncio.sleep(1)  # frame 1 would otherwise be coalesced with frame 0
    live = await phase(
        path="/ws/locations/{pk}/",
        cookie=cookie,
        request=ingest,
        ramp_s=ramp_s,
        coalesced=coalesced,
        transport=ingest_transport,
    )
    size = live["fragment_chars"] or 4000
    group_send = server_sends("bench")
    baseline = await phase(path="/ws/bench/{pk}/", cookie=None, request=group_send, ramp_s=ramp_s)
    report = {"ingest": live, "baseline": baseline}
    if consumer_phase:
        report["consumer"] = await phase(
            path="/ws/locations/{pk}/", cookie=cookie, request=server_sends("location"), ramp_s=ramp_s
        )
    if live["p99_ms"] is not None and baseline["p99_ms"]:
        report["p99_ratio"] = live["p99_ms"] / baseline["p99_ms"]
    if profile_dir:  # both phases again, profiled; the frames follow phase 1's
        for name, path, request, auth, transport in (
            ("ingest", "/ws/locations/{pk}/", ingest, cookie, ingest_transport),
            ("baseline", "/ws/bench/{pk}/", group_send, None, HttpConnection),
        ):
            os.makedirs(os.path.join(profile_dir, name), exist_ok=True)
            await run_phase(
                server,
                sites,
                min(seconds, 10),
                connections,
                path=path,
                cookie=auth,
                request=request,
                t0=t0,
                duration_s=duration_s,
                first_k=ramp_s + seconds + 1 if name == "ingest" else 1,
                profile_dir=os.path.join(profile_dir, name),
                transport=transport,
            )
    return report


# ----------------------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def targets(report: dict) -> tuple[bool, list[str]]:
    """Whether the issue's targets were met, and a verdict for each."""
    live, base = report["ingest"], report["baseline"]
    p99, ratio = live["p99_ms"], report.get("p99_ratio")
    checks = [
        (
            live["frames_sent"] == live["frames_offered"],
            f"{live['frames_sent']:,} of {live['frames_offered']:,} frames ingested ({live['frames_per_s']:.0f}/s)",
        ),
        (  # a frame sent later than this after its second means the server fell behind the gateways
            live["send_lag_p99_ms"] is not None and live["send_lag_p99_ms"] <= KEEP_PACE_MS,
            f"kept pace: p99 of frames' send lag {fmt(live['send_lag_p99_ms'])} ms (target <= {KEEP_PACE_MS:.0f})",
        ),
        (p99 is not None and p99 <= P99_TARGET_MS, f"p99 {fmt(p99)} ms (target <= {P99_TARGET_MS:.0f})"),
        (
            ratio is not None and ratio <= RATIO_TARGET,
            f"p99 / baseline p99 = {fmt(ratio, 2)} (target <= {RATIO_TARGET})",
        ),
        (
            live["messages_lost"] == 0 and base["messages_lost"] == 0,
            f"{live['messages_lost']:,} + {base['messages_lost']:,} messages lost",
        ),
    ]
    return all(ok for ok, _ in checks), [("ok: " if ok else "MISSED: ") + text for ok, text in checks]


PHASE_TITLES = {
    "ingest": "ingest -> live cards",
    "consumer": "LocationConsumer, no ingest",
    "baseline": "baseline: bare consumer",
}


def print_layer(name: str, report: dict) -> None:
    phases = [phase for phase in PHASE_TITLES if phase in report]
    live = report["ingest"]

    def each(fn) -> list[str]:
        return [fn(report[phase]) for phase in phases]

    def failed(phase: dict) -> str:
        return ", ".join(f"{count:,} {why}" for why, count in phase["frames_failed"].items()) or "0"

    def cpu(phase: dict) -> str:
        return (
            f"{phase['daphne_cpu_s']:.1f} s in {phase['wall_s']:.1f} s (loop {phase['daphne_loop_thread_cpu_s']:.1f})"
        )

    print(f"\n== {name} layer: {report['backend']}")
    rows = [
        ("", *[PHASE_TITLES[phase] for phase in phases]),
        ("sockets connected", *each(lambda p: f"{p['sockets']} of {p['sockets_wanted']}")),
        ("frames / group_sends sent", *each(lambda p: f"{p['frames_sent']:,} of {p['frames_offered']:,}")),
        ("  per second", *each(lambda p: f"{p['frames_per_s']:.0f}")),
        ("  failed or not sent", *each(failed)),
        (
            "  coalesced by the server",
            *each(lambda p: f"{p['frames_coalesced']:,} ({p['messages_coalesced']:,} messages)"),
        ),
        ("messages expected", *each(lambda p: f"{p['messages_expected']:,}")),
        ("messages received", *each(lambda p: f"{p['messages_received']:,}")),
        ("messages lost", *each(lambda p: f"{p['messages_lost']:,}")),
        ("fragment size", *each(lambda p: f"{fmt(p['fragment_chars'], 0)} chars")),
        (
            "latency p50 / p99 / max [ms]",
            *each(lambda p: " / ".join(fmt(p[k]) for k in ("p50_ms", "p99_ms", "max_ms"))),
        ),
        ("  p99 including the ramp-up", *each(lambda p: f"{fmt(p['p99_with_ramp_ms'])} ms")),
        ("load generator send lag p99", *each(lambda p: f"{fmt(p['send_lag_p99_ms'])} ms")),
        ("daphne CPU", *each(cpu)),
        ("  per delivered message", *each(lambda p: f"{fmt(p['daphne_cpu_ms_per_message'], 2)} ms")),
        ("load generator + clients CPU", *each(lambda p: f"{p['load_generator_cpu_s']:.1f} s")),
    ]
    for label, *cells in rows:
        print(f"{label:<30}" + "".join(f"{cell:<31}" for cell in cells).rstrip())
    if live["messages_other"]:
        print(f"(and {live['messages_other']} messages without data-t: the events card)")
    for phase in phases:
        for why, count in report[phase]["sockets_refused"].items():
            print(f"({phase}: {count} sockets refused: {why})")
        if report[phase]["messages_unmatched"]:
            print(f"({phase}: {report[phase]['messages_unmatched']} unmatched messages)")
        if report[phase]["messages_lost"]:
            print(f"({phase}: lost, e.g. (location, frame): {report[phase]['lost_examples']})")
    for line, count in report["server_errors"].items():
        print(f"(daphne logged {count}x: {line})")
    met, verdicts = targets(report)
    print(f"targets {'met' if met else 'NOT met'}:")
    for verdict in verdicts:
        print(f"  {verdict}")


def print_profile(directory: str, top: int = 25) -> None:
    """The profiled runs' own CPU time by thread and phase, the top functions by own time, and
    the project's functions by cumulative time."""
    import pstats

    for phase in ("ingest", "baseline"):
        for name, title in (("loop.prof", "event loop thread"), ("threads.prof", "worker threads")):
            path = os.path.join(directory, phase, name)
            if not os.path.exists(path):
                continue
            stats = pstats.Stats(path)
            total = sum(entry[2] for entry in stats.stats.values())
            print(f"\n-- profile, {phase} phase, daphne's {title}: {total:.2f} s of CPU; top {top} by own time")
            stats.sort_stats("tottime").print_stats(top)
            if phase == "ingest" and name == "threads.prof":
                stats.sort_stats("cumulative").print_stats(r"/(metering|dashboard|devices)/", top)


def redis_for_benchmark(url: str | None) -> str:
    """Database 15 of REDIS_URL's server (or 127.0.0.1:6379): away from a running server's groups."""
    parts = urlsplit(url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return urlunsplit(parts._replace(path="/15"))


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2).close()
        return True
    except OSError:
        return False


def forget_redis_keys(url: str, sites: list[Site]) -> None:
    """The groups (channels_redis's default prefix) and live values (Django's cache key format)
    of these locations, which an earlier, interrupted run may have left."""
    import redis

    client = redis.Redis.from_url(url)
    for site in sites:
        client.delete(f"asgi:group:location.{site.pk}", f"asgi:group:bench.{site.pk}", f":1:live:{site.pk}")
    client.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=200)
    parser.add_argument("--clients-per-location", type=float, default=2.5)
    parser.add_argument("--seconds", type=int, default=20, help="measured length of each phase (ingest, baseline)")
    parser.add_argument(
        "--ramp-seconds", type=int, default=RAMP_S, help="seconds of each phase's schedule before the measured ones"
    )
    parser.add_argument("--layer", choices=("memory", "redis", "both"), default="both")
    parser.add_argument("--redis-url", help="default: database 15 of REDIS_URL's server, or of 127.0.0.1:6379")
    parser.add_argument(
        "--http-connections", type=int, default=8, help="keep-alive connections the frames are sent over"
    )
    parser.add_argument(
        "--ingest",
        choices=("ws", "http"),
        default="ws",
        help="how the gateways send their frames: each over its own ingest WebSocket (ws, a gateway streaming "
        "a frame a second keeps its socket open) or POSTed over the keep-alive HTTP connections",
    )
    parser.add_argument("--samples", type=int, default=SAMPLES, help="samples per channel of each frame (6,400 Hz)")
    parser.add_argument(
        "--consumer-phase",
        action="store_true",
        help="a third phase: the baseline's server-side group_send to the real LocationConsumer (no ingest)",
    )
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument("--profile", metavar="DIR", help="profile a third run of the ingest phase and print it")
    args = parser.parse_args(argv)
    if args.locations < 1 or args.seconds < 1 or args.clients_per_location <= 0:
        parser.error("--locations, --seconds and --clients-per-location must be positive")
    if args.ramp_seconds < 0:
        parser.error("--ramp-seconds must not be negative")

    redis_url = args.redis_url or redis_for_benchmark(None)
    layers = ["memory", "redis"] if args.layer == "both" else [args.layer]
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_average_1min": os.getloadavg()[0]},
        "workload": {
            "locations": args.locations,
            "clients_per_location": args.clients_per_location,
            "seconds": args.seconds,
            "ramp_seconds": args.ramp_seconds,
            "samples": args.samples,
            "http_connections": args.http_connections,
            "ingest": args.ingest,
        },
        "layers": {},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="infinity-bench-push-") as tmp:
        template = os.path.join(tmp, "template")
        setup_django(template)
        sites, cookie = prepare(args.locations, args.clients_per_location, args.samples)
        print(
            f"{args.locations} locations, {sum(s.clients for s in sites)} browser sockets "
            f"({args.clients_per_location:g} per location), one frame per location per second "
            f"({args.samples} samples x 7 channels, {len(sites[0].body) / 1000:.0f} kB JSON) "
            + (
                f"over each gateway's ingest WebSocket, {args.http_connections} in flight"
                if args.ingest == "ws"
                else f"over {args.http_connections} HTTP connections"
            )
            + f"; baseline group_sends over {args.http_connections} HTTP connections; {args.seconds} s per phase"
            f" after a ramp-up of {args.ramp_seconds} s"
        )
        print(
            f"machine: {os.cpu_count()} cores shared by daphne, the load generator and the clients (and whatever else "
            f"runs: load average {os.getloadavg()[0]:.1f} at the start); loopback only; Python {report['machine']['python']}"
        )
        for layer in layers:
            if layer == "redis" and not reachable(redis_url):
                message = f"Redis at {redis_url} is unreachable: the Redis layer was NOT measured"
                print(f"\n== redis layer: {message}")
                report["layers"]["redis"] = {"skipped": message}
                if args.layer == "redis":
                    raise SystemExit(message)
                continue
            var_dir = os.path.join(tmp, layer)
            os.makedirs(var_dir)
            shutil.copy(os.path.join(template, "infinity.sqlite3"), var_dir)
            if layer == "redis":
                forget_redis_keys(redis_url, sites)
            server = Server(var_dir, redis_url if layer == "redis" else None)
            profile_dir = None
            if args.profile:
                profile_dir = os.path.abspath(os.path.join(args.profile, layer))
                os.makedirs(profile_dir, exist_ok=True)
            try:
                result = asyncio.run(
                    run_layer(
                        server,
                        sites,
                        cookie,
                        args.seconds,
                        args.samples,
                        args.http_connections,
                        profile_dir,
                        args.consumer_phase,
                        args.ingest,
                        args.ramp_seconds,
                    )
                )
            finally:
                server.stop()
            result["server_errors"] = server.errors()
            if layer == "redis":
                forget_redis_keys(redis_url, sites)
            result["backend"] = (
                f"channels_redis at {redis_url}" if layer == "redis" else "channels.layers.InMemoryChannelLayer"
            )
            result["targets_met"] = targets(result)[0]
            report["layers"][layer] = result
            print_layer(layer, result)
            if profile_dir:
                print_profile(profile_dir)
    report["wall_s"] = time.monotonic() - started
    print(f"\ntotal {report['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    return report


if __name__ == "__main__":
    main()

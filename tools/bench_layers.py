"""Card fan-out through the Redis channel layers: ``python -m tools.bench_layers [--locations 200]
[--sockets 500] [--seconds 10] [--rates 200,800,0] [--redis-url URL] [--card-bytes 6000]``.

Issue 11 item 3: rendered cards travel from the ingest workers to the web processes. This
measures, in one run and with the same load, ``channels_redis``'s core ``RedisChannelLayer``
against its ``RedisPubSubChannelLayer`` for that pattern:

- a *web* process (its own, spawned) holds ``--sockets`` consumers spread over ``--locations``
  location groups, each as Channels' consumers do it: ``new_channel()``, ``group_add()`` and a
  ``receive()`` loop; the WebSocket itself is left out (it costs the same on both layers);
- the *ingest* side (this process) sends a rendered card (``--card-bytes`` of HTML) to one
  location group after another at each offered rate of ``--rates`` (group_sends per second;
  ``0``: as fast as the sending threads can), from 2 threads, each card as the workers send it
  today (``dashboard.broadcast.send_group`` outside an event loop: ``async_to_sync``, so a new
  event loop, and with it a new Redis connection, per card) and, for comparison, from one
  long-lived event loop per thread (``--sender loop``).

For each layer and rate it prints cards delivered per second, the latency from ``group_send``
to the consumer's ``receive()`` (p50/p99, wall clocks of one machine), cards lost, and the CPU
time per delivered card of the web process, of the sending side and of Redis (``INFO cpu``).
Loopback only, bounded (each phase lasts ``--seconds`` plus at most :data:`DRAIN_S`).
``--restart-check`` instead kills and restarts a Redis of its own (``redis-server`` on a free
port, no persistence) under a subscribed consumer and says when cards arrive again.

The pub/sub channels of Redis are not scoped by database number: the run uses a prefix of its
own, so it crosses no running server's groups.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np

LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
SENDER_THREADS = 2
DRAIN_S = 5.0  # after the last send, wait at most this long for the cards still under way
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"


def make_layer(kind: str, redis_url: str, prefix: str):
    """The layer as config/settings.py configures it (the core layer as it did before the switch:
    redis-py 8 needs it without a socket timeout and with a large pool, and a large capacity)."""
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    if kind == "core":
        hosts = [{"address": redis_url, "socket_timeout": None, "max_connections": 1000}]
        return RedisChannelLayer(hosts=hosts, prefix=prefix, capacity=10_000)
    return RedisPubSubChannelLayer(hosts=[redis_url], prefix=prefix)


def group_of(location: int) -> str:
    return f"location.{location}"


def card_html(size: int) -> str:
    """A card-sized fragment (the live cards are about 5-7 kB of HTML)."""
    row = '<tr><td class="name">Circuit</td><td class="num">1,234 W</td><td class="num">0.98</td></tr>\n'
    return ('<section id="card-live-values" class="card">' + row * (size // len(row) + 1))[:size] + "</section>"


def cpu_s(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (all threads) from ``/proc``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- the web side


def web_process(kind: str, redis_url: str, prefix: str, sockets: int, locations: int, control) -> None:
    """Hold ``sockets`` consumers over ``locations`` groups; answer the controller's commands:
    ``("reset",)`` clears the counters, ``("report",)`` sends (received, latencies_s, cpu_s)."""
    asyncio.run(_web(kind, redis_url, prefix, sockets, locations, control))


async def _web(kind: str, redis_url: str, prefix: str, sockets: int, locations: int, control) -> None:
    layer = make_layer(kind, redis_url, prefix)
    latencies: list[float] = []
    count = [0]

    async def consumer(channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            latencies.append(time.time() - message["sent"])
            count[0] += 1

    tasks = []
    for number in range(sockets):
        channel = await layer.new_channel()
        await layer.group_add(group_of(number % locations), channel)
        tasks.append(asyncio.create_task(consumer(channel)))
    loop = asyncio.get_running_loop()
    control.send(("ready",))
    cpu_at = cpu_s()
    while True:
        command = await loop.run_in_executor(None, control.recv)
        if command[0] == "reset":
            latencies.clear()
            count[0] = 0
            cpu_at = cpu_s()
            control.send(("ok",))
        elif command[0] == "count":
            control.send((count[0],))
        elif command[0] == "report":
            control.send((count[0], list(latencies), cpu_s() - cpu_at))
        else:
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ----------------------------------------------------------------------------- the ingest side


@dataclass
class Phase:
    layer: str
    sender: str
    rate: int  # offered group_sends/s, 0 = unpaced
    sent: int = 0
    expected: int = 0
    received: int = 0
    seconds: float = 0.0
    latencies_ms: tuple[float, float] = (float("nan"), float("nan"))
    web_cpu_s: float = 0.0
    sender_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    send_errors: int = 0

    @property
    def delivered_per_s(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def per_card_us(self, cpu: float) -> float:
        return 1e6 * cpu / self.received if self.received else float("nan")


def members(sockets: int, locations: int) -> list[int]:
    """Consumers per location group when ``sockets`` are dealt round-robin over ``locations``."""
    return [sockets // locations + (1 if g < sockets % locations else 0) for g in range(locations)]


def redis_cpu_s(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def send_cards(layer, sender: str, rate: int, seconds: float, locations: int, html: str) -> tuple[list[int], int]:
    """Send cards for ``seconds`` from :data:`SENDER_THREADS` threads; (cards sent per group, failed)."""
    from asgiref.sync import async_to_sync

    sent = [[0] * locations for _ in range(SENDER_THREADS)]
    failed = [0] * SENDER_THREADS
    start = time.perf_counter() + 0.05
    deadline = start + seconds
    per_thread_s = SENDER_THREADS / rate if rate else 0.0

    def message() -> dict:
        return {"type": "card.update", "html": html, "sent": time.time()}

    def paced(number: int, k: int) -> float:
        return start + per_thread_s * k + number / max(rate, 1)

    def per_call(number: int) -> None:  # as a worker sends today: a new loop (and connection) per card
        k = 0
        while True:
            at = paced(number, k)
            if at >= deadline or time.perf_counter() >= deadline:
                return
            if rate and at > time.perf_counter():
                time.sleep(at - time.perf_counter())
            location = (number + SENDER_THREADS * k) % locations
            try:
                async_to_sync(layer.group_send)(group_of(location), message())
                sent[number][location] += 1
            except Exception:
                failed[number] += 1
            k += 1

    def one_loop(number: int) -> None:  # one long-lived loop per sending thread
        async def run() -> None:
            k = 0
            while True:
                at = paced(number, k)
                if at >= deadline or time.perf_counter() >= deadline:
                    return
                if rate and at > time.perf_counter():
                    await asyncio.sleep(at - time.perf_counter())
                location = (number + SENDER_THREADS * k) % locations
                try:
                    await layer.group_send(group_of(location), message())
                    sent[number][location] += 1
                except Exception:
                    failed[number] += 1
                k += 1

        asyncio.run(run())

    target = per_call if sender == "call" else one_loop
    threads = [threading.Thread(target=target, args=(n,)) for n in range(SENDER_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [sum(column) for column in zip(*sent)], sum(failed)


def run_phase(phase: Phase, layer, control, redis_client, seconds: float, locations: int, counts: list[int], html: str):
    control.send(("reset",))
    control.recv()
    cpu_before, redis_before = cpu_s(), redis_cpu_s(redis_client)
    started = time.perf_counter()
    sends_per_group, phase.send_errors = send_cards(layer, phase.sender, phase.rate, seconds, locations, html)
    phase.sent = sum(sends_per_group)
    phase.expected = sum(n * c for n, c in zip(sends_per_group, counts))
    drain_until = time.perf_counter() + DRAIN_S
    while time.perf_counter() < drain_until:
        control.send(("count",))
        (received,) = control.recv()
        if received >= phase.expected:
            break
        time.sleep(0.05)
    phase.seconds = time.perf_counter() - started
    phase.sender_cpu_s = cpu_s() - cpu_before
    phase.redis_cpu_s = redis_cpu_s(redis_client) - redis_before
    control.send(("report",))
    phase.received, latencies, phase.web_cpu_s = control.recv()
    if latencies:
        p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
        phase.latencies_ms = (float(p50), float(p99))
    return phase


def measure(kind: str, args, html: str) -> list[Phase]:
    import redis

    prefix = f"benchlayers{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    web = context.Process(
        target=web_process, args=(kind, args.redis_url, prefix, args.sockets, args.locations, theirs), daemon=True
    )
    web.start()
    redis_client = redis.Redis.from_url(args.redis_url)
    phases = []
    try:
        if not ours.poll(60):
            raise SystemExit(f"{kind}: the web process did not get its {args.sockets} consumers ready in 60 s")
        ours.recv()
        layer = make_layer(kind, args.redis_url, prefix)
        counts = members(args.sockets, args.locations)
        for sender in args.senders:
            for rate in args.rates:
                phase = run_phase(
                    Phase(kind, sender, rate), layer, ours, redis_client, args.seconds, args.locations, counts, html
                )
                phases.append(phase)
                print_phase(phase)
    finally:
        ours.send(("stop",))
        web.join(10)
        if web.is_alive():
            web.kill()
        for key in redis_client.scan_iter(f"{prefix}*"):  # the core layer's groups and channels
            redis_client.delete(key)
        redis_client.close()
    return phases


HEADER = (
    f"{'layer':<7} {'sender':<6} {'offered/s':>9} {'sent':>6} {'delivered/s':>11} {'lost':>6} "
    f"{'p50 ms':>7} {'p99 ms':>7} {'web µs/card':>11} {'send µs/card':>12} {'redis µs/card':>13}"
)


def print_phase(phase: Phase) -> None:
    lost = phase.expected - phase.received
    print(
        f"{phase.layer:<7} {phase.sender:<6} {phase.rate or 'max':>9} {phase.sent:>6} {phase.delivered_per_s:>11.0f} "
        f"{lost:>6} {phase.latencies_ms[0]:>7.1f} {phase.latencies_ms[1]:>7.1f} "
        f"{phase.per_card_us(phase.web_cpu_s):>11.0f} {phase.per_card_us(phase.sender_cpu_s):>12.0f} "
        f"{phase.per_card_us(phase.redis_cpu_s):>13.0f}"
        + (f"  ({phase.send_errors} sends failed)" if phase.send_errors else ""),
        flush=True,
    )


# ----------------------------------------------------------------------------- Redis restarts


def restart_check(kind: str) -> str:
    """A consumer in a group of a Redis of its own (``redis-server`` without persistence, on a
    free port), Redis killed and started again: when does a card reach the consumer again?"""
    import socket
    import subprocess
    import tempfile

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start() -> subprocess.Popen:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return server
            except OSError:
                time.sleep(0.1)
        server.kill()
        raise RuntimeError("redis-server did not start")

    async def scenario() -> str:
        import logging

        logging.getLogger("channels_redis").setLevel(logging.CRITICAL)  # its reconnect attempts, once a second
        server = start()
        try:
            web, ingest = make_layer(kind, url, "restart."), make_layer(kind, url, "restart.")
            channel = await web.new_channel()
            await web.group_add("location.1", channel)
            arrived: list[int] = []

            async def consume() -> None:
                while True:
                    try:
                        arrived.append((await web.receive(channel))["n"])
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # the core layer's receive fails while Redis is down
                        await asyncio.sleep(0.2)

            consumer = asyncio.create_task(consume())
            await ingest.group_send("location.1", {"type": "card.update", "n": 0})
            await asyncio.sleep(0.5)
            if arrived != [0]:
                return "no card before the restart"
            server.kill()
            server.wait()
            await asyncio.sleep(2)
            server = start()
            back_at = time.monotonic()
            for n in range(1, 41):  # a card every 0.5 s for 20 s
                try:
                    await ingest.group_send("location.1", {"type": "card.update", "n": n})
                except Exception:
                    pass
                await asyncio.sleep(0.5)
                if any(k >= 1 for k in arrived):
                    return f"cards arrive again {time.monotonic() - back_at:.1f} s after Redis is back"
            return "NO card in the 20 s after Redis is back (its group memberships were lost with it)"
        finally:
            consumer.cancel()
            server.kill()
            server.wait()

    return asyncio.run(scenario())


def main(argv: list[str] | None = None) -> list[Phase]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0, help="sending time of each phase")
    parser.add_argument("--rates", default="200,800,0", help="offered group_sends/s, comma-separated; 0 = unpaced")
    parser.add_argument("--card-bytes", type=int, default=6000)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--layers", default="core,pubsub", help="core, pubsub or both (comma-separated)")
    parser.add_argument(
        "--sender",
        choices=("call", "loop", "both"),
        default="both",
        help="call: a new event loop per card (as run_ingest sends today); loop: one loop per sending thread",
    )
    parser.add_argument(
        "--restart-check", action="store_true", help="only: does a consumer get cards after Redis restarts?"
    )
    args = parser.parse_args(argv)
    try:
        args.rates = [int(rate) for rate in args.rates.split(",")]
    except ValueError:
        parser.error("--rates: integers separated by commas")
    args.layers = [layer.strip() for layer in args.layers.split(",")]
    if any(layer not in LAYERS for layer in args.layers):
        parser.error(f"--layers: choose from {', '.join(LAYERS)}")
    if not (1 <= args.locations <= args.sockets <= 20_000) or not 0 < args.seconds <= 600:
        parser.error("need 1 <= locations <= sockets <= 20000 and 0 < seconds <= 600")
    if any(rate < 0 or rate > 100_000 for rate in args.rates) or not 100 <= args.card_bytes <= 1_000_000:
        parser.error("rates 0-100000, card bytes 100-1000000")
    args.senders = ["call", "loop"] if args.sender == "both" else [args.sender]
    if args.restart_check:
        for kind in args.layers:
            print(
                f"{kind}: Redis (no persistence) killed and restarted under a subscribed consumer: {restart_check(kind)}"
            )
        return []

    html = card_html(args.card_bytes)
    print(
        f"{args.sockets} consumers over {args.locations} location groups in one web process; cards of "
        f"{len(html)} bytes from {SENDER_THREADS} sending threads; {args.seconds:g} s per phase; Redis {args.redis_url}; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print(HEADER)
    phases = []
    for kind in args.layers:
        phases += measure(kind, args, html)
    return phases


if __name__ == "__main__":
    main()

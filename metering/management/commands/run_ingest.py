from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from metering.ingest.stream import RedisStream
from metering.ingest.worker import Worker


def parse_shards(text: str, shards: int) -> set[int]:
    """``"0-3,8"`` as ``{0, 1, 2, 3, 8}``, each below ``shards``."""
    chosen: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise CommandError(f"--shards {text!r}: {part!r} is not a shard number or range like 0-3") from None
        if not 0 <= first <= last < shards:
            raise CommandError(f"--shards {text!r}: {part!r} is outside 0-{shards - 1} (INGEST_SHARDS={shards})")
        chosen.update(range(first, last + 1))
    return chosen


class Command(BaseCommand):
    help = (
        "Meter and store the frames the web processes hand to the Redis stream (REDIS_URL), as one of "
        "several ingest workers sharing its shards. Stops cleanly on SIGTERM or Ctrl+C."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default=None, help="Redis URL (default: REDIS_URL)")
        parser.add_argument("--shards", default=None, help="only these shards, e.g. 0-7 or 0,2,4 (default: all)")
        parser.add_argument("--name", default=None, help="consumer name (default: host-pid-random)")
        parser.add_argument(
            "--prefix", default=None, help="key prefix of the streams (default: INGEST_PREFIX, 'ingest')"
        )
        parser.add_argument(
            "--lease-s", type=float, default=None, help="shard lease time (default: INGEST_LEASE_S, 10)"
        )

    def handle(
        self,
        *args,
        url: str | None,
        shards: str | None,
        name: str | None,
        prefix: str | None,
        lease_s: float | None,
        **options,
    ) -> None:
        url = url or getattr(settings, "INGEST_STREAM_URL", settings.REDIS_URL)
        if not url:
            raise CommandError("set REDIS_URL (e.g. redis://127.0.0.1:6379/0) or pass --url")
        stream = RedisStream(url, prefix=prefix)
        allowed = parse_shards(shards, stream.shards) if shards else None
        worker = Worker(stream, name=name, allowed=allowed, lease_s=lease_s)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"ingest worker {worker.name} on {url}, {stream.shards} shards; stop with Ctrl+C or SIGTERM")
        worker.run(stop)
        stream.close()

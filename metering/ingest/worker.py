"""Ingest workers: take entries from the stream, meter, store, answer.

:func:`metering.ingest.process.process_entry` is the one function that turns an entry into its
outcome; the in-process stream calls it in the caller's thread, :class:`Worker` for each entry of
its shards.

A worker owns shards through leases in Redis (``SET NX PX``), renewed every third of their
time while it runs; the live workers (a sorted set of heartbeats) share the shards fairly,
``ceil(shards / workers)`` at most each. A shard is metered by its owner alone and in order:
when a worker takes a shard over, it first claims the entries its previous owner read but did
not acknowledge and processes them, then the new ones. An entry is acknowledged (and deleted)
only after its frames are committed, so a worker that dies leaves nothing half done: the next
owner processes its entries again, and the per-Power-Box ``seq`` window makes a frame that was
committed already a duplicate. See docs/deploy.md, "When a frame is acknowledged".
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib

import redis
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from metering.ingest.process import Entry, process_entry
from metering.ingest.stream import RedisStream, entry_from, worker_name
from metering.ingest.stream import stream as this_process_stream

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 10.0
# Entries read from the stream at a time, per shard.
READ_COUNT = 16
MAX_BACKOFF_S = 10.0


class Worker:
    """One ingest worker on a :class:`RedisStream` (``manage.py run_ingest`` runs one)."""

    def __init__(
        self,
        stream: RedisStream,
        *,
        name: str | None = None,
        lease_s: float | None = None,
        allowed: set[int] | None = None,
        block_ms: int = 500,
    ) -> None:
        from django.conf import settings

        self.stream = stream
        self.name = name or worker_name()
        self.lease_ms = int((lease_s or getattr(settings, "INGEST_LEASE_S", DEFAULT_LEASE_S)) * 1000)
        self.allowed = sorted(allowed if allowed is not None else range(stream.shards))
        self.block_ms = min(block_ms, self.lease_ms // 3)
        # shard -> "0" while its pending entries come first (taken over, or after an error), ">" then
        self.owned: dict[int, str] = {}
        self.valid_until: dict[int, float] = {}  # shard -> monotonic time its lease surely lasts
        # Shards no worker took within its share (workers pinned to shard ranges): kept beyond the
        # share; and since when each allowed shard has been seen without a lease.
        self.orphans: set[int] = set()
        self.unleased_since: dict[int, float] = {}
        self.next_tick = 0.0
        self.processed = 0
        # False: stop without giving up leases or the heartbeat, as a killed process would.
        self.graceful = True

    # -- the loop

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; Redis or database outages are waited out with backoff."""
        backoff_s = 0.1
        log.info("ingest worker %s started (shards %s of %d)", self.name, _ranges(self.allowed), self.stream.shards)
        try:
            while not stop.is_set():
                try:
                    self.step()
                    backoff_s = 0.1
                except redis.RedisError as exc:
                    log.warning("ingest worker %s: Redis: %s; retrying in %.1f s", self.name, exc, backoff_s)
                    self._lost_all()
                    self.stream.forget_groups()  # a Redis restarted without its data lost them
                    stop.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
                except (OperationalError, InterfaceError) as exc:
                    log.warning("ingest worker %s: database: %s; retrying in %.1f s", self.name, exc, backoff_s)
                    connection.close()
                    for shard in self.owned:
                        self.owned[shard] = "0"  # the failed entry is pending: first again, in order
                    self._wait_keeping_leases(stop, backoff_s)
                    backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
        finally:
            if self.graceful:
                self._leave()
            connection.close()
            log.info("ingest worker %s stopped after %d entries", self.name, self.processed)

    def _wait_keeping_leases(self, stop: threading.Event, seconds: float) -> None:
        """Wait out a database outage with the heartbeat and leases renewed: another worker would
        wait for the same database, and each move of a shard drops its Power Boxes' leftover
        samples (tests/faults: a 2 s restart of PostgreSQL moved shards back and forth)."""
        deadline = time.monotonic() + seconds
        while not stop.wait(max(0.0, min(deadline - time.monotonic(), self.lease_ms / 3000))):
            if time.monotonic() >= deadline:
                return
            self.tick()  # Redis errors go to run(), as from step()

    def step(self) -> None:
        """Keep the leases, then process one read of pending or new entries."""
        if time.monotonic() >= self.next_tick:
            self.tick()
        pending = {shard: "0" for shard, start in self.owned.items() if start == "0"}
        if pending:
            batches = self.stream.read(self.name, pending, READ_COUNT, None)
            done = {shard for shard, entries in batches if entries}
            for shard in pending.keys() - done:
                self.owned[shard] = ">"  # nothing left pending: on to new entries
        elif self.owned:
            batches = self.stream.read(self.name, dict.fromkeys(self.owned, ">"), READ_COUNT, self.block_ms)
        else:
            time.sleep(self.block_ms / 1000)
            return
        for shard, entries in batches:
            for entry_id, fields in entries:
                if not self._still_owns(shard):
                    break  # its next owner claims what is left, in order
                self._handle(shard, entry_id, fields)

    def _handle(self, shard: int, entry_id: bytes, fields: dict) -> None:
        close_old_connections()
        try:
            entry = entry_from(fields)
        except (KeyError, ValueError) as exc:  # not an entry this version writes: answer nobody
            log.error("ingest entry %s of shard %d is garbled (%s); dropped", entry_id, shard, exc)
            self.stream.finish(shard, entry_id, Entry(0, "", 0.0), {})
            return
        try:
            result = process_entry(entry)
        except (OperationalError, InterfaceError, redis.RedisError):
            raise
        except Exception:  # one bad entry must not stop its shard (it would be retried forever)
            log.exception("ingest entry %s of shard %d could not be processed", entry_id, shard)
            result = {"error": "internal error, frame not stored", "field": None, "status": 500}
        self.stream.finish(shard, entry_id, entry, result)
        self.processed += 1

    # -- leases

    def tick(self) -> None:
        """Heartbeat, renew the leases, and take or give up shards towards a fair share."""
        now = time.monotonic()
        self.next_tick = now + self.lease_ms / 3000
        live = self.stream.live_workers(self.name, self.lease_ms)
        share = math.ceil(self.stream.shards / max(live, 1))
        before = set(self.owned)
        for shard in list(self.owned):
            if self.stream.renew_lease(shard, self.name, self.lease_ms):
                self.valid_until[shard] = now + self.lease_ms / 1000 * 0.8
            else:
                self._lost(shard)
        if len(self.owned) <= share:
            self.orphans.clear()  # within the share now: ordinary shards again
        regular = sorted((shard for shard in self.owned if shard not in self.orphans), reverse=True)
        for shard in regular[: max(len(regular) - share, 0)]:
            self.stream.release_lease(shard, self.name)  # a newcomer takes it over
            self._lost(shard)
        if len(self.owned) < share:
            start = zlib.crc32(self.name.encode()) % len(self.allowed) if self.allowed else 0
            for shard in self.allowed[start:] + self.allowed[:start]:
                if len(self.owned) >= share:
                    break
                if shard not in self.owned and self.stream.take_lease(shard, self.name, self.lease_ms):
                    self.stream.ensure_group(shard)
                    claimed = self.stream.claim(shard, self.name)
                    self.owned[shard] = "0"
                    self.valid_until[shard] = now + self.lease_ms / 1000 * 0.8
                    if claimed:
                        log.info("ingest worker %s took over %d pending entries of shard %d", self.name, claimed, shard)
        self._take_orphans(now)
        if set(self.owned) != before:
            log.info(
                "ingest worker %s owns shards %s (%d live workers)",
                self.name,
                _ranges(sorted(self.owned)) or "none",
                live,
            )

    def _take_orphans(self, now: float) -> None:
        """Take the allowed shards that stayed without a lease for two lease times, beyond the share.

        The fair share counts every live worker, also those not allowed to take a shard: with
        workers pinned to shard ranges (``--shards``) a range can have more shards than its
        workers' shares, and its Power Boxes would wait for ever.
        """
        free = {shard for shard in self.allowed if shard not in self.owned and not self.stream.lease_holder(shard)}
        self.unleased_since = {shard: self.unleased_since.get(shard, now) for shard in free}
        # Long enough for the fair share of every worker to have taken it if any could.
        waited = [shard for shard, since in self.unleased_since.items() if now - since >= 2 * self.lease_ms / 1000]
        for shard in sorted(waited):
            if self.stream.take_lease(shard, self.name, self.lease_ms):
                self.stream.ensure_group(shard)
                claimed = self.stream.claim(shard, self.name)
                self.owned[shard] = "0"
                self.valid_until[shard] = now + self.lease_ms / 1000 * 0.8
                self.orphans.add(shard)
                log.info(
                    "ingest worker %s took shard %d that no other worker took (%d pending)", self.name, shard, claimed
                )
                self.unleased_since.pop(shard, None)

    def _still_owns(self, shard: int) -> bool:
        if shard not in self.owned:
            return False
        if time.monotonic() < self.valid_until.get(shard, 0.0):
            return True
        now = time.monotonic()
        if self.stream.renew_lease(shard, self.name, self.lease_ms):
            self.valid_until[shard] = now + self.lease_ms / 1000 * 0.8
            return True
        self._lost(shard)
        return False

    def _lost(self, shard: int) -> None:
        self.owned.pop(shard, None)
        self.orphans.discard(shard)
        self.valid_until.pop(shard, None)

    def _lost_all(self) -> None:
        for shard in list(self.owned):
            self._lost(shard)
        self.next_tick = 0.0

    def _leave(self) -> None:
        try:
            for shard in list(self.owned):
                self.stream.release_lease(shard, self.name)
            self.stream.leave(self.name)
        except redis.RedisError as exc:
            log.warning("ingest worker %s could not give up its leases: %s", self.name, exc)
        self._lost_all()


def _ranges(shards: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0-2,5"``."""
    runs: list[list[int]] = []
    for shard in shards:
        if runs and runs[-1][1] == shard - 1:
            runs[-1][1] = shard
        else:
            runs.append([shard, shard])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def run(stop: threading.Event, *, stream: RedisStream | None = None, **options) -> Worker:
    """Run one worker on ``stream`` (this process's) until ``stop`` is set; returns it."""
    stream = stream or this_process_stream()
    if not isinstance(stream, RedisStream):
        raise RuntimeError("ingest workers need a Redis stream: set REDIS_URL")
    worker = Worker(stream, **options)
    worker.run(stop)
    return worker

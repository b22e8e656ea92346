"""The ingest stream: frames from the web side to the ingest workers, receipts back.

Two implementations of one interface, :meth:`submit` (blocking) and :meth:`asubmit`:

- :class:`InProcessStream` (no ``REDIS_URL``, the embedded default): :func:`~metering.ingest.process.process_entry` runs in
  the caller's thread, exactly as the transports called ``ingest_frames`` before.
- :class:`RedisStream`: Redis Streams with one consumer group. Frames are partitioned by Power
  Box into ``INGEST_SHARDS`` streams ``<prefix>:<shard>``; a worker owns a shard through a
  lease (``<prefix>:lease:<shard>``) and meters its entries in order, alone (see
  :mod:`metering.ingest.worker`). The web side adds an entry, then waits for the worker's
  outcome on its process's reply list (``<prefix>:inbox:<uuid>``): the device is answered only
  after the worker's commit, with the same receipts and errors as before.

An entry's fields: ``gateway`` (id), ``transport``, ``now`` (the server time the frames were
checked against), ``reply`` and ``rid`` (where to answer), and the frames: ``binary`` (a
binary ``IFB1`` message as received, already compact) or ``meta`` + ``block`` (the parsed
frames, lossless: names, ``seq``, ``t``... as JSON and the samples as float64).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import os
import threading
import time
import uuid
import zlib
from dataclasses import dataclass

import numpy as np
import orjson
from django.conf import settings

from devices.models import Gateway
from metering.ingest.frames import InputReading, SampleFrame
from metering.ingest.process import BatchOutcome, Entry, IngestError, Receipt, process_entry

log = logging.getLogger(__name__)

DEFAULT_SHARDS = 16
DEFAULT_PREFIX = "ingest"
GROUP = "ingest"
# A device's request waits this long for its outcome, then gets a 503 (it retries; a frame that
# was stored meanwhile is then a duplicate).
DEFAULT_REPLY_TIMEOUT_S = 10.0
# New frames are refused (503) while the oldest unprocessed entry of their shard is older than
# this: they could not be answered in time anyway, and waiting would only grow the backlog.
DEFAULT_MAX_LAG_S = 5.0
# ... or while the shard holds this many unprocessed entries. It bounds entries, not bytes: an
# entry holds a frame's samples as float64 (docs/deploy.md gives the worst case).
DEFAULT_MAX_BACKLOG = 2_000


def shard_of(powerbox_serial: str, shards: int) -> int:
    """The shard of a Power Box: CRC-32 of its serial modulo ``shards``, the same in every process
    (Python's ``hash()`` of a string differs between processes)."""
    if shards < 1:
        raise ValueError(f"shards must be 1 or more, got {shards}")
    return zlib.crc32(powerbox_serial.encode("utf-8")) % shards


class Busy(Exception):
    """The stream cannot take or answer this frame in time: answer 503 with ``Retry-After``."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def as_dict(self) -> dict[str, str | None]:
        return {"error": self.message, "field": None}


class Refused(IngestError):
    """A frame the worker refused (400, 403, 409, 422, or 500 for a failure of the server),
    already recorded as an "Invalid frame" Event by the worker: the transport only answers it."""


def outcome_from(result: dict) -> BatchOutcome:
    """The worker's JSON-able result as the transports know it: receipts, or :class:`Refused`."""
    if "error" in result:
        raise Refused(result["error"], result.get("field"), result.get("status", 422))
    return BatchOutcome([Receipt(r["seq"], r["status"], r.get("gap_s")) for r in result["accepted"]])


class InProcessStream:
    """No stream at all: the caller's thread meters and stores (the embedded default)."""

    def submit(
        self, gateway: Gateway, frames: list[SampleFrame], transport: str, *, binary: bytes | None = None
    ) -> BatchOutcome:
        entry = Entry(gateway.pk, transport, time.time(), frames=frames, gateway=gateway)
        return outcome_from(process_entry(entry))

    async def asubmit(
        self, gateway: Gateway, frames: list[SampleFrame], transport: str, *, binary: bytes | None = None
    ) -> BatchOutcome:
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.submit, thread_sensitive=True)(gateway, frames, transport, binary=binary)

    def check_backlog(self, powerbox_serial: str) -> None:
        """Never busy: the caller does the work."""


# --------------------------------------------------------------------------- entry encoding


def pack_frames(frames: list[SampleFrame]) -> dict[str, bytes]:
    """The frames as stream fields, lossless: ``meta`` (JSON) and ``block`` (float64 samples)."""
    meta, blocks = [], []
    for frame in frames:
        if frame.block is not None:
            block = frame.block
        else:
            block = np.array([*frame.voltages.values(), *frame.currents.values()], dtype=np.float64)
        meta.append(
            {
                "v": frame.version,
                "powerbox": frame.powerbox,
                "seq": frame.seq,
                "t": frame.t,
                "fs": frame.fs_hz,
                "voltages": list(frame.voltages),
                "currents": list(frame.currents),
                "inputs": [[name, r.state, r.pulses] for name, r in frame.inputs.items()],
                "n": int(block.shape[1]),
            }
        )
        blocks.append(np.ascontiguousarray(block, dtype="<f8").tobytes())
    return {"meta": orjson.dumps(meta), "block": b"".join(blocks)}


def unpack_frames(meta: bytes, block: bytes) -> list[SampleFrame]:
    """The inverse of :func:`pack_frames`: read-only float64 rows of one block per frame."""
    frames, offset = [], 0
    for doc in orjson.loads(meta):
        names = doc["voltages"] + doc["currents"]
        count = len(names) * doc["n"]
        rows = np.frombuffer(block, dtype="<f8", count=count, offset=offset).reshape(len(names), doc["n"])
        offset += count * 8
        n_voltages = len(doc["voltages"])
        frames.append(
            SampleFrame(
                version=doc["v"],
                powerbox=doc["powerbox"],
                seq=doc["seq"],
                t=doc["t"],
                fs_hz=doc["fs"],
                voltages=dict(zip(names[:n_voltages], rows[:n_voltages])),
                currents=dict(zip(names[n_voltages:], rows[n_voltages:])),
                inputs={name: InputReading(state, pulses) for name, state, pulses in doc["inputs"]},
                block=rows,
            )
        )
    return frames


def entry_fields(entry: Entry) -> dict[str, bytes | str]:
    fields: dict[str, bytes | str] = {
        "gateway": str(entry.gateway_id),
        "transport": entry.transport,
        "now": repr(entry.now),
        "reply": entry.reply,
        "rid": entry.rid,
    }
    if entry.binary is not None:
        fields["binary"] = entry.binary
    else:
        fields.update(pack_frames(entry.frames or []))
    return fields


def entry_from(fields: dict[bytes, bytes]) -> Entry:
    binary = fields.get(b"binary")
    return Entry(
        gateway_id=int(fields[b"gateway"]),
        transport=fields[b"transport"].decode(),
        now=float(fields[b"now"]),
        frames=None if binary is not None else unpack_frames(fields[b"meta"], fields[b"block"]),
        binary=binary,
        reply=fields.get(b"reply", b"").decode(),
        rid=fields.get(b"rid", b"").decode(),
    )


# ------------------------------------------------------------------------------------ Redis

# Add an entry unless its shard is behind: atomic, one round trip. The age of the oldest entry
# is read from its id (milliseconds of Redis's clock) against Redis's clock.
_ADD = """
local len = redis.call('XLEN', KEYS[1])
if len >= tonumber(ARGV[1]) then return {0, len, -1} end
if len > 0 then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  local ms = tonumber(string.match(oldest[1][1], '^(%d+)'))
  local now = redis.call('TIME')
  local age = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ms
  if age > tonumber(ARGV[2]) then return {0, len, age} end
end
return {1, redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))}
"""

# Extend a lease only while it is still ours; give it up only if it is ours.
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


@dataclass
class Backlog:
    """A shard's unprocessed entries (read or not) and the age of the oldest one."""

    entries: int
    oldest_age_s: float | None


class RedisStream:
    """Redis Streams, ``shards`` streams and one consumer group (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        shards: int | None = None,
        prefix: str | None = None,
        reply_timeout_s: float | None = None,
        max_lag_s: float | None = None,
        max_backlog: int | None = None,
    ) -> None:
        import redis

        self.url = url
        self.shards = shards or getattr(settings, "INGEST_SHARDS", DEFAULT_SHARDS)
        self.prefix = prefix or getattr(settings, "INGEST_PREFIX", DEFAULT_PREFIX)
        self.reply_timeout_s = reply_timeout_s or getattr(settings, "INGEST_REPLY_TIMEOUT_S", DEFAULT_REPLY_TIMEOUT_S)
        self.max_lag_s = max_lag_s or getattr(settings, "INGEST_MAX_LAG_S", DEFAULT_MAX_LAG_S)
        self.max_backlog = max_backlog or getattr(settings, "INGEST_MAX_BACKLOG", DEFAULT_MAX_BACKLOG)
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30)
        self._add = self.redis.register_script(_ADD)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._groups: set[int] = set()
        self._inbox = f"{self.prefix}:inbox:{uuid.uuid4().hex}"
        self._waiting: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()

    # -- keys

    def key(self, shard: int) -> str:
        return f"{self.prefix}:{shard}"

    def lease_key(self, shard: int) -> str:
        return f"{self.prefix}:lease:{shard}"

    @property
    def workers_key(self) -> str:
        return f"{self.prefix}:workers"

    def ensure_group(self, shard: int) -> None:
        """Create the shard's stream and consumer group once (from its first entry, id 0)."""
        import redis

        if shard in self._groups:
            return
        try:
            self.redis.xgroup_create(self.key(shard), GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(shard)

    def forget_groups(self) -> None:
        """Create the groups again before their next use (after Redis lost them)."""
        self._groups.clear()

    # -- web side

    def submit(
        self, gateway: Gateway, frames: list[SampleFrame], transport: str, *, binary: bytes | None = None
    ) -> BatchOutcome:
        """Hand the frames to their shard and wait for the worker's outcome (after its commit).

        ``binary``: the binary message the frames were decoded from, sent instead of the
        decoded frames (a quarter of their size). Raises :class:`Refused` for a refused
        frame, :class:`Busy` when the shard is behind or no worker answers in time.
        """
        future = self._send(gateway, frames, transport, binary)
        try:
            return outcome_from(future.result(self.reply_timeout_s))
        except concurrent.futures.TimeoutError:
            raise self._no_answer() from None
        finally:
            self._forget(future)

    async def asubmit(
        self, gateway: Gateway, frames: list[SampleFrame], transport: str, *, binary: bytes | None = None
    ) -> BatchOutcome:
        """:meth:`submit` for the event loop: the entry is added on a thread, the wait holds none."""
        loop = asyncio.get_running_loop()
        future = await loop.run_in_executor(None, self._send, gateway, frames, transport, binary)
        try:
            return outcome_from(await asyncio.wait_for(asyncio.wrap_future(future), self.reply_timeout_s))
        except TimeoutError:
            raise self._no_answer() from None
        finally:
            self._forget(future)

    def _no_answer(self) -> Busy:
        return Busy(f"no ingest worker answered within {self.reply_timeout_s:g} s; send the frame again", 5)

    def _send(
        self, gateway: Gateway, frames: list[SampleFrame], transport: str, binary: bytes | None
    ) -> concurrent.futures.Future:
        shard = shard_of(frames[0].powerbox, self.shards)
        self.ensure_group(shard)
        self._start_listener()
        rid = uuid.uuid4().hex
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.rid = rid  # type: ignore[attr-defined]
        with self._lock:
            self._waiting[rid] = future
        entry = Entry(gateway.pk, transport, time.time(), frames=frames, binary=binary, reply=self._inbox, rid=rid)
        fields = entry_fields(entry)
        args = [self.max_backlog, int(self.max_lag_s * 1000)]
        for name, value in fields.items():
            args += [name, value]
        try:
            added = self._add(keys=[self.key(shard)], args=args)
        except BaseException:
            self._forget(future)
            self.forget_groups()
            raise
        if added[0] == 0:
            self._forget(future)
            entries, age_ms = int(added[1]), int(added[2])
            behind = f"its oldest frame waits for {age_ms / 1000:.1f} s" if age_ms >= 0 else f"{entries} frames wait"
            raise Busy(f"ingest is behind ({behind}); send the frame again later", self._retry_after(age_ms))
        return future

    def _retry_after(self, age_ms: int) -> int:
        return max(1, math.ceil(age_ms / 1000 if age_ms >= 0 else self.max_lag_s))

    def _forget(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._waiting.pop(future.rid, None)  # type: ignore[attr-defined]

    def _start_listener(self) -> None:
        with self._lock:
            if self._listener is not None and self._listener.is_alive():
                return
            self._closed.clear()
            self._listener = threading.Thread(target=self._listen, name="ingest-replies", daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        """One connection per process waits for every outcome addressed to this process."""
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=10)
        backoff_s = 0.1
        while not self._closed.is_set():
            try:
                popped = client.blpop([self._inbox], timeout=1)
                backoff_s = 0.1
            except redis.RedisError as exc:
                log.warning("ingest replies: %s; retrying in %.1f s", exc, backoff_s)
                self._closed.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            if popped is None:
                continue
            result = orjson.loads(popped[1])
            with self._lock:
                future = self._waiting.pop(result.pop("rid", ""), None)
            if future is not None and not future.done():
                future.set_result(result)
        client.close()

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None and self._listener.is_alive():
            import redis

            try:
                self.redis.rpush(self._inbox, b"{}")  # wakes the listener from its wait
                self.redis.pexpire(self._inbox, 1000)
            except redis.RedisError:
                pass
            self._listener.join(timeout=5)
        self.redis.close()

    def check_backlog(self, powerbox_serial: str) -> None:
        """Raise :class:`Busy` when this Power Box's shard is behind (what :meth:`submit` checks
        atomically as it adds the entry; for a transport that wants to refuse early)."""
        backlog = self.backlog(shard_of(powerbox_serial, self.shards))
        if backlog.entries >= self.max_backlog:
            raise Busy(f"ingest is behind ({backlog.entries} frames wait); send the frame again later", 5)
        if backlog.oldest_age_s is not None and backlog.oldest_age_s > self.max_lag_s:
            raise Busy(
                f"ingest is behind (its oldest frame waits for {backlog.oldest_age_s:.1f} s); send the frame again later",
                self._retry_after(int(backlog.oldest_age_s * 1000)),
            )

    def backlog(self, shard: int) -> Backlog:
        """Entries are deleted once acknowledged, so the stream's length is its backlog."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.key(shard))
            pipe.xrange(self.key(shard), count=1)
            pipe.time()
            entries, oldest, (seconds, micros) = pipe.execute()
        if not oldest:
            return Backlog(entries, None)
        oldest_ms = int(oldest[0][0].split(b"-")[0])
        return Backlog(entries, max(0.0, (seconds * 1000 + micros / 1000 - oldest_ms) / 1000))

    # -- worker side: leases

    def lease_holder(self, shard: int) -> bytes | None:
        """The name of the worker holding the shard's lease, or None."""
        return self.redis.get(self.lease_key(shard))

    def take_lease(self, shard: int, owner: str, ttl_ms: int) -> bool:
        """Lease a free shard, or keep one that is still ours (after a lost connection)."""
        if self.redis.set(self.lease_key(shard), owner, nx=True, px=ttl_ms):
            return True
        return self.renew_lease(shard, owner, ttl_ms)

    def renew_lease(self, shard: int, owner: str, ttl_ms: int) -> bool:
        return bool(self._renew(keys=[self.lease_key(shard)], args=[owner, ttl_ms]))

    def release_lease(self, shard: int, owner: str) -> bool:
        return bool(self._release(keys=[self.lease_key(shard)], args=[owner]))

    def live_workers(self, owner: str, ttl_ms: int) -> int:
        """Announce ``owner`` alive for ``ttl_ms``, forget the silent, count the live."""
        seconds, micros = self.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.workers_key, {owner: now_ms + ttl_ms})
            pipe.zremrangebyscore(self.workers_key, "-inf", now_ms)
            pipe.zcard(self.workers_key)
            pipe.pexpire(self.workers_key, ttl_ms * 10)
            return int(pipe.execute()[2])

    def leave(self, owner: str) -> None:
        self.redis.zrem(self.workers_key, owner)

    # -- worker side: entries

    def claim(self, shard: int, consumer: str) -> int:
        """Make every pending entry of the shard this consumer's (its previous owner is gone:
        the lease says so), so that they are processed again, first and in order."""
        claimed, start = 0, "-"
        while True:
            pending = self.redis.xpending_range(self.key(shard), GROUP, start, "+", 100)
            if not pending:
                return claimed
            ids = [item["message_id"] for item in pending if item["consumer"].decode() != consumer]
            if ids:
                self.redis.xclaim(self.key(shard), GROUP, consumer, 0, ids, justid=True)
                claimed += len(ids)
            start = b"(" + pending[-1]["message_id"]

    def read(
        self, consumer: str, shards: dict[int, str], count: int, block_ms: int | None
    ) -> list[tuple[int, list[tuple[bytes, dict]]]]:
        """Entries of ``shards`` (shard -> ``"0"`` for the consumer's pending, ``">"`` for new)."""
        streams = {self.key(shard): start for shard, start in shards.items()}
        reply = self.redis.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms) or []
        return [(int(name.rsplit(b":", 1)[1]), entries) for name, entries in reply]

    def finish(self, shard: int, entry_id: bytes, entry: Entry, result: dict) -> None:
        """Answer the web side, then acknowledge and delete the entry (it is committed)."""
        with self.redis.pipeline(transaction=True) as pipe:
            if entry.reply:
                pipe.rpush(entry.reply, orjson.dumps({"rid": entry.rid, **result}))
                pipe.pexpire(entry.reply, int(self.reply_timeout_s * 2000))
            pipe.xack(self.key(shard), GROUP, entry_id)
            pipe.xdel(self.key(shard), entry_id)
            pipe.execute()


@functools.cache
def _stream_for(url: str | None) -> InProcessStream | RedisStream:
    return RedisStream(url) if url else InProcessStream()


def stream() -> InProcessStream | RedisStream:
    """This process's stream: Redis when ``INGEST_STREAM_URL`` (default ``REDIS_URL``) is set."""
    return _stream_for(getattr(settings, "INGEST_STREAM_URL", settings.REDIS_URL))


def worker_name() -> str:
    """A consumer name unique to this process and start: host, pid and a random suffix."""
    return f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

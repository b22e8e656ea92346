"""The ingest stream: in process as before, and on Redis with workers that share shards and die."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis
from django.db import connection

from devices.models import Event, Gateway
from metering.ingest.frames import decode_binary, encode_binary, frame_from_dict, parse_frames
from metering.ingest.process import Entry, ingest_frames, process_entry
from metering.ingest.stream import (
    GROUP,
    Busy,
    InProcessStream,
    RedisStream,
    Refused,
    pack_frames,
    shard_of,
    unpack_frames,
)
from metering.ingest.worker import Worker
from metering.models import PowerBoxState
from tests.factories import T0, make_location, star_frame

BASE_DIR = Path(__file__).resolve().parents[2]
GRID_W, HEAT_PUMP_W = 1750.0, 800.0  # star_frame's default loads
N = 1280  # samples per test frame: 0.2 s at 6,400 Hz, ten 50 Hz cycles
FRAME_S = N / 6400


def frame(seq: int, prefix: str = "T") -> dict:
    return star_frame(serial_prefix=prefix, seq=seq, t=T0 + (seq - 1) * FRAME_S, n=N)


def frames(*seqs: int, prefix: str = "T"):
    return [frame_from_dict(frame(seq, prefix)) for seq in seqs]


def assert_counted_once(state: PowerBoxState, n_frames: int, takeovers: int = 0) -> None:
    """Registers hold the energy of ``n_frames`` frames, counted once. Each worker that starts
    on a Power Box (the first one, each takeover) lacks the leftover samples of the frame before
    (under one cycle, docs/ingest.md), a frame counted twice would add a fifth of a second."""
    cycle_s = 0.02
    for load, power_w in (("Grid", GRID_W), ("Heat pump", HEAT_PUMP_W)):
        expected_wh = power_w * n_frames * FRAME_S / 3600
        tolerance_wh = 2e-3 * expected_wh + power_w * cycle_s * (takeovers + 1) / 3600
        assert state.registers["load"][load][0] == pytest.approx(expected_wh, abs=tolerance_wh), load


@pytest.fixture(autouse=True)
def no_pushes_left():
    """Card pushes a worker deferred (coalescing) must not fire after the test's database is gone."""
    from dashboard import broadcast

    broadcast.reset()
    yield
    broadcast.reset()


# ------------------------------------------------------------------------------ pure parts


def test_it_puts_a_power_box_in_the_same_shard_in_every_process():
    # CRC-32 of the serial, not hash(): the same in every process, on every machine.
    assert [shard_of(serial, 16) for serial in ("PB-T", "PB-0001", "PB-0002", "0")] == [2, 3, 9, 1]
    assert shard_of("PB-0001", 4) == 3 and shard_of("PB-0001", 1) == 0


def test_it_spreads_power_boxes_over_the_shards():
    counts = Counter(shard_of(f"PB-{k:05d}", 16) for k in range(4000))
    assert set(counts) == set(range(16))
    assert min(counts.values()) > 0.8 * 250 and max(counts.values()) < 1.2 * 250


def test_it_refuses_a_shard_count_below_one():
    with pytest.raises(ValueError, match="shards must be 1 or more"):
        shard_of("PB-T", 0)


def test_it_packs_parsed_frames_without_losing_a_bit():
    batch = parse_frames(
        orjson.dumps([frame(1), star_frame(seq=2, t=T0 + 1, n=N, inputs={"INP-T/1": {"state": 1, "pulses": 7}})])
    )
    unpacked = unpack_frames(**pack_frames(batch))
    assert unpacked == batch
    assert all(f.block is not None and not f.block.flags.writeable for f in unpacked)


def test_it_packs_frames_built_by_hand():
    decoded = decode_binary(encode_binary(frames(1)[0]))
    by_hand = type(decoded)(**{**decoded.__dict__, "block": None})
    assert unpack_frames(**pack_frames([by_hand])) == [decoded]


# ------------------------------------------------------------------------------ in process


@pytest.mark.django_db
def test_it_stores_in_process_exactly_as_ingest_frames_does():
    location, _ = make_location(serial_prefix="T")
    reference, _ = make_location(name="Reference", serial_prefix="U")
    gateway, reference_gateway = Gateway.objects.get(location=location), Gateway.objects.get(location=reference)
    stream = InProcessStream()
    for seqs in ((1,), (2, 3), (3,), (5,), (4,)):
        got = stream.submit(gateway, frames(*seqs), "HTTP").receipts
        want = ingest_frames(reference_gateway, frames(*seqs, prefix="U")).receipts
        assert [r.as_dict() for r in got] == [r.as_dict() for r in want]
    state, reference_state = (PowerBoxState.objects.get(powerbox__location=loc) for loc in (location, reference))
    assert state.registers["load"] == reference_state.registers["load"]
    assert (state.frames, state.duplicates, state.gaps) == (5, 1, 1)


@pytest.mark.django_db
def test_it_answers_a_refused_frame_in_process_and_records_it_once():
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    wrong = frames(1, prefix="X")  # a Power Box this location does not have
    with pytest.raises(Refused, match="unknown Power Box PB-X") as refused:
        InProcessStream().submit(gateway, wrong, "WebSocket")
    assert (refused.value.status, refused.value.field) == (422, "powerbox")
    event = Event.objects.get(kind=Event.INVALID_FRAME)
    assert event.data["transport"] == "WebSocket" and event.location_id == location.pk


@pytest.mark.django_db
def test_it_processes_a_binary_message_against_the_time_it_was_received():
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    binary = encode_binary(frames(1)[0])
    assert process_entry(Entry(gateway.pk, "WebSocket", time.time(), binary=binary)) == {
        "accepted": [{"seq": 1, "status": "ok"}]
    }
    too_early = process_entry(Entry(gateway.pk, "WebSocket", T0 - 3600, binary=encode_binary(frames(2)[0])))
    assert too_early["status"] == 422 and too_early["field"] == "t"


@pytest.mark.django_db
def test_it_answers_401_for_a_gateway_deleted_while_its_frame_waited():
    assert process_entry(Entry(999_999, "HTTP", time.time(), frames=frames(1)))["status"] == 401


# ------------------------------------------------------------------------------ on Redis


@pytest.fixture
def redis_stream(redis_url):
    """A stream of 4 shards under a key prefix of its own, removed afterwards."""
    prefix = f"test-ingest-{uuid.uuid4().hex[:12]}"
    stream = RedisStream(redis_url, shards=4, prefix=prefix, reply_timeout_s=5, max_lag_s=5)
    yield stream
    stream.close()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


class Running:
    """A worker on its own thread; ``kill()`` stops it as ``kill -9`` would (leases kept)."""

    def __init__(self, stream: RedisStream, name: str, lease_s: float = 1.0, allowed: set[int] | None = None):
        self.worker = Worker(stream, name=name, lease_s=lease_s, block_ms=100, allowed=allowed)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), name=name)
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def kill(self) -> None:
        self.worker.graceful = False
        self.join()


@pytest.fixture
def workers(redis_stream):
    running: list[Running] = []

    def start(name: str, lease_s: float = 1.0) -> Running:
        running.append(Running(redis_stream, name, lease_s))
        return running[-1]

    yield start
    for one in running:
        one.join()


def wait_for(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def results(futures) -> list[dict]:
    return [future.result(10) for future in futures]


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_answers_a_frame_once_a_worker_stored_it(redis_stream, workers):
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    workers("w1")
    outcome = redis_stream.submit(gateway, frames(1), "HTTP")
    assert [r.as_dict() for r in outcome.receipts] == [{"seq": 1, "status": "ok"}]
    assert redis_stream.submit(gateway, frames(1), "HTTP").receipts[0].status == "duplicate"
    binary = encode_binary(frames(2)[0])
    assert redis_stream.submit(gateway, [decode_binary(binary)], "WebSocket", binary=binary).receipts[0].status == "ok"
    assert PowerBoxState.objects.get().frames == 2
    shard = shard_of("PB-T", 4)
    assert redis_stream.backlog(shard).entries == 0  # acknowledged entries are deleted


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_answers_a_refused_frame_from_the_worker_and_records_it_there(redis_stream, workers):
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    workers("w1")
    with pytest.raises(Refused, match="unknown Power Box PB-X") as refused:
        redis_stream.submit(gateway, frames(1, prefix="X"), "MQTT")
    assert (refused.value.status, refused.value.field) == (422, "powerbox")
    assert Event.objects.get(kind=Event.INVALID_FRAME).data["transport"] == "MQTT"


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_meters_one_power_boxs_frames_in_order(redis_stream, workers):
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    waiting = [redis_stream._send(gateway, frames(seq), "HTTP", None) for seq in range(1, 21)]
    workers("w1"), workers("w2")
    answered = results(waiting)
    assert answered == [{"accepted": [{"seq": seq, "status": "ok"}]} for seq in range(1, 21)]
    state = PowerBoxState.objects.get()
    assert (state.frames, state.gaps, state.duplicates) == (20, 0, 0)
    assert_counted_once(state, 20)


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_splits_the_shards_between_two_workers(redis_stream, workers):
    first = workers("w1")
    wait_for(lambda: len(first.worker.owned) == 4)
    second = workers("w2")
    wait_for(lambda: len(first.worker.owned) == 2 and len(second.worker.owned) == 2)
    assert set(first.worker.owned) | set(second.worker.owned) == {0, 1, 2, 3}


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_leaves_no_shard_without_a_worker_when_workers_are_pinned_to_ranges(redis_stream):
    """Three live workers make a fair share of 2 of the 4 shards; the one pinned to shards 1-3
    cannot stay within it without leaving one of them to nobody."""
    pinned = [
        Running(redis_stream, name, allowed=allowed) for name, allowed in (("a1", {0}), ("a2", {0}), ("b1", {1, 2, 3}))
    ]
    try:
        wait_for(lambda: set().union(*(set(one.worker.owned) for one in pinned)) == {0, 1, 2, 3}, timeout_s=6)
        assert set(pinned[2].worker.owned) == {1, 2, 3}
    finally:
        for one in pinned:
            one.join()


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_gives_a_stopped_workers_shards_to_the_others_at_once(redis_stream, workers):
    first, second = workers("w1"), workers("w2")
    wait_for(lambda: len(first.worker.owned) == 2 and len(second.worker.owned) == 2)
    first.join()  # graceful: leases given up, heartbeat gone
    wait_for(lambda: len(second.worker.owned) == 4, timeout_s=1.5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_moves_the_shards_of_a_worker_that_stops_renewing_its_leases(redis_stream, workers):
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    first = workers("w1")
    wait_for(lambda: len(first.worker.owned) == 4)
    assert redis_stream.submit(gateway, frames(1), "HTTP").receipts[0].status == "ok"
    first.kill()  # its leases stay until they expire
    second = workers("w2")
    assert second.worker.owned == {}
    assert redis_stream.submit(gateway, frames(2), "HTTP").receipts[0].status == "ok"  # after the lease (1 s)
    assert set(second.worker.owned) == {0, 1, 2, 3}
    state = PowerBoxState.objects.get()
    assert (state.frames, state.duplicates) == (2, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_processes_a_dead_workers_pending_frames_once_and_in_order(redis_stream, workers):
    """The dead worker read six entries: it committed three (killed before XACK), not the others."""
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    shard = shard_of("PB-T", 4)
    redis_stream.ensure_group(shard)
    assert redis_stream.take_lease(shard, "dead", 800)
    waiting = [redis_stream._send(gateway, frames(seq), "HTTP", None) for seq in range(1, 7)]
    read = redis_stream.read("dead", {shard: ">"}, 10, None)
    assert [len(entries) for _, entries in read] == [6]
    from metering.ingest.stream import entry_from

    for _, fields in read[0][1][:3]:
        process_entry(entry_from(fields))  # committed, never acknowledged nor answered

    workers("w1"), workers("w2")
    answered = results(waiting)
    assert [a["accepted"][0]["status"] for a in answered] == ["duplicate"] * 3 + ["ok"] * 3
    state = PowerBoxState.objects.get()
    assert (state.frames, state.duplicates, state.gaps) == (6, 3, 0)
    assert_counted_once(state, 6, takeovers=1)
    client = redis_stream.redis
    assert client.xpending(redis_stream.key(shard), GROUP)["pending"] == 0
    assert client.xlen(redis_stream.key(shard)) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_answers_503_when_no_worker_answers_in_time(redis_stream):
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    redis_stream.reply_timeout_s = 0.3
    started = time.monotonic()
    with pytest.raises(Busy, match="no ingest worker answered within 0.3 s") as busy:
        redis_stream.submit(gateway, frames(1), "HTTP")
    assert time.monotonic() - started < 2 and busy.value.status == 503
    assert redis_stream.backlog(shard_of("PB-T", 4)).entries == 1  # kept: a worker stores it later


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_refuses_new_frames_while_their_shard_is_behind(redis_stream, workers):
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    redis_stream.reply_timeout_s, redis_stream.max_lag_s = 0.2, 0.5
    with pytest.raises(Busy, match="no ingest worker answered"):
        redis_stream.submit(gateway, frames(1), "HTTP")
    time.sleep(0.6)
    with pytest.raises(Busy, match=r"ingest is behind \(its oldest frame waits for 0\.[6-9]") as busy:
        redis_stream.submit(gateway, frames(2), "HTTP")
    assert busy.value.retry_after_s == 1
    with pytest.raises(Busy, match="ingest is behind"):
        redis_stream.check_backlog("PB-T")
    assert redis_stream.backlog(shard_of("PB-T", 4)).entries == 1  # the refused frame was not added

    redis_stream.reply_timeout_s = 5
    workers("w1")
    wait_for(lambda: redis_stream.backlog(shard_of("PB-T", 4)).entries == 0)
    redis_stream.check_backlog("PB-T")
    assert redis_stream.submit(gateway, frames(2), "HTTP").receipts[0].status == "ok"
    assert PowerBoxState.objects.get().frames == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_refuses_new_frames_over_the_backlog_bound(redis_stream):
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    redis_stream.max_backlog = 2
    for seq in (1, 2):
        redis_stream._send(gateway, frames(seq), "HTTP", None)
    with pytest.raises(Busy, match=r"ingest is behind \(2 frames wait\)"):
        redis_stream.submit(gateway, frames(3), "HTTP")


# ------------------------------------------------------------------------------ processes


def database_url() -> str:
    """The test database as a URL another process can open (committed data only)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class IngestProcess:
    """``manage.py run_ingest`` in a process of its own, on the test database."""

    def __init__(self, stream: RedisStream, name: str, log: Path):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": database_url(),
            "LOG_LEVEL": "INFO",
        }
        command = [sys.executable, "manage.py", "run_ingest", "--url", stream.url, "--prefix", stream.prefix]
        command += ["--name", name, "--lease-s", "1"]
        self.log = log.open("w")
        self.process = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(15)
        self.log.close()
        return code


def submit_as_a_device(stream: RedisStream, gateway, seq: int, timeout_s: float = 60.0) -> str:
    """Send until acknowledged, as a gateway does after a 503: it waits before sending again.

    A shard left behind by a killed worker refuses new frames at once (its oldest entry is older
    than ``max_lag_s``) until the next worker has caught up; on a loaded machine that worker
    takes seconds to start, so a device that sent again without waiting would give up first.
    The wait is Retry-After's, capped at half a second to keep the test short.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return stream.submit(gateway, frames(seq), "HTTP").receipts[0].status
        except Busy as busy:
            if time.monotonic() >= deadline:
                raise AssertionError(f"frame {seq} never acknowledged within {timeout_s:g} s: {busy}") from None
            time.sleep(min(busy.retry_after_s, 0.5))


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_counts_every_acknowledged_frame_once_when_a_worker_process_is_killed(redis_stream, tmp_path):
    """``kill -9`` of a ``run_ingest`` process mid-stream, a second one finishes: every frame
    acknowledged to the device is counted once, the registers hold the energy of the frames sent."""
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    redis_stream.shards = 16  # as run_ingest reads INGEST_SHARDS (default 16)
    lease = redis_stream.lease_key(shard_of("PB-T", 16))
    first = IngestProcess(redis_stream, "first", tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: redis_stream.redis.get(lease) == b"first", timeout_s=60)
        statuses = [submit_as_a_device(redis_stream, gateway, seq) for seq in range(1, 11)]
        in_flight = [redis_stream._send(gateway, frames(seq), "HTTP", None) for seq in range(11, 31)]
        wait_for(lambda: in_flight[0].done(), timeout_s=30)  # the worker is in the middle of them: kill it
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        second = IngestProcess(redis_stream, "second", tmp_path / "second.log")
        # Its start takes seconds on a loaded machine; the answers are awaited once it took over.
        wait_for(lambda: redis_stream.redis.get(lease) == b"second", timeout_s=60)
        for seq, future in zip(range(11, 31), in_flight):
            try:
                statuses.append(future.result(redis_stream.reply_timeout_s)["accepted"][0]["status"])
            except TimeoutError:  # not answered in time: the device sends it again
                statuses.append(submit_as_a_device(redis_stream, gateway, seq))
        statuses += [submit_as_a_device(redis_stream, gateway, seq) for seq in range(31, 41)]
        assert second.stop() == 0
    finally:
        for worker in (first, second):
            if worker is not None and worker.process.poll() is None:
                worker.stop(signal.SIGKILL)
    assert redis_stream.redis.get(lease) is None  # the second one gave its leases up on SIGTERM
    assert set(statuses) <= {"ok", "duplicate"}
    state = PowerBoxState.objects.get()
    assert (state.frames, state.gaps) == (40, 0)
    assert state.duplicates == statuses.count("duplicate")
    assert_counted_once(state, 40, takeovers=1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_processes_a_frame_again_after_the_database_failed(redis_stream, workers, monkeypatch):
    from django.db import OperationalError

    from metering.ingest import worker as worker_module

    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    failures = []

    def flaky(entry):
        if not failures:
            failures.append(entry.rid)
            raise OperationalError("server closed the connection unexpectedly")
        return process_entry(entry)

    monkeypatch.setattr(worker_module, "process_entry", flaky)
    waiting = [redis_stream._send(gateway, frames(seq), "HTTP", None) for seq in (1, 2, 3)]
    workers("w1")
    assert [answer["accepted"][0] for answer in results(waiting)] == [
        {"seq": seq, "status": "ok"} for seq in (1, 2, 3)
    ]  # the first one again, and in order
    assert len(failures) == 1
    state = PowerBoxState.objects.get()
    assert (state.frames, state.duplicates, state.gaps) == (3, 0, 0)


@pytest.mark.services
def test_it_takes_its_own_leases_back_after_losing_redis(redis_stream):
    worker = Worker(redis_stream, name="w1", lease_s=5)
    worker.tick()
    assert set(worker.owned) == {0, 1, 2, 3}
    worker._lost_all()  # as after a redis.ConnectionError: its leases are still in Redis
    worker.tick()
    assert set(worker.owned) == {0, 1, 2, 3}
    assert not redis_stream.take_lease(0, "w2", 5000)  # still w1's


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_it_goes_on_after_redis_lost_its_streams(redis_stream, workers):
    """As after a Redis restart without persistence: streams and groups are gone."""
    location, _ = make_location()
    gateway = Gateway.objects.get(location=location)
    workers("w1")
    assert redis_stream.submit(gateway, frames(1), "HTTP").receipts[0].status == "ok"
    redis_stream.redis.delete(*(redis_stream.key(shard) for shard in range(4)))
    assert redis_stream.submit(gateway, frames(2), "HTTP").receipts[0].status == "ok"
    assert PowerBoxState.objects.get().frames == 2

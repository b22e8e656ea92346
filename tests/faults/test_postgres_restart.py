"""PostgreSQL restarts under a running stack (issue 11, item 6).

A web process and two ingest workers on a private PostgreSQL, stopped (``pg_ctl stop -m fast``,
as a service restart: every connection is cut) and started again while two gateways stream
frames. Promised (docs/deploy.md): a worker's transaction rolls back, it waits and processes
the same entry again, in order; devices get 503 meanwhile and resend; nothing acknowledged is
lost, nothing is counted twice. Each worker keeps its shards meanwhile.

So that the workers surely hold entries when the database goes (rather than only the web
process noticing), they are paused (SIGSTOP) until each gateway's next frame waits in the
stream, and go on (SIGCONT) once PostgreSQL is down.
"""

from __future__ import annotations

import signal
import time

import redis

from metering.ingest.stream import entry_from, shard_of
from tests.faults.services import FAULTS, wait_until
from tests.faults.stack import SHARDS, Device, LeaseWatch, Registers, RegisterWatch, assert_counted_once

pytestmark = FAULTS

# Longer than a lease, and than the workers' first pauses (0.1, 0.2, 0.4, 0.8, 1.6 s): a worker
# that did not renew its leases while it waits would lose its shards. A lease long enough that
# the pause (SIGSTOP) before the outage cannot let one lapse.
DOWN_S = 3.5
LEASE_S = 2.0


def waits_in_stream(stream: redis.Redis, serial: str) -> bool:
    """A frame of the Power Box ``serial`` is in its shard's stream, not yet answered."""
    entries = stream.xrange(f"ingest:{shard_of(serial, SHARDS)}")
    return any(entry_from(fields).frames[0].powerbox == serial for _, fields in entries)


def test_workers_retry_and_lose_no_acknowledged_frame_when_postgresql_restarts(
    make_stack, houses, private_postgres, outcome
):
    stack = make_stack()
    web = stack.web()
    workers = [stack.worker(name, lease_s=LEASE_S) for name in ("worker-1", "worker-2")]
    web.wait_ready()
    stack.wait_for_workers("worker-1", "worker-2")
    devices = [Device(web.port, houses[prefix]["token"], prefix) for prefix in ("P1", "P2")]
    watches = [RegisterWatch(stack.database_url, device.serial) for device in devices]
    for device in devices:
        device.start()
    for device in devices:
        device.wait_for_acks(5)

    leases = LeaseWatch(stack.redis_url)
    for worker in workers:
        worker.process.send_signal(signal.SIGSTOP)
    # Each device's next frame waits in the stream (a fixed pause could end before a loaded machine
    # sent them, and then only the web process would meet the outage). A device sends its next
    # frame only once the one before was answered, so from then on no answer can come ...
    stream = redis.Redis.from_url(stack.redis_url)
    wait_until(lambda: all(waits_in_stream(stream, device.serial) for device in devices), 15, "the next frames")
    stream.close()
    waiting = {device.serial: len(device.answers) for device in devices}
    time.sleep(0.3)  # ... as long as no worker takes it
    assert {device.serial: len(device.answers) for device in devices} == waiting
    private_postgres.stop()
    down_at = time.monotonic()
    for worker in workers:
        worker.process.send_signal(signal.SIGCONT)
    wait_until(lambda: "database:" in "".join(w.output() for w in workers), 15, "a worker meeting the outage")
    time.sleep(DOWN_S)
    up_at = time.monotonic()
    private_postgres.start()
    for device in devices:
        device.wait_for_acks(5, timeout_s=30)
        device.stop()
    for watch in [*watches, leases]:
        watch.stop()

    registers = Registers(stack.database_url)
    states = [registers.read(device.serial) for device in devices]
    registers.close()
    during = [answer for device in devices for answer in device.answers if down_at < answer.at]
    refused = [answer for answer in during if answer.status != 200]
    acked_s = max(device.acknowledged_after(up_at).at - up_at for device in devices)
    retries = sum(worker.output().count("database:") for worker in workers)
    outcome(
        f"PostgreSQL down {DOWN_S:g} s (fast shutdown): frames sent meanwhile answered "
        f"{sorted({a.status for a in refused}, key=str)} ({len(refused)} times), every device's frames "
        f"acknowledged again {acked_s:.1f} s after the restart; workers retried {retries} times, "
        f"{len(leases.moves())} changes of a shard's lease holder; "
        + "; ".join(
            f"{device.serial}: {device.sent} acknowledged, {state['frames']} stored, {state['duplicates']} duplicates"
            for device, state in zip(devices, states)
        )
    )
    assert refused and {answer.status for answer in refused} == {503}, refused
    # Each worker kept its shards while it waited for the database: a shard that moves loses its
    # Power Boxes' leftover samples, and the other worker would wait for the same database.
    assert leases.moves() == []
    for device, state, watch in zip(devices, states, watches):
        receipts = [answer.receipt for answer in device.answers if answer.status == 200]
        assert state["frames"] == device.sent and state["gaps"] == 0, (device.serial, state)
        assert state["duplicates"] == receipts.count("duplicate")
        assert_counted_once(state, device.sent, starts=1)
        assert watch.problems() == [] and watch.read_errors > 0

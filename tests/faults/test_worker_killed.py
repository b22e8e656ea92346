"""``kill -9`` of an ingest worker in the middle of a stream of frames (issue 11, item 6).

A web process and two ``run_ingest`` workers, each a process of its own; two gateways stream
frames of known, constant power over HTTP and resend whatever is not acknowledged, as devices
do. The worker metering the first gateway's Power Box is killed with SIGKILL. Promised
(docs/deploy.md, "When a frame is acknowledged"): its shards move to the other worker, and every
acknowledged frame is counted exactly once.
"""

from __future__ import annotations

import time

import redis

from metering.ingest.stream import shard_of
from tests.faults.services import FAULTS, wait_until
from tests.faults.stack import SHARDS, Device, Registers, RegisterWatch, assert_counted_once

pytestmark = FAULTS


def lease_holder(client: redis.Redis, serial: str) -> str | None:
    holder = client.get(f"ingest:lease:{shard_of(serial, SHARDS)}")
    return holder.decode() if holder else None


def test_a_worker_killed_mid_stream_loses_and_doubles_no_acknowledged_frame(make_stack, houses, private_redis, outcome):
    stack = make_stack()
    web = stack.web()
    workers = {name: stack.worker(name) for name in ("worker-1", "worker-2")}
    client = redis.Redis.from_url(private_redis.url)
    web.wait_ready()
    stack.wait_for_workers(*workers)
    devices = [Device(web.port, houses[prefix]["token"], prefix) for prefix in ("K1", "K2")]
    watches = [RegisterWatch(stack.database_url, device.serial) for device in devices]
    holders = {device.serial: lease_holder(client, device.serial) for device in devices}
    for device in devices:
        device.start()
    target = devices[0]
    target.wait_for_acks(10)

    victim = holders[target.serial]
    (survivor,) = set(workers) - {victim}
    killed_at = time.monotonic()
    workers[victim].kill()
    took_over_s = wait_until(lambda: lease_holder(client, target.serial) == survivor, 15, "the takeover")
    target.wait_for_acks(10)
    for device in devices:
        device.stop()
    for watch in watches:
        watch.stop()

    first_ack_s = target.acknowledged_after(killed_at).at - killed_at
    registers = Registers(stack.database_url)
    for device, watch in zip(devices, watches):
        state = registers.read(device.serial)
        receipts = [answer.receipt for answer in device.answers if answer.status == 200]
        assert state["frames"] == device.sent and state["gaps"] == 0, (device.serial, state)
        assert state["duplicates"] == receipts.count("duplicate")
        assert set(receipts) <= {"ok", "duplicate"}
        assert {answer.status for answer in device.refusals()} <= {503}, device.refusals()
        assert_counted_once(state, device.sent, starts=2 if holders[device.serial] == victim else 1)
        assert watch.problems() == [] and len(watch.samples) > 20
    registers.close()
    assert "Traceback" not in stack.logs()
    resent = sum(len(device.refusals()) for device in devices)
    duplicates = sum(answer.receipt == "duplicate" for device in devices for answer in device.answers)
    outcome(
        f"kill -9 of {victim} (metering {', '.join(s for s, h in holders.items() if h == victim)}): "
        f"its shards moved to {survivor} after {took_over_s:.1f} s, {target.serial}'s next frame was "
        f"acknowledged {first_ack_s:.1f} s after the kill; {sum(d.sent for d in devices)} frames "
        f"acknowledged and counted once ({duplicates} as duplicates), {resent} answers 503 resent; registers sampled {sum(len(w.samples) for w in watches)} times: "
        "never negative, down or jumping"
    )

"""Redis restarts under a running stack (issue 11, item 6).

A web process and an ingest worker on a private Redis without persistence, as this machine's
(docs/deploy.md): a restart loses every stream entry, lease, reply list, cached value and the
channel layer's subscriptions. A gateway streams frames over HTTP; a signed-in browser's card
socket is open (and reopens itself as the page would, should its web process close it).
Promised: frames sent while Redis is down get 503 and are sent again; no acknowledged frame is
lost (none is acknowledged before its commit) or counted twice; pushes to the browser resume
within 10 s without a page reload.
"""

from __future__ import annotations

import time

from tests.faults.services import FAULTS, wait_until
from tests.faults.stack import STARTUP_S, CardSocket, Device, Registers, RegisterWatch, assert_counted_once

pytestmark = FAULTS

DOWN_S = 2.0


def test_pushes_resume_and_no_acknowledged_frame_is_lost_when_redis_restarts(
    make_stack, houses, private_redis, outcome
):
    stack = make_stack()
    house = houses["R1"]
    web = stack.web()
    stack.worker("worker-1")
    web.wait_ready()
    stack.wait_for_workers("worker-1")
    browser = CardSocket(web.port, house["location_id"], house["session"])
    device = Device(web.port, house["token"], "R1")
    watch = RegisterWatch(stack.database_url, device.serial)
    device.start()
    wait_until(lambda: browser.pushes, STARTUP_S, "a first card push")
    device.wait_for_acks(5)

    private_redis.stop()
    down_at = time.monotonic()  # its port closed: nothing sent from now on can reach it
    time.sleep(DOWN_S)
    sent_before_restart = device.sent
    up_at = time.monotonic()
    private_redis.start()
    pushed_s = wait_until(lambda: browser.pushed_after(up_at), 10, "a card push after the restart")
    device.wait_for_acks(5)
    device.stop()
    watch.stop()
    browser.stop()

    acked_s = device.acknowledged_after(up_at).at - up_at
    during = device.sent_between(down_at, up_at)
    state = Registers(stack.database_url).read(device.serial)
    outcome(
        f"Redis down {DOWN_S:g} s and restarted empty: frames sent meanwhile answered "
        f"{sorted({answer.status for answer in during}, key=str)} ({len(during)} times); first frame "
        f"acknowledged {acked_s:.1f} s after the restart, first card push {pushed_s:.1f} s after it (the "
        f"card socket closed with {[code for _, code in browser.closes]} and reopened {len(browser.opened) - 1} "
        f"times); {device.sent} frames acknowledged ({sent_before_restart} before the restart), "
        f"{state['frames']} stored, {state['duplicates']} duplicates"
    )
    assert during and all(answer.status == 503 for answer in during), during
    receipts = [answer.receipt for answer in device.answers if answer.status == 200]
    assert state["frames"] == device.sent and state["gaps"] == 0, state
    assert state["duplicates"] == receipts.count("duplicate")
    assert_counted_once(state, device.sent, starts=1)  # the same worker takes its shards back
    assert watch.problems() == []

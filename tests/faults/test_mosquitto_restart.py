"""Mosquitto restarts under ``ingest_mqtt`` (issue 11, item 6).

``ingest_mqtt`` and an ingest worker on a private Mosquitto without persistence: a restart drops
every connection and subscription. A gateway publishes frames (QoS 1) and reads its replies,
publishing again what is not answered. Promised (docs/ingest.md): ``ingest_mqtt`` reconnects
and subscribes again by itself, and frames published after the restart are stored.
"""

from __future__ import annotations

import time

from tests.faults.services import FAULTS, wait_until
from tests.faults.stack import STARTUP_S, MqttDevice, Registers, RegisterWatch, assert_counted_once

pytestmark = FAULTS

DOWN_S = 1.0


def test_ingest_mqtt_resubscribes_and_stores_frames_published_after_mosquitto_restarts(
    make_stack, houses, private_mosquitto, outcome
):
    stack = make_stack(mqtt_url=private_mosquitto.url)
    house = houses["M1"]
    stack.worker("worker-1")
    ingest_mqtt = stack.ingest_mqtt()
    stack.wait_for_workers("worker-1")
    wait_until(lambda: "subscribed to" in ingest_mqtt.output(), STARTUP_S, "ingest_mqtt to subscribe")
    device = MqttDevice(private_mosquitto.url, "GW-M1", house["token"], "M1")
    watch = RegisterWatch(stack.database_url, device.serial)
    device.start()
    device.wait_for_acks(5)

    private_mosquitto.stop()
    time.sleep(DOWN_S)
    up_at = time.monotonic()
    private_mosquitto.start()
    device.wait_for_acks(5, timeout_s=30)  # published after the restart: only a new subscription gets them
    device.stop()
    device.close()
    watch.stop()

    acked_s = device.acknowledged_after(up_at).at - up_at
    state = Registers(stack.database_url).read(device.serial)
    unanswered = [answer for answer in device.answers if answer.status != 200]
    outcome(
        f"Mosquitto down {DOWN_S:g} s and restarted empty: ingest_mqtt subscribed again by itself "
        f"({ingest_mqtt.output().count('subscribed to')} subscriptions in all), the first frame published after "
        f"the restart was acknowledged {acked_s:.1f} s after it; "
        f"{len(unanswered)} publications unanswered and sent again; {device.sent} frames acknowledged, "
        f"{state['frames']} stored, {state['duplicates']} duplicates"
    )
    assert {answer.status for answer in unanswered} <= {None}, unanswered  # lost, never refused
    assert ingest_mqtt.output().count("subscribed to") >= 2  # once at its start, again after the restart
    receipts = [answer.receipt for answer in device.answers if answer.status == 200]
    assert state["frames"] == device.sent and state["gaps"] == 0, state
    assert state["duplicates"] == receipts.count("duplicate")
    assert_counted_once(state, device.sent, starts=1)
    assert watch.problems() == []

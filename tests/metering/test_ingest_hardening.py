"""Ingest hardening (issue 13): whole batches or nothing, recovery from an outlier seq, a change
of sample rate, and pulse counters that cannot stop a location."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from devices.models import Event
from metering.ingest.process import BUCKET_S, bucket_start
from metering.models import InputCount, PowerBoxState
from tests.factories import make_location
from tests.metering.hardening_frames import frame, gas, now, post, statuses, stored_state

pytestmark = pytest.mark.django_db

FRAME_WH = 1750 * 0.2 / 3600  # one 0.2 s frame of the test house


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def house():
    return make_location()


def grid_import_wh() -> float:
    return PowerBoxState.objects.get().registers["load"]["Grid"][0]


# Refused batches change nothing


def test_it_stores_nothing_of_a_batch_with_a_frame_without_a_whole_cycle(client, house):
    location, token = house
    t0 = now() - 60
    assert statuses(post(client, frame(1, t0), token)) == ["ok"]
    before = stored_state(location.pk)
    response = post(client, [frame(2, t0 + 0.2), frame(4, t0 + 0.6, n=100)], token)
    assert response.status_code == 422, response.content
    assert stored_state(location.pk) == before
    assert response.json()["field"] == "[1]"
    assert "cycle" in response.json()["error"]
    assert Event.objects.get(kind=Event.INVALID_FRAME).data["field"] == "[1]"


def test_it_names_the_index_of_the_refused_frame_in_a_batch(client, house):
    location, token = house
    t0 = now() - 3 * 3600
    post(client, frame(1, t0), token)
    # Two gaps: seq 1 is behind the replay window and before the numbering the last jump left.
    assert statuses(post(client, [frame(5000, t0 + 1000), frame(9000, t0 + 2000)], token)) == ["gap", "gap"]
    before = stored_state(location.pk)
    response = post(client, [frame(9001, t0 + 2000.2), frame(9002, t0 + 2000.4), frame(1, t0)], token)
    assert response.status_code == 409, response.content
    assert response.json() == {
        "error": "frame seq 1 is older than the replay window of the newest frame 9002",
        "field": "[2].seq",
    }
    assert stored_state(location.pk) == before  # frames 9001 and 9002 were not kept either
    assert statuses(post(client, [frame(9001, t0 + 2000.2), frame(9002, t0 + 2000.4)], token)) == ["ok", "ok"]


# An outlier seq does not lock a gateway out


@pytest.mark.parametrize("outlier_ahead_s", [200.0, 0.0], ids=["t-ahead-within-the-clock-tolerance", "t-in-its-slot"])
def test_it_recovers_after_an_outlier_seq(client, house, outlier_ahead_s):
    _, token = house
    t0 = now() - 60
    assert statuses(post(client, [frame(1, t0), frame(3, t0 + 0.4)], token)) == ["ok", "gap"]
    outlier = frame(100_003, t0 + 0.6 + outlier_ahead_s)
    assert statuses(post(client, outlier, token)) == ["ok"]  # indistinguishable from a jump in numbering

    # The very next real frame goes on from seq 3, and so do the ones after it.
    assert statuses(post(client, frame(4, t0 + 0.6), token)) == ["ok"]
    returned = Event.objects.get(kind=Event.DATA_GAP, data__returned=True)
    assert (
        returned.message
        == "Power Box PB-T went back to its frame numbering (seq 100003 → 4): seq 100003 was out of line"
    )
    assert statuses(post(client, [frame(5, t0 + 0.8), frame(6, t0 + 1.0)], token)) == ["ok", "ok"]
    state = PowerBoxState.objects.get()
    assert state.last_seq == 6 and state.frames == 6

    # Exactly once still: a resent frame of either numbering is a duplicate, a missing one late.
    registers = grid_import_wh()
    assert statuses(post(client, [frame(3, t0 + 0.4), frame(5, t0 + 0.8), outlier], token)) == ["duplicate"] * 3
    assert grid_import_wh() == registers
    assert statuses(post(client, frame(2, t0 + 0.2), token)) == ["late"]
    assert grid_import_wh() == pytest.approx(registers + FRAME_WH, rel=0.05)
    assert statuses(post(client, frame(2, t0 + 0.2), token)) == ["duplicate"]
    assert PowerBoxState.objects.get().frames == 7


def test_it_still_accepts_a_power_box_reboot(client, house):
    _, token = house
    t0 = now() - 60
    assert statuses(post(client, [frame(5000, t0), frame(5002, t0 + 0.4)], token)) == ["ok", "gap"]
    assert statuses(post(client, frame(1, t0 + 10), token)) == ["ok"]  # seq restarts after a reboot
    renumbered = Event.objects.get(kind=Event.DATA_GAP, data__renumbered=True)
    assert renumbered.message.startswith("Power Box PB-T restarted its frame numbering (seq 5002 → 1)")
    assert statuses(post(client, [frame(1, t0 + 10), frame(2, t0 + 10.2)], token)) == ["duplicate", "ok"]

    # A frame from before the reboot sent again (its acknowledgement was lost) is a duplicate.
    registers = grid_import_wh()
    assert statuses(post(client, frame(5002, t0 + 0.4), token)) == ["duplicate"]
    assert grid_import_wh() == registers
    # One that never came is too old to tell, as before; the new numbering goes on.
    assert post(client, frame(5001, t0 + 0.2), token).status_code == 409
    assert statuses(post(client, frame(3, t0 + 10.4), token)) == ["ok"]
    state = PowerBoxState.objects.get()
    assert state.last_seq == 3 and state.frames == 5


# A change of sample rate


def test_it_drops_the_carry_when_the_sample_rate_changes(client, house):
    location, token = house
    t0 = now() - 60
    assert statuses(post(client, frame(1, t0, fs_hz=6400.0), token)) == ["ok"]
    before_wh = grid_import_wh()
    response = post(client, frame(2, t0 + 0.2, fs_hz=8000.0), token)
    assert statuses(response) == ["ok"]
    event = Event.objects.get(kind=Event.DATA_GAP)
    assert event.location == location
    assert event.message.startswith("Power Box PB-T changed its sample rate from 6400 to 8000 Hz: the last ")
    assert event.data["from_fs_hz"] == 6400.0 and event.data["to_fs_hz"] == 8000.0
    assert 0 < event.data["duration_s"] < 0.021  # less than a cycle and a sample
    # The new frame is metered on its own: its whole cycles, nothing of the old rate's leftovers.
    added_wh = grid_import_wh() - before_wh
    assert FRAME_WH * 0.85 < added_wh <= FRAME_WH * 1.001
    assert statuses(post(client, frame(3, t0 + 0.4, fs_hz=8000.0), token)) == ["ok"]
    assert Event.objects.filter(kind=Event.DATA_GAP).count() == 1


# Pulse counters


def test_it_treats_an_implausible_pulse_jump_as_a_counter_reset(client, house):
    _, token = house
    t0 = bucket_start(now() - 2 * BUCKET_S) + 10
    huge = 2**53 - 10  # near the largest count a frame may carry
    frames = [frame(1, t0, inputs=gas(1000)), frame(2, t0 + 1, inputs=gas(1002)), frame(3, t0 + 2, inputs=gas(huge))]
    frames.append(frame(4, t0 + 3, inputs=gas(huge + 3)))
    assert statuses(post(client, frames, token)) == ["ok", "ok", "ok", "ok"]
    reset = Event.objects.get(kind=Event.PULSES_RESET)
    assert reset.data == {"before": 1002, "after": huge, "implausible": True}
    assert "counted as a counter reset" in reset.message

    assert statuses(post(client, frame(5, t0 + BUCKET_S, inputs=gas(huge + 4)), token)) == ["ok"]  # next bucket
    assert InputCount.objects.get().pulses == 2 + 3  # before and after the jump, not the jump itself
    assert PowerBoxState.objects.get().inputs["INP-T/1"]["pulses"] == huge + 4


def test_it_keeps_accepting_frames_after_a_huge_pulse_count(client, house, caplog):
    """A count an older version let into the state row (up to 2**64) cannot stop the Power Box."""
    _, token = house
    t0 = bucket_start(now() - 2 * 3600) + 10
    assert statuses(post(client, frame(1, t0, inputs=gas(5)), token)) == ["ok"]
    state = PowerBoxState.objects.get()
    state.pending_bucket["inputs"] = {"INP-T/1": 2**63 + 5}
    state.inputs["INP-T/1"]["pulses"] = 2**63 + 10
    state.save()

    assert statuses(post(client, frame(2, t0 + 1), token)) == ["ok"]  # no inputs in this one
    assert statuses(post(client, frame(3, t0 + 40), token)) == ["ok"]  # the pending bucket is written
    assert statuses(post(client, frame(4, t0 + 41, inputs=gas(7)), token)) == ["ok"]  # a counter reset
    assert statuses(post(client, frame(5, t0 + 3600, inputs=gas(9)), token)) == ["ok"]  # an hour later
    assert statuses(post(client, frame(6, t0 + 3601), token)) == ["ok"]
    assert "cannot be stored" in caplog.text
    assert sorted(InputCount.objects.values_list("pulses", flat=True)) == [7]
    assert PowerBoxState.objects.get().last_seq == 6

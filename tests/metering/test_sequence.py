from __future__ import annotations

import tracemalloc

import pytest

from metering.ingest.sequence import WINDOW, Arrival, SeqWindow


def feed(window: SeqWindow, seqs: list[int]) -> list[Arrival]:
    arrivals = []
    for seq in seqs:
        arrival = window.classify(seq)
        arrivals.append(arrival)
        if arrival not in (Arrival.DUPLICATE, Arrival.TOO_OLD):
            window.record(seq)
    return arrivals


def test_it_accepts_consecutive_frames_and_rejects_repeats():
    arrivals = feed(SeqWindow(), [10, 11, 12, 12, 11, 10])
    assert arrivals == [
        Arrival.FIRST,
        Arrival.NEXT,
        Arrival.NEXT,
        Arrival.DUPLICATE,
        Arrival.DUPLICATE,
        Arrival.DUPLICATE,
    ]


def test_it_lets_the_missing_frames_of_a_gap_in_once():
    arrivals = feed(SeqWindow(), [1, 2, 6, 3, 4, 4, 5, 7, 3])
    assert arrivals == [
        Arrival.FIRST,
        Arrival.NEXT,
        Arrival.AFTER_GAP,
        Arrival.LATE,
        Arrival.LATE,
        Arrival.DUPLICATE,
        Arrival.LATE,
        Arrival.NEXT,
        Arrival.DUPLICATE,
    ]


def test_it_survives_a_round_trip_through_storage():
    window = SeqWindow()
    feed(window, [100, 105, 102])
    restored = SeqWindow.load(window.last_seq, window.dump())
    assert restored.classify(102) == Arrival.DUPLICATE
    assert restored.classify(103) == Arrival.LATE
    assert restored.classify(100) == Arrival.DUPLICATE


def test_it_refuses_frames_older_than_the_window():
    window = SeqWindow()
    feed(window, [5, 5 + WINDOW + 10])
    assert window.classify(7) == Arrival.TOO_OLD
    assert window.classify(5 + WINDOW) == Arrival.LATE


# The largest seq a frame may carry (metering.ingest.frames refuses 2**53 and above).
LARGEST_SEQ = 2**53 - 1


def traced_peak_bytes(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.timeout(5)
def test_it_records_any_seq_jump_in_constant_memory():
    window = SeqWindow()
    feed(window, [5, 6, 8])

    peak = traced_peak_bytes(lambda: window.record(8 + 10**9))  # the old code built 1 << 10**9

    assert peak < 64 * 1024
    assert window.seen.bit_length() <= WINDOW


@pytest.mark.timeout(5)
def test_it_classifies_around_the_largest_possible_seq_jump():
    window = SeqWindow()
    feed(window, [5, 6])

    assert feed(window, [LARGEST_SEQ]) == [Arrival.AFTER_GAP]

    assert window.seen == 0
    assert window.classify(6) == Arrival.TOO_OLD
    assert window.classify(LARGEST_SEQ - 1) == Arrival.LATE
    assert window.classify(LARGEST_SEQ - WINDOW) == Arrival.LATE
    assert window.classify(LARGEST_SEQ - WINDOW - 1) == Arrival.TOO_OLD
    assert window.classify(LARGEST_SEQ) == Arrival.DUPLICATE


def test_it_keeps_the_old_newest_frame_after_a_jump_of_exactly_the_window():
    window = SeqWindow()
    feed(window, [100, 100 + WINDOW])

    assert window.classify(100) == Arrival.DUPLICATE
    assert window.classify(101) == Arrival.LATE
    assert window.seen.bit_length() == WINDOW


def test_it_ignores_a_record_below_the_window():
    window = SeqWindow()
    feed(window, [10**12])

    window.record(5)

    assert window.seen == 0
    assert window.last_seq == 10**12


@pytest.mark.timeout(5)
def test_it_reads_only_the_window_of_an_oversized_stored_bitmap():
    stored = "f" * 10**7  # what a corrupted row could hold: 40 million bits

    peak = traced_peak_bytes(lambda: SeqWindow.load(10**6, stored))
    window = SeqWindow.load(10**6, stored)

    assert peak < 64 * 1024
    assert window.seen.bit_length() == WINDOW
    assert window.classify(10**6 - WINDOW) == Arrival.DUPLICATE
    assert window.classify(10**6 - WINDOW - 1) == Arrival.TOO_OLD

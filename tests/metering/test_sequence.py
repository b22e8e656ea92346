from __future__ import annotations

from metering.sequence import WINDOW, Arrival, SeqWindow


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
    assert arrivals == [Arrival.FIRST, Arrival.NEXT, Arrival.NEXT, Arrival.DUPLICATE, Arrival.DUPLICATE, Arrival.DUPLICATE]


def test_it_lets_the_missing_frames_of_a_gap_in_once():
    arrivals = feed(SeqWindow(), [1, 2, 6, 3, 4, 4, 5, 7, 3])
    assert arrivals == [
        Arrival.FIRST, Arrival.NEXT, Arrival.AFTER_GAP, Arrival.LATE, Arrival.LATE,
        Arrival.DUPLICATE, Arrival.LATE, Arrival.NEXT, Arrival.DUPLICATE,
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

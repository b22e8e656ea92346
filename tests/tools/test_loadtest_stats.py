"""The load test's pure helpers: windows of percentiles, /proc parsing, stored seqs, the backlog verdict."""

from __future__ import annotations

import numpy as np
import pytest

from tools.loadtest import frames as payloads
from tools.loadtest.run import transports
from tools.loadtest.stats import (
    CLOCK_TICKS,
    Windowed,
    backlog_is_flat,
    cpu_percent,
    cpu_seconds_from_stat,
    percentiles,
    read_proc,
    rss_bytes_from_status,
    stored_seqs,
)


def test_it_gives_none_for_the_percentiles_of_nothing():
    assert percentiles([]) == (None, None)


def test_it_interpolates_percentiles_like_numpy():
    values = list(range(1, 101))
    assert percentiles(values) == pytest.approx((50.5, 99.01))


def test_it_keeps_each_window_apart_and_the_counted_ones_for_the_run():
    latencies = Windowed()
    for value in (0.010, 0.020, 0.030):
        latencies.add(value)
    assert latencies.cut(counted=False) == (3, pytest.approx(0.020), pytest.approx(0.0298))
    latencies.add(1.0)  # a slow one in a counted window
    assert latencies.cut() == (1, 1.0, 1.0)
    assert latencies.cut() == (0, None, None)  # an empty window stays empty
    assert latencies.overall() == (1, 1.0, 1.0)  # the warm-up's three are not in the run


def test_it_reads_cpu_seconds_after_a_command_name_with_spaces_and_parentheses():
    fields = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", str(3 * CLOCK_TICKS), str(CLOCK_TICKS)]
    line = "4242 (python -m (tools)) " + " ".join(fields) + " 20 0 1 0 99 12345 678\n"
    assert cpu_seconds_from_stat(line) == pytest.approx(4.0)


def test_it_refuses_a_line_that_is_not_a_stat_line():
    with pytest.raises(ValueError, match="not a /proc"):
        cpu_seconds_from_stat("1 (init) S 0 1")


def test_it_reads_the_resident_set_size_in_bytes():
    status = "Name:\tpython\nVmPeak:\t  999 kB\nVmRSS:\t  2048 kB\nThreads:\t4\n"
    assert rss_bytes_from_status(status) == 2048 * 1024
    assert rss_bytes_from_status("Name:\tkthreadd\n") == 0


def test_it_reads_this_process_from_proc():
    import os

    sample = read_proc(os.getpid())
    assert sample.cpu_s > 0
    assert sample.rss_bytes > 1_000_000
    assert read_proc(2**22 + 1) is None  # above pid_max: no such process


def test_it_gives_cpu_as_a_percentage_of_one_core():
    assert cpu_percent(10.0, 15.0, 10.0) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        cpu_percent(0.0, 1.0, 0.0)


def test_it_lists_the_seqs_a_state_row_recorded():
    # newest 100; bit 0 -> 99, bit 2 -> 97, bit 5 -> 94
    assert stored_seqs(100, format(0b100101, "x")) == {100, 99, 97, 94}
    assert stored_seqs(None, "0") == set()
    assert stored_seqs(7, "") == {7}


def test_it_lists_a_full_hour_of_seqs():
    assert stored_seqs(5000, format((1 << 3600) - 1, "x")) == set(range(1400, 5001))


def test_it_calls_a_backlog_that_jitters_flat_and_one_that_grows_not():
    assert backlog_is_flat([3, 0, 5, 2, 1, 4, 0, 2, 3], frames_per_s=300)[0]
    assert not backlog_is_flat(list(range(0, 290, 30)), frames_per_s=300)[0]  # growing, still under 1 s
    assert not backlog_is_flat([0, 0, 400, 0, 0, 0], frames_per_s=300)[0]  # one window held more than 1 s
    assert not backlog_is_flat([], frames_per_s=300)[0]


def test_it_spreads_http_and_mqtt_gateways_among_the_websocket_ones():
    chosen = transports(300, 0.10, 0.05)
    assert (chosen.count("http"), chosen.count("mqtt"), chosen.count("ws")) == (30, 15, 255)
    assert "http" in chosen[:20] and "mqtt" in chosen[:40]


def test_it_gives_every_location_serials_of_its_own():
    first, second = payloads.installation(1), payloads.installation(2)
    assert payloads.serials_in(first).isdisjoint(payloads.serials_in(second))
    assert len(payloads.serials_in(first)) == len(payloads.serials_in(payloads.installation(0)))
    # every CT a load names is one of the location's own hubs
    hubs = {hub["serial"] for hub in first["ct_hubs"]}
    assert {ref.split("/")[0] for ref in payloads.ct_phases(first)} <= hubs


def test_it_patches_seq_and_t_into_a_binary_frame():
    from metering.ingest.frames import decode_binary

    doc = payloads.installation(3)
    payload = payloads.binary_payload(doc, 640)
    frame = decode_binary(payload.make(payloads.SEQ_BASE + 42, 1_764_090_123.25), now=1_764_090_200.0)
    assert (frame.seq, frame.t, frame.powerbox) == (payloads.SEQ_BASE + 42, 1_764_090_123.25, doc["powerbox"]["serial"])


def test_it_patches_seq_and_t_into_a_json_frame_and_refuses_what_does_not_fit():
    from metering.ingest.frames import parse_frames

    doc = payloads.installation(3)
    payload = payloads.json_payload(doc, 640)
    (frame,) = parse_frames(payload.make(payloads.SEQ_BASE + 7, 1_764_090_123.5), now=1_764_090_200.0)
    assert (frame.seq, frame.t) == (payloads.SEQ_BASE + 7, 1_764_090_123.5)
    with pytest.raises(ValueError, match="fixed widths"):
        payload.make(7, 1_764_090_123.5)  # a seq of one digit would leave the old digits behind


def test_it_knows_the_energy_its_frames_hold():
    doc = payloads.installation(0)
    frame = payloads.frame_doc(doc, 6400)
    ref = next(iter(payloads.ct_phases(doc)))
    phase = payloads.ct_phases(doc)[ref]
    power_w = float(np.mean(np.asarray(frame["voltages"][phase]) * np.asarray(frame["currents"][ref])))
    assert power_w == pytest.approx(payloads.ct_power(doc)[ref], rel=1e-4)
    assert payloads.expected_wh(doc, frames=3600, samples=6400)[ref] == pytest.approx(payloads.ct_power(doc)[ref])

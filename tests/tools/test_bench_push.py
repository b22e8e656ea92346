"""The push benchmark runs end to end on a tiny workload: a report with every figure, nothing lost.

Not a timing test: the figures of a 3-second run on a shared machine say nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tools import bench_push as bench

REPO = Path(bench.__file__).resolve().parent.parent
PHASE_KEYS = {
    "lost_examples", "sockets", "sockets_wanted", "sockets_refused", "frames_offered", "frames_sent", "frames_per_s", "frames_failed",
    "frames_coalesced", "messages_coalesced", "messages_expected", "messages_received", "messages_lost",
    "messages_unmatched", "messages_other", "fragment_chars", "p50_ms", "p99_ms", "max_ms", "p99_with_ramp_ms",
    "send_lag_p99_ms", "wall_s", "daphne_cpu_s", "daphne_loop_thread_cpu_s", "daphne_cpu_ms_per_message",
    "load_generator_cpu_s",
}  # fmt: skip


def test_it_spreads_fractional_clients_per_location_evenly():
    assert bench.clients_per_site(4, 2.5) == [2, 3, 2, 3]
    assert bench.clients_per_site(3, 2) == [2, 2, 2]
    assert sum(bench.clients_per_site(200, 2.5)) == 500


def test_it_reports_every_workload_without_losing_a_message(tmp_path):
    report_path = tmp_path / "report.json"
    env = {name: value for name, value in os.environ.items() if name not in {"DJANGO_SETTINGS_MODULE", "VAR_DIR"}}
    args = "--locations 3 --clients-per-location 2 --seconds 3 --ramp-seconds 1 --layer memory --consumer-phase".split()
    run = subprocess.run(
        [sys.executable, "-m", "tools.bench_push", *args, "--json", str(report_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr

    report = orjson.loads(report_path.read_bytes())
    assert set(report["layers"]) == {"memory"}
    layer = report["layers"]["memory"]
    for phase in ("ingest", "consumer", "baseline"):
        figures = layer[phase]
        assert PHASE_KEYS <= set(figures), PHASE_KEYS - set(figures)
        assert figures["sockets"] == figures["sockets_wanted"] == 6
        assert figures["frames_failed"] == {}
        assert figures["frames_sent"] == 3 * (1 + 3)  # the ramp-up's second is sent and counted too
        # a frame arriving < 0.9 s after the previous one is coalesced (jitter on a busy machine)
        assert figures["messages_expected"] == 6 * (1 + 3) - figures["messages_coalesced"]
        assert figures["messages_lost"] == 0
        assert figures["messages_unmatched"] == 0
        assert figures["p99_ms"] is not None and figures["p99_with_ramp_ms"] is not None
    assert (
        layer["ingest"]["fragment_chars"] == layer["consumer"]["fragment_chars"] == layer["baseline"]["fragment_chars"]
    )
    assert layer["server_errors"] == {}
    assert "p99_ratio" in layer and "targets_met" in layer
    for title in ("ingest -> live cards", "LocationConsumer, no ingest", "baseline: bare consumer"):
        assert title in run.stdout

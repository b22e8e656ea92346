"""Installation validation running beside ingest: each location's commissioning check.

Ingest hands every newest frame to :func:`observe`; the findings (SPEC 5.3 ``checks``) are
recomputed at most every few seconds and travel with the live values. The state lives in
this process (a few minutes of phasors per Power Box); a restart or a configuration change
starts the observation afresh, which is what an installer fixing a CT wants anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from metering.commissioning import Commissioning, Finding
from metering.ingest import cadence
from metering.ingest.frames import SampleFrame
from metering.installed import Installed

log = logging.getLogger(__name__)

# Frames are looked at no more often than this (wall clock): a gateway sends one a second,
# and a burst of buffered frames after an outage should not double the cost of ingest.
OBSERVE_EVERY_S = 0.5
# Findings are recomputed at most this often.
FINDINGS_EVERY_S = 3.0
# A pause in the data longer than this breaks the chain of load changes.
BREAK_AFTER_S = 10.0


@dataclass
class _Watch:
    meter: object
    session: Commissioning
    observed_at: float = 0.0
    last_end_t: float | None = None
    findings_period: object = None
    findings: list[Finding] = field(default_factory=list)


_watches: dict[int, _Watch] = {}
_lock = threading.Lock()


def observe(setup: Installed, frame: SampleFrame) -> list[Finding]:
    """Feed one newest frame; returns the current findings (possibly from a few seconds ago)."""
    if not setup.meter.channels:
        return []
    now = time.monotonic()
    with _lock:
        watch = _watches.get(setup.location_id)
        if watch is None or watch.meter != setup.meter:
            watch = _watches[setup.location_id] = _Watch(setup.meter, Commissioning(setup.meter))
    if watch.last_end_t is not None and abs(frame.t - watch.last_end_t) > BREAK_AFTER_S:
        watch.session.clear()
    if now - watch.observed_at >= OBSERVE_EVERY_S:
        watch.observed_at = now
        watch.last_end_t = frame.end_t
        try:
            watch.session.add_frame(frame.voltages, _configured(frame, setup), frame.fs_hz)
        except ValueError as exc:  # the frame was good enough to meter; say why it can't judge
            log.info("validation skipped a frame of location %s: %s", setup.location_id, exc)
    current = cadence.period(setup.location_id, FINDINGS_EVERY_S, now)  # each location at a phase of its own
    if current != watch.findings_period:
        watch.findings_period = current
        watch.findings = watch.session.findings()
    return watch.findings


def _configured(frame: SampleFrame, setup: Installed) -> dict:
    return {ch.ct: frame.currents[ch.ct] for ch in setup.meter.channels if ch.ct in frame.currents}


def reset(location_id: int) -> None:
    """Forget what was observed (after the installer changed the configuration)."""
    with _lock:
        _watches.pop(location_id, None)


# "ok" and "too little current to judge yet" are verdicts, not problems to act on.
NOT_A_PROBLEM = frozenset({"ok", "low_current"})


def checks(findings: list[Finding]) -> list[dict]:
    """What needs the installer's attention (SPEC 5.3 ``checks``)."""
    return [f.to_dict() for f in findings if f.kind not in NOT_A_PROBLEM]

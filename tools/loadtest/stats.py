"""Pure helpers of the load test: percentiles over windows, ``/proc`` readings, the checks.

No Django, no I/O beyond reading ``/proc`` files; tested in ``tests/tools/test_loadtest_stats.py``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float] | np.ndarray, qs: tuple[float, ...] = (50, 99)) -> tuple[float | None, ...]:
    """The ``qs`` percentiles of ``values`` (linear interpolation), or ``None`` each when empty."""
    if len(values) == 0:
        return tuple(None for _ in qs)
    return tuple(float(p) for p in np.percentile(np.asarray(values, dtype=np.float64), qs))


@dataclass
class Windowed:
    """Samples of one quantity (a latency), cut into windows, and kept for the whole run.

    :meth:`cut` closes the current window: its percentiles, and its samples join the run's
    (unless the window was a warm-up one, ``counted=False``)."""

    window: list[float] = field(default_factory=list)
    run: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.window.append(value)

    def cut(self, counted: bool = True) -> tuple[int, float | None, float | None]:
        values, self.window = self.window, []
        if counted:
            self.run.extend(values)
        p50, p99 = percentiles(values)
        return len(values), p50, p99

    def overall(self) -> tuple[int, float | None, float | None]:
        p50, p99 = percentiles(self.run)
        return len(self.run), p50, p99


# ----------------------------------------------------------------------------- /proc


def cpu_seconds_from_stat(text: str) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces and parentheses,
    so the fields are counted from the LAST closing parenthesis: utime and stime are the 14th
    and 15th fields of the line, the 12th and 13th after the name."""
    after_name = text.rsplit(")", 1)[1].split()
    if len(after_name) < 13:
        raise ValueError("not a /proc/<pid>/stat line")
    return (int(after_name[11]) + int(after_name[12])) / CLOCK_TICKS


def rss_bytes_from_status(text: str) -> int:
    """Resident set size (``VmRSS``) in bytes from the text of ``/proc/<pid>/status``; 0 if absent
    (a kernel thread, a zombie)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            number, unit = line.split()[1:3]
            if unit.lower() != "kb":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(number) * 1024
    return 0


@dataclass
class ProcSample:
    cpu_s: float
    rss_bytes: int


def read_proc(pid: int, root: str = "/proc") -> ProcSample | None:
    """CPU seconds and RSS of a process, or None when it is gone (or not ours to read)."""
    try:
        with open(f"{root}/{pid}/stat") as stat, open(f"{root}/{pid}/status") as status:
            return ProcSample(cpu_seconds_from_stat(stat.read()), rss_bytes_from_status(status.read()))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def cpu_percent(before_s: float, after_s: float, wall_s: float) -> float:
    """CPU use over ``wall_s`` as a percentage of one core."""
    if wall_s <= 0:
        raise ValueError("wall time must be positive")
    return 100.0 * max(after_s - before_s, 0.0) / wall_s


# ----------------------------------------------------------------------------- the checks


def stored_seqs(last_seq: int | None, seen_hex: str) -> set[int]:
    """The sequence numbers a Power Box's state row records as received: its newest ``last_seq``,
    and ``last_seq - 1 - k`` for every bit ``k`` set in the hexadecimal bitmap ``seen_hex``
    (docs/ingest.md, "Order, duplicates, gaps")."""
    if last_seq is None:
        return set()
    bits = int(seen_hex or "0", 16)
    seqs = {last_seq}
    k = 0
    while bits:
        if bits & 1:
            seqs.add(last_seq - 1 - k)
        bits >>= 1
        k += 1
    return seqs


def backlog_is_flat(backlog: list[int], frames_per_s: float) -> tuple[bool, str]:
    """Whether a backlog sampled over the run stayed flat: it never held more than one second of
    frames, and its last third is on average no higher than its first third plus a tenth of a
    second of frames (a backlog that grows for ever fails both, one that only jitters neither)."""
    if not backlog:
        return False, "no backlog samples"
    bound = max(frames_per_s, 1.0)
    third = max(len(backlog) // 3, 1)
    first, last = float(np.mean(backlog[:third])), float(np.mean(backlog[-third:]))
    peak = max(backlog)
    flat = peak <= bound and last <= first + 0.1 * bound
    return (
        flat,
        f"max {peak} entries (bound {bound:.0f}: 1 s of frames); first third {first:.1f}, last third {last:.1f}",
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator or math.isnan(denominator):
        return None
    return numerator / denominator

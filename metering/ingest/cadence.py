"""Periodic work per location (validation findings, the events check) at a phase of its own.

Work done "every N seconds after the last time" falls into step across locations: after a
server restart or a network outage every location is due at its first frame, and from then on
all of them are due in the same second, every N seconds, a burst the server has to queue
frames behind. Here each key has a fixed offset within the period, spread by the golden ratio
so that consecutive ids land far apart, and work is due once per period at the first call
after the key's own period began.
"""

from __future__ import annotations

import math

GOLDEN_FRACTION = (math.sqrt(5.0) - 1.0) / 2.0


def phase_s(key: int, every_s: float) -> float:
    """The offset of ``key``'s periods, in [0, ``every_s``)."""
    return (key * GOLDEN_FRACTION) % 1.0 * every_s


def period(key: int, every_s: float, now: float) -> object:
    """Which of ``key``'s periods ``now`` (seconds, any clock) falls in: work is due when this
    differs from the period it was last done in. With ``every_s <= 0`` every call is a period
    of its own (always due)."""
    if every_s <= 0:
        return object()
    return math.floor((now + phase_s(key, every_s)) / every_s)

"""Exactly-once bookkeeping of frame sequence numbers for one Power Box.

The newest ``seq`` plus a bitmap of the ``WINDOW`` numbers below it tells a duplicate from a
late frame: a late frame (one that arrives after a newer one, e.g. resent after an outage)
is counted once in registers and history, never twice, and never moves the live values back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# One hour of frames at one frame per second.
WINDOW = 3600


class Arrival(Enum):
    FIRST = "first"  # first frame ever seen from this Power Box
    NEXT = "next"  # seq == last + 1
    AFTER_GAP = "after_gap"  # seq > last + 1: frames last+1 .. seq-1 are missing (for now)
    LATE = "late"  # seq < last, not seen before, inside the window
    DUPLICATE = "duplicate"  # seen before
    TOO_OLD = "too_old"  # seq below the window: cannot tell, refused


@dataclass
class SeqWindow:
    last_seq: int | None = None
    seen: int = 0  # bit k: seq (last_seq - 1 - k) was received

    @classmethod
    def load(cls, last_seq: int | None, seen_hex: str) -> SeqWindow:
        return cls(last_seq, int(seen_hex or "0", 16))

    def dump(self) -> str:
        return format(self.seen, "x")

    def classify(self, seq: int) -> Arrival:
        if self.last_seq is None:
            return Arrival.FIRST
        if seq == self.last_seq:
            return Arrival.DUPLICATE
        if seq == self.last_seq + 1:
            return Arrival.NEXT
        if seq > self.last_seq:
            return Arrival.AFTER_GAP
        offset = self.last_seq - 1 - seq
        if offset >= WINDOW:
            return Arrival.TOO_OLD
        return Arrival.DUPLICATE if self.seen >> offset & 1 else Arrival.LATE

    def record(self, seq: int) -> None:
        """Mark ``seq`` as received (call only for an arrival that is not a duplicate)."""
        if self.last_seq is None:
            self.last_seq, self.seen = seq, 0
        elif seq > self.last_seq:
            shift = seq - self.last_seq
            # The old newest frame becomes bit shift-1; everything older shifts with it.
            self.seen = ((self.seen << shift) | (1 << (shift - 1))) & ((1 << WINDOW) - 1)
            self.last_seq = seq
        else:
            self.seen |= 1 << (self.last_seq - 1 - seq)

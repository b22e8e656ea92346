"""Exactly-once bookkeeping of frame sequence numbers for one Power Box.

The newest ``seq`` plus a bitmap of the ``WINDOW`` numbers below it tells a duplicate from a
late frame: a late frame (one that arrives after a newer one, e.g. resent after an outage)
is counted once in registers and history, never twice, and never moves the live values back.

Every operation costs time and memory bounded by ``WINDOW`` bits, whatever the ``seq``
values: a jump of 10**15 costs what a jump of one does, and a stored bitmap is cut to
``WINDOW`` bits before it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# One hour of frames at one frame per second.
WINDOW = 3600
_MASK = (1 << WINDOW) - 1
# Hex digits that hold WINDOW bits.
_HEX_DIGITS = -(-WINDOW // 4)


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
    seen: int = 0  # bit k: seq (last_seq - 1 - k) was received; never more than WINDOW bits

    @classmethod
    def load(cls, last_seq: int | None, seen_hex: str) -> SeqWindow:
        """The window as :meth:`dump` stored it; bits beyond ``WINDOW`` are dropped unread."""
        return cls(last_seq, int((seen_hex or "0")[-_HEX_DIGITS:], 16) & _MASK)

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
        """Mark ``seq`` as received (call only for an arrival that is not a duplicate).

        Constant time and memory for any jump: a jump of more than ``WINDOW`` leaves nothing
        of the old window, so the bitmap is simply cleared. A ``seq`` below the window (an
        arrival classified ``TOO_OLD``) changes nothing.
        """
        if self.last_seq is None:
            self.last_seq, self.seen = seq, 0
        elif seq > self.last_seq:
            shift = seq - self.last_seq
            if shift > WINDOW:
                self.seen = 0  # the old newest frame would be bit shift-1, outside the window
            else:
                # The old newest frame becomes bit shift-1; everything older shifts with it.
                self.seen = ((self.seen << shift) | (1 << (shift - 1))) & _MASK
            self.last_seq = seq
        elif 0 <= (offset := self.last_seq - 1 - seq) < WINDOW:
            self.seen |= 1 << offset

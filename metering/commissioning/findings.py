"""The verdict type of the commissioning checks: :class:`Finding`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS: tuple[str, ...] = (
    "ok",
    "phase",
    "reversed",
    "no_current",
    "low_current",
    "inconsistent",
    "sequence",
    "kirchhoff",
    "no_voltage",
)
"""Kinds of finding. Per CT: ``ok``, ``phase``, ``reversed``, ``no_current``, ``low_current``,
``inconsistent``; per location: ``sequence``, ``no_voltage`` (``ct`` is ``""``) and
``kirchhoff`` (on the grid CT of the phase, or ``""`` for a delta location's total)."""


@dataclass(frozen=True)
class Finding:
    """One installation-validation verdict, for the installer (SPEC 5.3 ``checks``).

    Attributes
    ----------
    ct : str
        The CT reference, e.g. ``"CTH-0001/D"``; ``""`` for a location-level finding.
    kind : str
        One of :data:`KINDS`.
    suggest : str or None
        For ``phase``: the phase to configure instead, e.g. ``"L3"`` (``None`` when no phase
        setting can fix it and the clamp must move, see ``reason``). For ``reversed``:
        ``"reverse"`` (turn the clamp around, or set *reversed*). ``None`` otherwise.
    suggest_reversed : bool or None
        For ``phase``: whether the CT is also mounted against the arrow. ``None`` when not
        judged (other kinds, or a battery whose direction cannot be told).
    confidence : float
        0 to 1: how sure the verdict is, from the size, number and agreement of the load
        changes it rests on.
    reason : str
        Plain words for the installer: what was measured and what to do.
    """

    ct: str
    kind: str
    suggest: str | None
    suggest_reversed: bool | None
    confidence: float
    reason: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence!r}")

    def to_dict(self) -> dict[str, Any]:
        """The SPEC 5.3 ``checks`` entry: ``ct``, ``kind``, ``suggest``, ``suggest_reversed``,
        ``confidence`` (rounded to 0.01) and ``reason``."""
        return {
            "ct": self.ct,
            "kind": self.kind,
            "suggest": self.suggest,
            "suggest_reversed": self.suggest_reversed,
            "confidence": round(self.confidence, 2),
            "reason": self.reason,
        }

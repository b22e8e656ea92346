"""Location-level checks: dead voltage inputs, the voltage phase sequence, Kirchhoff per phase."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from metering.commissioning.findings import Finding
from metering.commissioning.phasors import LIVE_VOLTAGE_SHARE

SEQUENCE_TOLERANCE_DEG = 30.0
KIRCHHOFF_SHARE = 0.10
KIRCHHOFF_MARGIN_W = 50.0
KIRCHHOFF_MIN_W = 100.0

# Expected angle of the second voltage channel against the first (degrees), per topology.
_SECOND_ANGLE = {"3P+N": -120.0, "3P+N-208": -120.0, "2P+N": 180.0, "3P": -60.0}


def _angle_deg(z: complex) -> float:
    return math.degrees(math.atan2(z.imag, z.real))


def _off(angle: float, expected: float) -> float:
    return abs((angle - expected + 180.0) % 360.0 - 180.0)


def voltage_findings(topology: str, keys: Sequence[str], voltages: np.ndarray) -> list[Finding]:
    """Dead voltage inputs, and the phase sequence.

    Parameters
    ----------
    topology : str
    keys : sequence of str
        Names of the voltage channels (``"L1"``, ...).
    voltages : ndarray of complex, shape (K, n_voltages)
        Fundamental phasors per frame.

    Returns
    -------
    list of Finding
        ``no_voltage`` per dead channel; ``sequence`` when the measured sequence is not the
        topology's (star: v2 lags v1 by 120 degrees; split phase: v2 = -v1; delta: v(L2-L3)
        lags v(L1-L3) by 60 degrees). The reason of a reversed star sequence names L2 and L3
        as the wires to swap; :class:`~.session.Commissioning` names the pair the CT verdicts
        point at, when they do.
    """
    out = []
    magnitude = np.abs(voltages).mean(axis=0)
    dead = magnitude < LIVE_VOLTAGE_SHARE * magnitude.max()
    for key, is_dead, level in zip(keys, dead, magnitude, strict=True):
        if is_dead:
            out.append(
                Finding(
                    "",
                    "no_voltage",
                    None,
                    None,
                    0.95,
                    f"The {key} voltage input measures nothing ({level:.1f} V): check its wire and fuse at the Power Box.",
                )
            )
    if dead.any() or topology not in _SECOND_ANGLE:
        return out
    ratio = voltages[:, 1] / voltages[:, 0]
    angle = _angle_deg(complex(np.mean(ratio / np.abs(ratio))))
    expected = _SECOND_ANGLE[topology]
    if _off(angle, expected) <= SEQUENCE_TOLERANCE_DEG:
        if topology in ("3P+N", "3P+N-208"):
            ratio3 = voltages[:, 2] / voltages[:, 0]
            angle3 = _angle_deg(complex(np.mean(ratio3 / np.abs(ratio3))))
            if _off(angle3, 120.0) > SEQUENCE_TOLERANCE_DEG:
                out.append(_same_or_odd(keys[2], angle3, topology))
        return out
    if topology == "2P+N":
        reason = (
            f"L2's voltage is {angle:.0f}° from L1's instead of opposite (180°): both voltage inputs are on the same "
            "line. Connect the L2 input of the Power Box to the other line."
        )
        out.append(Finding("", "sequence", None, None, 0.9, reason))
        return out
    if _off(angle, -expected) <= SEQUENCE_TOLERANCE_DEG:
        if topology == "3P":
            reason = (
                f"The phase sequence is reversed: v(L2-L3) leads v(L1-L3) by {abs(angle):.0f}° instead of lagging it "
                "by 60°. Swap the L1 and L2 voltage wires at the Power Box."
            )
        else:
            reason = (
                f"The phase sequence is reversed: L2's voltage leads L1's by {abs(angle):.0f}° instead of lagging it "
                "by 120°. Swap the L2 and L3 voltage wires at the Power Box."
            )
        out.append(Finding("", "sequence", None, None, 0.9, reason))
        return out
    out.append(_same_or_odd(keys[1], angle, topology))
    return out


def _same_or_odd(key: str, angle: float, topology: str) -> Finding:
    if abs(angle) <= SEQUENCE_TOLERANCE_DEG:
        reason = (
            f"The {key} voltage input is on the same phase as L1 ({angle:.0f}° apart): connect it to its own phase."
        )
    else:
        reason = f"The {key} voltage is {angle:.0f}° from L1's, which fits no {topology} installation: check the voltage wiring."
    return Finding("", "sequence", None, None, 0.85, reason)


def rename_sequence_pair(finding: Finding, pair: tuple[str, str]) -> Finding:
    """The same ``sequence`` finding, naming ``pair`` as the wires to swap."""
    reason = finding.reason
    for default in ("the L2 and L3 voltage wires", "the L1 and L2 voltage wires"):
        reason = reason.replace(default, f"the {pair[0]} and {pair[1]} voltage wires")
    reason += f" (The CTs on {pair[0]} and {pair[1]} follow each other's voltage, which this explains.)"
    return Finding(finding.ct, finding.kind, finding.suggest, finding.suggest_reversed, finding.confidence, reason)


def kirchhoff_finding(ct: str, phase: str, grid_w: float, production_w: float, submetered_w: float) -> Finding | None:
    """``kirchhoff`` when a phase's consumption (grid plus production) is clearly less than its sub-meters.

    Parameters
    ----------
    ct : str
        The grid CT of the phase (``""`` for a delta location's total).
    phase : str
        ``"L1"``... or ``"total"``.
    grid_w, production_w, submetered_w : float
        Mean powers over the window: the grid's (import > 0), solar and battery production on
        the phase, and the larger of the sum of the circuits and appliances and the sum of the
        consumption CTs on it.
    """
    if submetered_w < KIRCHHOFF_MIN_W:
        return None
    consumption_w = grid_w + production_w
    if consumption_w >= submetered_w - (KIRCHHOFF_SHARE * submetered_w + KIRCHHOFF_MARGIN_W):
        return None
    where = "in total" if phase == "total" else f"on {phase}"
    produced = f" plus {production_w:.0f} W of production" if abs(production_w) >= 1.0 else ""
    reason = (
        f"The grid {where} measures {grid_w:.0f} W{produced}, less than the {submetered_w:.0f} W of the circuits "
        "behind it: is a grid CT on a wrong phase or reversed?"
    )
    shortfall = (submetered_w - consumption_w) / max(submetered_w, 1.0)
    return Finding(ct, "kirchhoff", None, None, min(0.95, 0.5 + shortfall), reason)

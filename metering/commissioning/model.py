"""What a CT can physically be measuring, per topology: its *hypotheses*.

A hypothesis is an *axis* (the phase a CT could be configured on) and a *sign* (+1 as
configured, -1 mounted the other way round). Each axis has

* a reference voltage, a linear combination of the measured voltage phasors: the voltage a
  correctly mapped CT's load current follows (SPEC section 3), and
* an *incidence* on the lines: how a current on that axis shows up in the line currents the
  grid CTs measure (used to match a CT's load changes with the grid's).

============ ============================= ========================= ========================
mode         used for                      axis -> reference          axis -> lines
============ ============================= ========================= ========================
``star``     3P+N, 3P+N-208                Lk -> v(Lk-N)               Lk
``single``   1P                            L1 -> v(L1-N)               L1
``split``    2P+N                          Lk -> v(Lk-N) (v2 = -v1)    Lk
``delta_ref`` 3P, a load with one CT       L1 -> v(L1-L3),             L1: +L1 -L3,
             (single phase, manual table)  L2 -> v(L2-L3),             L2: +L2 -L3,
                                           L3 -> v(L1-L2)              L3: +L1 -L2
``delta_line`` 3P, a load with several CTs line Lk -> e_k, the virtual Lk
             (two-wattmeter: a clamp       star potential (v13 and
             around a line)                v23 give e1 = (2 v13 - v23)/3, ...)
============ ============================= ========================= ========================

In ``delta_line`` the configured phase of a two-wattmeter CT names the line it is clamped
around (L1 with v(L1-L3), L2 with v(L2-L3)); a clamp around L3 cannot be configured
correctly and is not *fixable* by a phase setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LINES: tuple[str, ...] = ("L1", "L2", "L3")


@dataclass(frozen=True, eq=False)
class Mode:
    """Hypothesis space of one kind of CT.

    Attributes
    ----------
    name : str
    axes : tuple of str
        Phase names a CT of this mode can follow, in order.
    coef : ndarray, shape (n_axes, n_voltages)
        Reference of each axis as coefficients on the measured voltage phasors.
    incidence : ndarray, shape (n_axes, 3)
        How a current on the axis appears on the lines L1, L2, L3 (consumer direction).
    fixable : tuple of bool
        Whether configuring the axis measures it correctly.
    """

    name: str
    axes: tuple[str, ...]
    coef: np.ndarray
    incidence: np.ndarray
    fixable: tuple[bool, ...]

    def index(self, axis: str) -> int:
        return self.axes.index(axis)


def _mode(
    name: str, axes: tuple[str, ...], coef: list, incidence: list, fixable: tuple[bool, ...] | None = None
) -> Mode:
    return Mode(
        name=name,
        axes=axes,
        coef=np.array(coef, dtype=np.float64),
        incidence=np.array(incidence, dtype=np.float64),
        fixable=fixable or (True,) * len(axes),
    )


_EYE = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

MODES: dict[str, Mode] = {
    "star": _mode("star", LINES, _EYE, _EYE),
    "single": _mode("single", ("L1",), [[1.0]], [_EYE[0]]),
    "split": _mode("split", ("L1", "L2"), [[1.0, 0.0], [0.0, 1.0]], _EYE[:2]),
    "delta_ref": _mode(
        "delta_ref",
        LINES,
        [[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]],
        [[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [1.0, -1.0, 0.0]],
    ),
    "delta_line": _mode(
        "delta_line",
        LINES,
        [[2 / 3, -1 / 3], [-1 / 3, 2 / 3], [-1 / 3, -1 / 3]],
        _EYE,
        fixable=(True, True, False),
    ),
}


def mode_for(topology: str, n_cts_of_load: int) -> Mode:
    """The hypothesis space of a CT in ``topology`` whose load has ``n_cts_of_load`` CTs."""
    if topology == "1P":
        return MODES["single"]
    if topology == "2P+N":
        return MODES["split"]
    if topology == "3P":
        return MODES["delta_ref"] if n_cts_of_load == 1 else MODES["delta_line"]
    return MODES["star"]

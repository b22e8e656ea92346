"""Commissioning: is every CT on the phase it is configured on, and the right way round?

The installation manual (section 9): "if loads are being measured, this does not
automatically mean that the power values are correct. Incorrect line voltage and current
mapping could lead to incorrect power values." This package finds such mistakes from live
frames, in pure numpy (no Django).

Method
------
1. Per frame, the fundamental phasor of every voltage channel and CT current over whole
   cycles at the measured frequency (:mod:`.phasors`), all turned so that L1's voltage is
   real: angles are comparable from frame to frame, and the change of a current between two
   frames is a load switching.
2. Per CT, the *hypotheses* of what it measures (:mod:`.model`): each candidate phase,
   either way round; in delta the manual's references (L1 -> v(L1-L3), L2 -> v(L2-L3),
   L3 -> v(L1-L2)) for single-phase loads, the clamped line for two-wattmeter CTs.
3. The angle method (:mod:`.steps`): the magnitude-weighted circular mean angle of a CT's
   load changes against each hypothesis' reference (a standing mixture of loads cannot move
   it), whether its power rises when its current rises, and its standing power. The
   configuration stands when its hypothesis looks like a load (within 75 degrees, power
   rising); otherwise the hypothesis that looks most like household loads (resistive to
   inductive) is suggested. Inverters (solar, battery) are judged on their standing current,
   which has a power factor near 1; a battery's direction is not judged by angle.
4. The grid cross-check (:mod:`.crosscheck`): a load change of a sub-metered CT shows up on
   the grid CT of the line it is on, with ratio +1 or -1, whatever its power factor. A robust
   least-squares fit of the grid CTs' changes on all the others' gives each CT a pattern; the
   most parsimonious assignment of lines and directions explaining every pattern (weighing
   the angle method's evidence) settles the CTs it covers, grid CTs included.
5. Location checks (:mod:`.location`, :mod:`.session`): dead voltage inputs, the voltage
   phase sequence, voltage inputs that do not match the CTs' lines (every CT following the
   same other phase), every CT reversed, and Kirchhoff per phase (grid plus production not
   less than the sub-meters behind it).

Limits
------
By angle alone the hypotheses of a star are 60 degrees apart, and the references of delta
only 60 degrees from each other: a load at power factor 0.5 on one phase looks like a
resistive one on a neighbouring hypothesis. The configuration is never flagged while it is
plausible, so a miswiring that keeps it plausible (a heat pump at power factor 0.7 on the
phase 120 degrees ahead; a delta load on the neighbouring pair) is only found through the
grid cross-check, that is with grid CTs and load changes on the CT. A reversed grid CT while
the house exports, with no sub-meter on that phase, can pass. Split phase: L2 is L1 inverted,
so without a grid CT's help "reversed" and "on L2" are told apart only for inverters, by the
grid's power.

Only :class:`Commissioning` and :class:`Finding` are public.
"""

from __future__ import annotations

from metering.commissioning.findings import KINDS, Finding
from metering.commissioning.session import Commissioning

__all__ = ["KINDS", "Commissioning", "Finding"]

"""Commissioning: is every CT on the phase it is configured on, and the right way round?

The installation manual (section 9): "if loads are being measured, this does not
automatically mean that the power values are correct. Incorrect line voltage and current
mapping could lead to incorrect power values." This package finds such mistakes from live
frames, in pure numpy (no Django).

Method
------
1. Per frame, the fundamental phasor of every voltage channel and CT current over whole
   cycles at the measured frequency (:mod:`.phasors`), all turned so that L1's voltage is
   real: angles are comparable from frame to frame.
2. Per CT, the *hypotheses* of what it measures (:mod:`.model`): each candidate phase,
   either way round; in delta the manual's references (L1 -> v(L1-L3), L2 -> v(L2-L3),
   L3 -> v(L1-L2)) for single-phase loads, the clamped line for two-wattmeter CTs.
3. The angle method (:mod:`.steps`): the *changes* of a CT's current between frames (a load
   switching) are oriented (on = the current grows) and their magnitude-weighted circular mean
   angle against each hypothesis' reference is taken; a standing mixture of loads cannot move
   it. The configured hypothesis stands when its steps look like a load (within 75 degrees,
   standing active power not negative); otherwise the hypothesis whose steps look most like a
   household load (resistive to inductive) is suggested. Inverters (solar, battery) are
   judged on their standing current, which has a power factor near 1; a battery's direction
   is not judged by angle (it charges and discharges).
4. The grid cross-check (:mod:`.crosscheck`): a load change of a sub-metered CT shows up, with
   ratio +1 or -1, on the grid CT of the line it is on, whatever its power factor. The most
   parsimonious assignment of lines and directions to all CTs that explains those patterns
   settles the CTs it covers (grid CTs included).
5. Location checks (:mod:`.location`): dead voltage inputs, the voltage phase sequence, and
   Kirchhoff per phase (grid plus production not less than the sub-meters behind it).

Only :class:`Commissioning` and :class:`Finding` are public.
"""

from __future__ import annotations

from metering.commissioning.findings import KINDS, Finding
from metering.commissioning.session import Commissioning

__all__ = ["KINDS", "Commissioning", "Finding"]

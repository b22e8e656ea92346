"""Metering core: sample frames to live electricity values and energy, in pure numpy.

No Django here (``tests/metering/test_core_is_pure.py`` proves it). The Django side calls
:func:`compute_frame` per frame (or :func:`compute_block` with ``(channels, samples)``
blocks) and keeps :class:`Carry` per Power Box.
"""

from __future__ import annotations

from metering.core.config import KINDS, TOPOLOGIES, CtChannel, MeterConfig
from metering.core.frame import compute_block, compute_frame, flow_totals
from metering.core.results import Carry, CtArrays, CtValues, FrameResult, LoadArrays, LoadValues, Totals

__all__ = [
    "KINDS",
    "TOPOLOGIES",
    "Carry",
    "CtArrays",
    "CtChannel",
    "CtValues",
    "FrameResult",
    "LoadArrays",
    "LoadValues",
    "MeterConfig",
    "Totals",
    "compute_block",
    "compute_frame",
    "flow_totals",
]

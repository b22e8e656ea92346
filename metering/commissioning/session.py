"""The commissioning session of one Power Box: frames in, findings out."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from metering.commissioning.crosscheck import crosscheck
from metering.commissioning.findings import Finding
from metering.commissioning.location import (
    kirchhoff_finding,
    rename_sequence_pair,
    voltage_findings,
)
from metering.commissioning.model import LINES, MODES, Mode, mode_for
from metering.commissioning.phasors import FramePhasors, frame_phasors
from metering.commissioning.steps import CtInput, Hypothesis, Verdict, also_reversed, judge, turn_advice, wrong_way
from metering.core.config import VOLTAGE_CHANNELS, MeterConfig, validate_config

_LINE_MODES = ("star", "single", "split", "delta_line")
_PRODUCERS = ("solar", "battery")
_SUBMETERS = ("circuit", "appliance")


class Commissioning:
    """Checks the phase mapping and the direction of every CT from live frames (manual section 9).

    Feed it the frames of one Power Box with :meth:`add_frame` while the installer switches
    loads on and off; :meth:`findings` judges the last ``window_frames`` of them. The method
    (see :mod:`metering.commissioning`) rests on *load changes* between consecutive frames:
    their angle against each candidate voltage reference, and which grid CT they show up on.

    Parameters
    ----------
    config : MeterConfig
        Topology and CT channels as configured (SPEC 3, 5.1).
    window_frames : int, optional
        Frames kept (the most recent ones), at least 2. Default 60.
    min_current_a : float, optional
        Currents and current changes under this are too small to judge. Default 0.2 A.

    Raises
    ------
    ValueError
        An invalid configuration (as :func:`metering.core.config.validate_config`), or
        ``window_frames`` / ``min_current_a`` out of range.

    Examples
    --------
    >>> session = Commissioning(config)                      # doctest: +SKIP
    >>> for frame in frames:                                 # doctest: +SKIP
    ...     session.add_frame(frame.voltages, frame.currents, frame.fs_hz)
    >>> [f.to_dict() for f in session.findings()]            # doctest: +SKIP
    """

    def __init__(self, config: MeterConfig, *, window_frames: int = 60, min_current_a: float = 0.2) -> None:
        if not isinstance(config, MeterConfig):
            raise ValueError(f"config must be a MeterConfig, got {type(config).__name__}")
        validate_config(config)
        if isinstance(window_frames, bool) or not isinstance(window_frames, int) or window_frames < 2:
            raise ValueError(f"window_frames must be an integer of at least 2, got {window_frames!r}")
        try:
            current = float(min_current_a)
        except (TypeError, ValueError):
            raise ValueError(f"min_current_a must be a number, got {min_current_a!r}") from None
        if not (math.isfinite(current) and current > 0.0):
            raise ValueError(f"min_current_a must be a positive number of amps, got {min_current_a!r}")
        self.config = config
        self.window_frames = window_frames
        self.min_current_a = current
        self._voltage_keys = VOLTAGE_CHANNELS[config.topology]
        self._ct_ids = tuple(channel.ct for channel in config.channels)
        load_sizes = Counter(channel.load for channel in config.channels)
        self._modes: tuple[Mode, ...] = tuple(
            mode_for(config.topology, load_sizes[channel.load]) for channel in config.channels
        )
        self._signs = np.array([-1.0 if channel.reversed else 1.0 for channel in config.channels])
        self._frames: deque[FramePhasors] = deque(maxlen=window_frames)

    @property
    def n_frames(self) -> int:
        """Frames in the window."""
        return len(self._frames)

    def clear(self) -> None:
        """Forget every frame (after the installer fixed something)."""
        self._frames.clear()

    def add_frame(self, voltages: Mapping[str, ArrayLike], currents: Mapping[str, ArrayLike], fs_hz: float) -> None:
        """Add one frame of samples (SPEC 5.2 ``voltages``, ``currents``, ``fs``).

        Frames are taken to follow each other: the change between two consecutive ones is a
        load change. After a gap, a reconnection or a configuration change, :meth:`clear`.

        Raises
        ------
        ValueError
            Naming the channel: a missing voltage or CT, samples that are not a
            one-dimensional array of real finite numbers, unequal lengths, a sample rate out of
            range (1 to 50 kHz), or no whole cycle in the frame. Nothing is added.
        """
        self._frames.append(frame_phasors(voltages, currents, fs_hz, self._voltage_keys, self._ct_ids))

    def findings(self) -> list[Finding]:
        """Location-level findings first, then one per CT in configuration order.

        Location level: ``no_voltage``, ``sequence`` (``ct`` is ``""``) and ``kirchhoff`` (on
        the grid CT of the phase, ``""`` for a delta location's total). Per CT: ``ok``,
        ``phase``, ``reversed``, ``no_current``, ``low_current`` or ``inconsistent``.
        """
        channels = self.config.channels
        if len(self._frames) < 2:
            return [
                Finding(
                    c.ct,
                    "low_current",
                    None,
                    None,
                    0.0,
                    "Not enough frames yet: keep the page open while loads switch.",
                )
                for c in channels
            ]
        voltages = np.array([f.voltages for f in self._frames])
        currents = np.array([f.currents for f in self._frames]) * self._signs
        rms = np.array([f.current_rms_a for f in self._frames])
        location = voltage_findings(self.config.topology, self._voltage_keys, voltages)
        if any(f.kind == "no_voltage" for f in location):
            return location + [
                Finding(c.ct, "low_current", None, None, 0.0, "Not judged: a voltage input measures nothing.")
                for c in channels
            ]

        inputs = self._inputs(voltages, currents, rms)
        angle_verdicts = self._angle_verdicts(inputs)
        transform = _global_transform(inputs, angle_verdicts)
        verdicts = self._cross_checked(inputs, angle_verdicts, transform)

        cts = [_finding(ct, verdict) for ct, verdict in zip(inputs, verdicts, strict=True)]
        relabelled = transform is not None and any(sign > 0 and axis != a for a, (axis, sign) in transform.items())
        if relabelled:  # power values are meaningless until the voltage wires are right: no Kirchhoff
            pair = _transposition(transform)
            if any(f.kind == "sequence" for f in location) and pair is not None:
                location = [rename_sequence_pair(f, pair) if f.kind == "sequence" else f for f in location]
            elif not any(f.kind == "sequence" for f in location):
                location.append(_relabel_finding(transform))
        else:
            location += self._kirchhoff(inputs, verdicts)
        return location + cts

    def _inputs(self, voltages: np.ndarray, currents: np.ndarray, rms: np.ndarray) -> list[CtInput]:
        """Per CT, its window of phasors and its hypotheses' reference voltages."""
        return [
            CtInput(
                ct=c.ct,
                load=c.load,
                kind=c.kind,
                phase=c.phase,
                mode=mode,
                currents=currents[:, j],
                rms_a=rms[:, j],
                refs=(voltages @ mode.coef.T).T,
                generation=np.zeros((len(mode.axes), len(voltages)), dtype=complex),
                reversed_setting=c.reversed,
            )
            for j, (c, mode) in enumerate(zip(self.config.channels, self._modes, strict=True))
        ]

    def _angle_verdicts(self, inputs: list[CtInput]) -> list[Verdict]:
        """The angle method's verdict per CT: the producers first, so that each grid CT's
        hypotheses include the production on their line (an export is not a reversal)."""
        verdicts: list[Verdict | None] = [None] * len(inputs)
        order = sorted(range(len(inputs)), key=lambda j: (inputs[j].kind not in _PRODUCERS, inputs[j].kind == "grid"))
        production = np.zeros((len(LINES), len(inputs[0].currents) if inputs else 0), dtype=complex)
        for j in order:
            ct = inputs[j]
            if ct.kind == "grid":
                ct.generation = ct.mode.incidence @ production
            verdict = judge(ct, self.min_current_a)
            if ct.kind in _PRODUCERS:
                if verdict.ambiguous_with is not None:
                    verdict = _settle_split(ct, verdict, [g for g in inputs if g.kind == "grid"])
                hyp = _hypothesis(ct, verdict)
                production += np.outer(ct.mode.incidence[ct.mode.index(hyp.axis)], hyp.sign * ct.currents)
            verdicts[j] = verdict
        return verdicts  # type: ignore[return-value]

    def _cross_checked(
        self, inputs: list[CtInput], angle_verdicts: list[Verdict], transform: dict[str, tuple[str, int]] | None
    ) -> list[Verdict]:
        """The verdicts once the grid cross-check has settled the CTs it covers."""
        grid = [
            j
            for j, ct in enumerate(inputs)
            if ct.kind == "grid"
            and ct.mode.name in _LINE_MODES
            and angle_verdicts[j].kind in ("ok", "phase", "reversed", "inconsistent")
        ]
        # A CT whose changes fit no single phase (around the neutral, say) would explain
        # everyone's changes in the fit: it stays out.
        subs = [
            j
            for j, ct in enumerate(inputs)
            if ct.kind != "grid" and angle_verdicts[j].kind not in ("no_current", "inconsistent")
        ]
        grid_results, sub_results = crosscheck(
            [inputs[j] for j in grid],
            [angle_verdicts[j] for j in grid],
            [inputs[j] for j in subs],
            [angle_verdicts[j] for j in subs],
            self.min_current_a,
        )
        verdicts = list(angle_verdicts)
        for j, ct in enumerate(inputs):
            settled = grid_results.get(ct.ct) or sub_results.get(ct.ct)
            if transform is not None and _follows(ct, angle_verdicts[j], transform):
                # Every CT moved alike: the CTs agree with each other, so matching them with the
                # grid CTs cannot see it. The angles can.
                settled = _under_transform(ct, angle_verdicts[j], transform)
            if settled is not None:
                verdicts[j] = settled
            if ct.mode.name == "delta_line" and ct.phase == "L3" and verdicts[j].kind == "ok":
                verdicts[j] = Verdict(
                    "phase",
                    None,
                    0.9,
                    "In delta, three-phase loads are measured on L1 and L2 only (two-wattmeter method): "
                    "clamp this CT around L1 or L2 and configure that phase.",
                )
        return verdicts

    def _kirchhoff(self, inputs: list[CtInput], verdicts: list[Verdict]) -> list[Finding]:
        """Kirchhoff per phase (per total in delta), with every CT's judged mapping."""
        if not any(ct.kind == "grid" for ct in inputs):
            return []
        delta = self.config.topology == "3P"
        groups = ("total",) if delta else tuple(MODES[_star_like(self.config.topology)].axes)
        grid_w = dict.fromkeys(groups, 0.0)
        production_w = dict.fromkeys(groups, 0.0)
        submetered_w = dict.fromkeys(groups, 0.0)
        consumption_w = dict.fromkeys(groups, 0.0)
        grid_ct: dict[str, str] = {}
        judged_ok = dict.fromkeys(groups, True)
        for ct, verdict in zip(inputs, verdicts, strict=True):
            hyp = Hypothesis(ct.phase, 1) if ct.kind == "grid" else _hypothesis(ct, verdict)
            if delta:
                ref = MODES["delta_ref"].coef[
                    MODES["delta_ref"].index(ct.phase if ct.mode.name == "delta_line" else hyp.axis)
                ]
                group = "total"
            else:
                ref = None
                group = hyp.axis
            volts = ct.refs[ct.mode.index(hyp.axis)] if ref is None else self._delta_ref(ref)
            power = float(np.mean((volts * np.conj(hyp.sign * ct.currents)).real))
            if ct.kind == "grid":
                grid_w[group] += power
                grid_ct.setdefault(group, "" if delta else ct.ct)
                if verdict.kind not in ("ok", "low_current"):
                    judged_ok[group] = False
            elif ct.kind in _PRODUCERS:
                production_w[group] += power
            elif ct.kind in _SUBMETERS:
                submetered_w[group] += power
            else:
                consumption_w[group] += power
        for ct, verdict in zip(inputs, verdicts, strict=True):
            if verdict.ambiguous_with is not None and verdict.kind in ("phase", "reversed") and not delta:
                for axis in (verdict.ambiguous_with.axis, ct.phase):
                    judged_ok[axis] = False  # which line it is on is not known
        out = []
        for group in groups:
            if group not in grid_ct or not judged_ok[group]:
                continue
            finding = kirchhoff_finding(
                grid_ct[group],
                group,
                grid_w[group],
                production_w[group],
                max(submetered_w[group], consumption_w[group]),
            )
            if finding is not None:
                out.append(finding)
        return out

    def _delta_ref(self, coef: np.ndarray) -> np.ndarray:
        return np.array([f.voltages for f in self._frames]) @ coef


def _star_like(topology: str) -> str:
    return {"1P": "single", "2P+N": "split"}.get(topology, "star")


def _hypothesis(ct: CtInput, verdict: Verdict) -> Hypothesis:
    """The judged hypothesis of a CT, or its configuration when nothing was judged."""
    if verdict.hyp is not None and verdict.kind in ("ok", "phase", "reversed"):
        return Hypothesis(verdict.hyp.axis, verdict.hyp.sign if verdict.direction else 1)
    return Hypothesis(ct.phase, 1)


def _settle_split(ct: CtInput, verdict: Verdict, grids: list[CtInput]) -> Verdict:
    """A split-phase producer that is either reversed or on the other line: ask the grid CTs.

    In split phase v(L2-N) = -v(L1-N), so by angle a reversed inverter on L1 and an inverter
    on L2 are the same. Production makes its line's grid power go down (export); the line
    whose grid plus this production leaves no line with a negative consumption is the one.
    """
    if ct.mode.name != "split" or not grids or verdict.hyp is None:
        return verdict
    options = (verdict.hyp, verdict.ambiguous_with)
    grid_w = np.zeros(len(LINES))
    for g in grids:
        a = g.mode.index(g.phase)
        grid_w += g.mode.incidence[a] * float(np.mean((g.refs[a] * np.conj(g.currents)).real))
    deficits = []
    for hyp in options:
        a = ct.mode.index(hyp.axis)
        produced = float(np.mean((ct.refs[a] * np.conj(hyp.sign * ct.currents)).real))
        deficits.append(float(np.maximum(0.0, -(grid_w + ct.mode.incidence[a] * produced)).sum()))
    produced_w = abs(float(np.mean((ct.refs[0] * np.conj(ct.currents)).real)))
    margin = 0.1 * produced_w + 50.0
    if deficits[1] + margin < deficits[0]:
        hyp = options[1]
    elif deficits[0] + margin < deficits[1]:
        hyp = options[0]
    else:
        return verdict
    because = f" The grid CTs' power settles it: with it on {hyp.axis}, no line exports more than it produces."
    if hyp.axis == ct.phase:
        reason = (
            f"{wrong_way(ct)}: against {ct.phase}'s voltage its current is opposite, so its power comes out "
            f"negative. {turn_advice(ct)}{because}"
        )
        return Verdict("reversed", hyp, verdict.confidence, reason, verdict.basis, True, verdict.n, verdict.plausible)
    reason = (
        f"It is on {hyp.axis}, not {ct.phase} as configured (in split phase {hyp.axis} is {ct.phase} inverted)."
        + because
    )
    if hyp.sign < 0:
        reason += also_reversed(ct)
    return Verdict("phase", hyp, verdict.confidence, reason, verdict.basis, True, verdict.n, verdict.plausible)


def _finding(ct: CtInput, verdict: Verdict) -> Finding:
    """The public finding of a CT's verdict."""
    confidence = min(1.0, max(0.0, float(verdict.confidence)))
    if verdict.kind == "phase" and verdict.hyp is not None:
        fixable = ct.mode.fixable[ct.mode.index(verdict.hyp.axis)]
        return Finding(
            ct.ct,
            "phase",
            verdict.hyp.axis if fixable else None,
            (verdict.hyp.sign < 0) if verdict.direction else None,
            confidence,
            verdict.reason,
        )
    if verdict.kind == "reversed":
        return Finding(ct.ct, "reversed", "reverse", True, confidence, verdict.reason)
    return Finding(ct.ct, verdict.kind, None, None, confidence, verdict.reason)


GLOBAL_SHARE = 0.8
"""Share of the judged CTs that must have moved alike for a location-wide explanation."""


def _global_transform(inputs: list[CtInput], verdicts: list[Verdict]) -> dict[str, tuple[str, int]] | None:
    """A change common to (nearly) every CT, from the angle method, or ``None``.

    Two kinds are location-wide: the voltage inputs of the Power Box do not match the lines
    the CTs are on (a permutation of the phases: every CT on L2 follows the voltage of the L3
    input, say), or every CT reads reversed. Either way the CTs agree with each other, which
    the grid cross-check cannot see. Returns ``{configured phase: (followed phase, sign)}``.
    """
    moves = [
        (ct.phase, verdict.hyp.axis, verdict.hyp.sign)
        for ct, verdict in zip(inputs, verdicts, strict=True)
        if ct.mode.name in ("star", "split", "single")
        and verdict.kind in ("ok", "phase", "reversed")
        and verdict.hyp is not None
        and verdict.direction
        and verdict.basis in ("steps", "standing")
        and (verdict.kind == "ok" or verdict.confidence >= 0.5)
    ]
    if len(moves) < 2:
        return None
    per_phase: dict[str, Counter] = {}
    for configured, axis, sign in moves:
        per_phase.setdefault(configured, Counter())[(axis, sign)] += 1
    mapping = {phase: counts.most_common(1)[0][0] for phase, counts in per_phase.items()}
    agreeing = sum(per_phase[phase][mapping[phase]] for phase in per_phase)
    if agreeing < GLOBAL_SHARE * len(moves):
        return None
    if all(target == (phase, 1) for phase, target in mapping.items()):
        return None
    if all(target == (phase, -1) for phase, target in mapping.items()):
        return mapping  # every CT reversed
    targets = [axis for axis, _ in mapping.values()]
    if all(sign > 0 for _, sign in mapping.values()) and len(set(targets)) == len(targets) and len(mapping) > 1:
        return mapping  # the voltage inputs are permuted
    return None


def _follows(ct: CtInput, verdict: Verdict, transform: dict[str, tuple[str, int]]) -> bool:
    target = transform.get(ct.phase)
    return target is not None and verdict.hyp is not None and (verdict.hyp.axis, verdict.hyp.sign) == target


def _under_transform(ct: CtInput, verdict: Verdict, transform: dict[str, tuple[str, int]]) -> Verdict:
    """A CT's verdict when every CT moved alike."""
    axis, sign = transform[ct.phase]
    if sign < 0:
        note = {
            "single": " Every CT reads reversed: if the clamps' arrows do point with the current, the Power Box's "
            "L and N voltage wires are swapped.",
            "split": " Every CT reads reversed: if the clamps' arrows do point with the current, the Power Box's "
            "L1 and L2 voltage wires are swapped.",
        }.get(ct.mode.name, " Every CT reads reversed: check that the arrows point from the grid towards the loads.")
        return Verdict(
            verdict.kind,
            verdict.hyp,
            verdict.confidence,
            verdict.reason + note,
            verdict.basis,
            True,
            verdict.n,
            verdict.plausible,
        )
    if axis == ct.phase:
        return verdict
    return Verdict(
        "ok",
        Hypothesis(ct.phase, 1),
        verdict.confidence,
        f"It agrees with the other CTs, but its current follows the voltage of the {axis} input: the Power Box's "
        "voltage inputs do not match the phases (see the location check). Its power is wrong until that is fixed.",
        "grid",
        True,
        verdict.n,
        verdict.plausible,
    )


def _transposition(transform: dict[str, tuple[str, int]]) -> tuple[str, str] | None:
    moved = sorted(phase for phase, (axis, _) in transform.items() if axis != phase)
    if len(moved) == 2 and transform[moved[0]][0] == moved[1]:
        return moved[0], moved[1]
    return None


def _relabel_finding(transform: dict[str, tuple[str, int]]) -> Finding:
    """The voltage inputs of the Power Box do not match the phases the CTs are on."""
    moved = [
        f"the CTs on {phase} follow the {axis} voltage input"
        for phase, (axis, _) in sorted(transform.items())
        if axis != phase
    ]
    return Finding(
        "",
        "sequence",
        None,
        None,
        0.85,
        "The voltage inputs do not match the phases of the CTs: "
        + "; ".join(moved)
        + ". Check with a multimeter which phase each voltage wire of the Power Box is on and connect it to its "
        "own input (manual sections 9 and 12), rather than reconfiguring every CT.",
    )

"""Per CT: which voltage its load changes follow, and in which direction (the angle method).

Evidence
--------
``C[k]`` is a CT's fundamental current phasor in frame ``k`` (configured reversal applied),
``u_a[k]`` the unit phasor of the reference of axis ``a`` (:mod:`.model`). Under a hypothesis
``(a, s)`` the current of the load is ``s C[k]`` (plus, for a grid CT, the production of the
solar and battery CTs on that line, so that an export does not look like a reversed CT).

* **Steps** (consumers: grid, consumption, circuits, appliances). A load switching between
  two frames changes the current by ``dC = C[k] - C[k-1]``; whatever else runs, a standing
  mixture of inductive and capacitive loads cannot change the angle of ``dC``. Under a
  hypothesis every step is *folded* so that it raises the active power on that hypothesis'
  reference (``Re(dC conj(u_a)) >= 0``): for the true hypothesis that is exactly "on" (every
  passive load has positive power on its own voltage), so the magnitude-weighted circular mean
  of the folded angles is the displacement angle of the switching loads, and ``cos`` of it the
  implied power factor of the steps.
* **Direction**. Folding says nothing about the direction, so each step is also oriented by
  the current's magnitude (*on* when ``|C|`` grows): the *rise* is the weighted share of those
  steps whose power rises with the current. A correctly mounted CT has most of them rising
  (a step falls only when it is nearly opposite to a large standing current), a reversed one
  or one on a phase 120 degrees away has most of them falling. The standing power factor
  ``Re(C conj(u_a)) / |C|`` over the window backs it up.
* **Standing current** (solar and battery inverters, which hold a power factor near 1; and
  consumers without steps, with less confidence): the angle of ``s C[k]`` itself.

Plausibility
------------
A correctly mapped consumer's steps sit within about +-73 degrees of the reference (power
factor 0.3 lagging or leading to 1): a hypothesis is plausible within :data:`CONE_DEG` when its
steps mostly rise and its standing active power is not clearly negative. An inverter sits
within :data:`INVERTER_CONE_DEG`. The configured hypothesis wins whenever it is plausible (no
alarm on a plausible but unusual load). Otherwise the plausible hypothesis whose steps look
most like household loads wins: resistive to inductive (up to 40 degrees lagging) costs
nothing, more lag costs a little, lead costs three times as much, since capacitive loads of
any size are rare. That prior matters because the six hypotheses of a star are only 60
degrees apart: a lagging load on L1 looks like a leading one on "L3 reversed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from metering.commissioning.model import Mode

# Plausibility of a hypothesis.
CONE_DEG = 75.0
"""Widest mean angle of a consumer's steps from its reference: power factor 0.26."""
INVERTER_CONE_DEG = 40.0
"""Widest angle of an inverter's current from its reference: power factor 0.77 (inverters
supporting the grid's voltage with reactive power run down to about 0.9)."""
RISE_MIN = 0.5
"""A plausible direction has at least this weighted share of steps whose power rises with
the current..."""
RISE_WITH_STANDING = 0.2
STANDING_BACKUP_PF = 0.3
"""... or at least :data:`RISE_WITH_STANDING` of them and a standing power factor of at least
this (a large standing reactive current makes steps of the other kind shrink it)."""
DELTA_LINE_RISE_MIN = 0.2
""":data:`RISE_MIN` for a two-wattmeter CT in delta, whose line also carries the loads of two
line pairs, 30 degrees either side of the line's own potential."""
SIGN_TOLERANCE = 0.1
"""A standing power factor below minus this rules a consumer hypothesis out."""

# What can be judged at all.
NO_CURRENT_SHARE = 0.25
"""RMS under this share of ``min_current_a`` in every frame: nothing connected."""
MIN_STEPS = 2
"""Load changes of at least ``min_current_a`` needed to judge a consumer by its steps."""
INCONSISTENT_R = 0.3
"""Steps (oriented by magnitude) whose mean resultant length is under this point all over
the place: a clamp around the neutral or around conductors of several phases."""

# A consumer without load changes, judged on its standing current: cautiously.
STANDING_MIN_SHARE = 5.0
"""Only above this many times ``min_current_a`` (an idle house's standby loads have any
power factor)."""
STANDING_CONE_DEG = 80.0
"""Within this angle the configured phase is confirmed (with a low confidence)..."""
STANDING_WRONG_DEG = 105.0
"""... beyond this (clearly negative power) another hypothesis is suggested; in between, too
ambiguous to judge."""
STANDING_MAX_CONFIDENCE = 0.6
"""Confidence of a fix that rests on the standing current of a consumer."""


@dataclass
class CtInput:
    """What the step method needs of one CT.

    Attributes
    ----------
    ct, load, kind, phase : str
        From the configuration; ``phase`` is the configured axis.
    mode : Mode
    currents : ndarray of complex, shape (K,)
        Fundamental phasors, configured reversal applied.
    rms_a : ndarray, shape (K,)
    refs : ndarray of complex, shape (n_axes, K)
        Reference voltage phasor of each axis per frame.
    generation : ndarray of complex, shape (n_axes, K)
        For a grid CT: production current of the solar and battery CTs on each axis' line,
        added to the grid's current under that axis. Zero otherwise.
    reversed_setting : bool
        The CT is configured as reversed (only the advice changes: ``currents`` already
        carry the configured sign).
    """

    ct: str
    load: str
    kind: str
    phase: str
    mode: Mode
    currents: np.ndarray
    rms_a: np.ndarray
    refs: np.ndarray
    generation: np.ndarray
    reversed_setting: bool = False

    @property
    def role(self) -> str:
        if self.kind == "solar":
            return "solar"
        if self.kind == "battery":
            return "battery"
        return "consumer"


@dataclass(frozen=True)
class Hypothesis:
    axis: str
    sign: int


@dataclass
class Score:
    """Evidence for one hypothesis; angles in degrees, positive when the current leads.

    ``angle_deg`` and ``r``: mean angle and resultant length of the (folded) steps or of the
    standing current; ``rise``: weighted share of the steps whose power rises with the
    current, ``falls`` the number that do not; ``angle_oriented_deg`` and ``r_oriented``: mean
    angle and resultant length of the steps oriented by the current's magnitude (steps only;
    otherwise 1, 0, the angle and 1).
    """

    hyp: Hypothesis
    angle_deg: float
    r: float
    standing_pf: float
    cost: float
    plausible: bool
    rise: float = 1.0
    falls: int = 0
    r_oriented: float = 1.0
    angle_oriented_deg: float = 0.0


@dataclass
class Verdict:
    """The step method's verdict on one CT (turned into a :class:`~.findings.Finding` later).

    ``hyp`` is the judged hypothesis (``None`` when nothing could be judged); ``direction``
    whether its sign was judged (not for a battery); ``basis`` what it rests on: ``"steps"``,
    ``"standing"``, ``"grid"`` (matched with the grid CTs) or ``""``; ``implausibility`` per
    hypothesis how clearly the angle method rules it out (0 to 1, weighted by the evidence).
    """

    kind: str
    hyp: Hypothesis | None
    confidence: float
    reason: str
    basis: str = ""
    direction: bool = True
    n: int = 0
    plausible: frozenset[Hypothesis] = field(default_factory=frozenset)
    ambiguous_with: Hypothesis | None = None
    implausibility: dict[Hypothesis, float] = field(default_factory=dict)


def wrong_way(ct: CtInput) -> str:
    """Opening words of a reason for a CT whose current comes out the wrong way round."""
    return "Its current comes out the wrong way round" if ct.reversed_setting else "It is mounted against the arrow"


def turn_advice(ct: CtInput) -> str:
    """What to do about a CT whose current comes out the wrong way round."""
    if ct.reversed_setting:
        return "It is configured as reversed, but the clamp is the right way round: clear the reversed setting."
    return (
        "Turn the clamp around (arrow K->L with the current); setting it reversed also works, "
        "but the manual advises against relying on that."
    )


def also_reversed(ct: CtInput) -> str:
    """The sentence added to a wrong-phase reason when the direction is wrong too."""
    if ct.reversed_setting:
        return " Its reversed setting is wrong too: clear it."
    return " It is also mounted against the arrow: turn the clamp around."


def describe_angle(angle_deg: float) -> str:
    """``"in phase"``, ``"25° lagging"`` or ``"10° leading"`` for a current's angle."""
    a = abs(angle_deg)
    if a < 5.0:
        return "in phase"
    return f"{a:.0f}° {'leading' if angle_deg > 0 else 'lagging'}"


def _cost(angle_deg: float, role: str) -> float:
    """How unlike a household load (or an inverter) a mean angle is, in degrees."""
    if role != "consumer":
        return abs(angle_deg)
    lag = max(0.0, -angle_deg - 40.0)
    lead = max(0.0, angle_deg - 10.0)
    return lag + 3.0 * lead


def _likelihood(cost: float) -> float:
    """Relative prior likelihood of a hypothesis' steps from its cost (1 at cost 0, 0.1 at
    20 degrees: resistive-to-inductive loads are common, strongly capacitive ones rare)."""
    return 10.0 ** (-cost / 20.0)


def _unit(x: np.ndarray) -> np.ndarray:
    magnitude = np.abs(x)
    return np.where(magnitude > 0.0, x / np.where(magnitude > 0.0, magnitude, 1.0), 0.0)


def _circular(vectors: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted circular mean angle (degrees) and resultant length of unit ``vectors``."""
    total = float(weights.sum())
    if total <= 0.0:
        return 0.0, 0.0
    m = complex((vectors * weights).sum()) / total
    return math.degrees(math.atan2(m.imag, m.real)), abs(m)


def hypotheses(mode: Mode) -> list[Hypothesis]:
    return [Hypothesis(axis, sign) for axis in mode.axes for sign in (1, -1)]


def scores(ct: CtInput, min_current_a: float, basis: str) -> list[Score]:
    """Evidence for every hypothesis of ``ct`` from its steps or its standing current."""
    role = ct.role
    cone = CONE_DEG if role == "consumer" else INVERTER_CONE_DEG
    if basis == "standing" and role == "consumer":
        cone = STANDING_CONE_DEG
    rise_min, rise_with_standing = RISE_MIN, RISE_WITH_STANDING
    if ct.mode.name == "delta_line" and role == "consumer":
        # A delta line carries loads between two pairs of lines, 30 degrees either side of the
        # virtual star potential: their angles alone do not tell a line, their direction does.
        cone, rise_min, rise_with_standing = 90.0, DELTA_LINE_RISE_MIN, DELTA_LINE_RISE_MIN / 2
    out = []
    for hyp in hypotheses(ct.mode):
        a = ct.mode.index(hyp.axis)
        c = hyp.sign * ct.currents + ct.generation[a]
        u = _unit(ct.refs[a])
        standing = c * np.conj(u)
        magnitude = float(np.abs(c).sum())
        standing_pf = float(standing.real.sum()) / magnitude if magnitude > 0.0 else 0.0
        rise = 1.0
        falls = 0
        r_oriented = 1.0
        angle_oriented = None
        if basis == "steps":
            d = np.diff(c)
            weights = np.abs(d)
            use = weights >= min_current_a
            z = (d * np.conj(u[1:]))[use]
            w = weights[use]
            folded = np.where(z.real < 0.0, -z, z)
            angle, r = _circular(_unit(folded), w)
            grows = (np.abs(c[1:]) ** 2 >= np.abs(c[:-1]) ** 2)[use]
            raises = np.where(grows, z.real, -z.real) > 0.0
            rise = float(w[raises].sum() / w.sum())
            falls = int((~raises).sum())
            angle_oriented, r_oriented = _circular(_unit(np.where(grows, z, -z)), w)
            direction_ok = rise >= rise_min or (rise >= rise_with_standing and standing_pf >= STANDING_BACKUP_PF)
        else:
            use = np.abs(c) >= min_current_a
            vectors = _unit(standing[use])
            if role == "battery":  # charging and discharging are both normal: fold to P >= 0
                vectors = np.where(vectors.real < 0.0, -vectors, vectors)
            angle, r = _circular(vectors, np.abs(c[use]))
            direction_ok = True
        plausible = abs(angle) <= cone and r > 0.0 and direction_ok
        if role == "consumer" and standing_pf < -SIGN_TOLERANCE:
            plausible = False
        out.append(
            Score(
                hyp,
                angle,
                r,
                standing_pf,
                _cost(angle, role),
                plausible,
                rise,
                falls,
                r_oriented,
                angle if angle_oriented is None else angle_oriented,
            )
        )
    return out


def _usable_steps(ct: CtInput, min_current_a: float) -> tuple[int, float]:
    """Number of steps of at least ``min_current_a`` and their effective number."""
    d = np.abs(np.diff(ct.currents))
    w = d[d >= min_current_a]
    if w.size == 0:
        return 0, 0.0
    return int(w.size), float(w.sum() ** 2 / (w * w).sum())


def judge(ct: CtInput, min_current_a: float) -> Verdict:
    """The step method's verdict on one CT; see the module docstring."""
    configured = Hypothesis(ct.phase, 1)
    peak_rms = float(ct.rms_a.max()) if ct.rms_a.size else 0.0
    if peak_rms < NO_CURRENT_SHARE * min_current_a:
        floor = f"{NO_CURRENT_SHARE * min_current_a:.2f} A"
        reason = (
            f"It reads no current (under {floor} all the time). If its load was running, the connector is not "
            "plugged into its input or the clamp is not closed; otherwise switch the load on."
        )
        if ct.role == "solar":
            reason = (
                f"It reads no current (under {floor} all the time). Normal while the inverter is off (at night); "
                "in daylight, the connector is not plugged into its input or the clamp is not closed."
            )
        return Verdict("no_current", None, 0.9, reason)

    role = ct.role
    mean_current = float(np.abs(ct.currents).mean())
    n_steps, n_eff = _usable_steps(ct, min_current_a)
    if role == "consumer":
        if n_steps >= MIN_STEPS:
            evidence = scores(ct, min_current_a, "steps")
            verdict = _decide(ct, evidence, "steps", n_steps, n_eff, configured)
            return _with_implausibility(verdict, evidence, role, "steps", n_eff)
        if mean_current >= STANDING_MIN_SHARE * min_current_a:
            evidence = scores(ct, min_current_a, "standing")
            verdict = _decide_standing(ct, evidence, configured)
            return _with_implausibility(verdict, evidence, role, "standing", len(ct.currents))
        return Verdict(
            "low_current",
            None,
            0.0,
            f"Too little current to judge (at most {peak_rms:.2f} A and no load change of {min_current_a:g} A or more): "
            "switch a load on and off on this circuit.",
        )
    producing = int((np.abs(ct.currents) >= min_current_a).sum())
    if producing < MIN_STEPS:
        what = "the inverter is not producing" if role == "solar" else "the battery is idle"
        return Verdict(
            "low_current",
            None,
            0.0,
            f"Too little current to judge (at most {peak_rms:.2f} A): {what}; check again while it runs.",
        )
    evidence = scores(ct, min_current_a, "standing")
    verdict = _decide(ct, evidence, "standing", producing, float(producing), configured)
    return _with_implausibility(verdict, evidence, role, "standing", float(producing))


def _evidence(n_eff: float) -> float:
    """Weight of ``n_eff`` (effective) load changes or frames: 0.65 for one, 0.96 for three."""
    return 1.0 - 0.35**n_eff


def _decide(ct: CtInput, evidence: list[Score], basis: str, n: int, n_eff: float, configured: Hypothesis) -> Verdict:
    """The verdict from the scores of every hypothesis (see the module docstring).

    Confidence of a fix: how clearly the configuration is wrong (angle beyond the cone, steps
    whose power falls, negative standing power) times the prior likelihood share of the best
    explanation among the plausible ones, times the weight of the evidence and its agreement.
    """
    role = ct.role
    by_hyp = {s.hyp: s for s in evidence}
    cfg = by_hyp[configured]
    plausible = frozenset(s.hyp for s in evidence if s.plausible)
    what = "load changes" if basis == "steps" else "frames"
    ref_word = _reference_word(ct)
    strength = _evidence(n_eff) * (0.6 + 0.4 * cfg.r)
    direction = role != "battery"
    if cfg.plausible:
        pf = math.cos(math.radians(cfg.angle_deg))
        note = " Its direction is not judged: a battery both charges and discharges." if role == "battery" else ""
        return Verdict(
            "ok",
            configured,
            strength,
            f"Its current follows {ref_word(ct.phase)} as configured ({describe_angle(cfg.angle_deg)}, "
            f"power factor {pf:.2f}, over {n} {what}).{note}",
            basis,
            direction,
            n,
            plausible,
        )
    # Oriented by magnitude, the steps of one load (or of loads on one phase) agree; steps
    # from several phases at once (a clamp around the neutral, two conductors) do not.
    r_oriented = max(s.r_oriented for s in evidence)
    if basis == "steps" and n_eff >= 3 and r_oriented < INCONSISTENT_R and ct.mode.name != "delta_line":
        return Verdict(
            "inconsistent",
            None,
            0.6 * _evidence(n_eff),
            f"Its {n} load changes point in directions that fit no single phase (agreement {r_oriented:.2f}): "
            "is the clamp around more than one conductor, or around the neutral?",
            basis,
            n=n,
            plausible=plausible,
        )
    candidates = sorted(
        (s for s in evidence if s.plausible),
        key=lambda s: (round(s.cost, 1), s.hyp.axis != ct.phase, ct.mode.axes.index(s.hyp.axis), -s.hyp.sign),
    )
    if role == "battery":  # direction not judged: keep the configured sign
        candidates = [s for s in candidates if s.hyp.sign == 1]
    if not candidates:
        return Verdict(
            "inconsistent",
            None,
            0.5 * strength,
            f"Its {what} fit no phase: against {ref_word(ct.phase)} the current is "
            f"{describe_angle(cfg.angle_deg)} (over {n} {what}), and against every other phase it is just as implausible. "
            "Check which conductor the clamp is around.",
            basis,
            n=n,
            plausible=plausible,
        )
    best = candidates[0]
    wrong = _wrongness(cfg, role, basis)
    ambiguous = _equivalent(ct, best.hyp, evidence)
    if ambiguous is not None and ambiguous.axis == ct.phase and ambiguous in plausible:
        # Split phase: "reversed" and "on the other line" look the same; say "reversed" first.
        best, ambiguous = next(s for s in evidence if s.hyp == ambiguous), best.hyp
    rivals = [s for s in candidates if s.hyp not in (best.hyp, ambiguous)]
    # Share of the prior likelihood the best explanation holds among the plausible ones.
    fix = _likelihood(best.cost) / (_likelihood(best.cost) + sum(_likelihood(s.cost) for s in rivals))
    # Agreement of the steps; a delta line's steps spread 30 degrees either side by nature.
    spread = 0.7 + 0.3 * best.r if ct.mode.name == "delta_line" else 0.5 + 0.5 * best.r
    confidence = wrong * fix * _evidence(n_eff) * spread
    if ambiguous is not None:
        confidence *= 0.9
    return _fix_verdict(ct, best, cfg, basis, n, what, confidence, plausible, ambiguous, direction)


def _wrongness(score: Score, role: str, basis: str) -> float:
    """How clearly a hypothesis is wrong, 0 to 1: its angle beyond the cone, its steps'
    power falling as the current rises, its standing power negative."""
    if role != "consumer":  # an inverter's power factor is near 1: far outside its cone is certainly wrong
        return min(1.0, max(0.0, (abs(score.angle_deg) - INVERTER_CONE_DEG) / 10.0))
    return max(
        min(1.0, max(0.0, (abs(score.angle_deg) - CONE_DEG) / 15.0)),
        min(1.0, max(0.0, (RISE_MIN - score.rise) / (RISE_MIN - RISE_WITH_STANDING))) if basis == "steps" else 0.0,
        min(1.0, max(0.0, (-SIGN_TOLERANCE - score.standing_pf) / 0.3)),
    )


def _with_implausibility(verdict: Verdict, evidence: list[Score], role: str, basis: str, n_eff: float) -> Verdict:
    weight = _evidence(n_eff) * (1.0 if basis == "steps" or role != "consumer" else 0.5)
    verdict.implausibility = {s.hyp: 0.0 if s.plausible else weight * _wrongness(s, role, basis) for s in evidence}
    return verdict


def _equivalent(ct: CtInput, hyp: Hypothesis, evidence: list[Score]) -> Hypothesis | None:
    """Another hypothesis whose reference points the same way (split phase: L2 = -L1)."""
    a = ct.mode.index(hyp.axis)
    for other in evidence:
        if other.hyp == hyp:
            continue
        b = ct.mode.index(other.hyp.axis)
        x = np.vdot(hyp.sign * ct.refs[a], other.hyp.sign * ct.refs[b])
        norm = float(np.linalg.norm(ct.refs[a]) * np.linalg.norm(ct.refs[b]))
        if norm > 0 and x.real / norm > math.cos(math.radians(10.0)):
            return other.hyp
    return None


def _decide_standing(ct: CtInput, evidence: list[Score], configured: Hypothesis) -> Verdict:
    """A consumer without load changes: judged on its standing current, cautiously."""
    by_hyp = {s.hyp: s for s in evidence}
    cfg = by_hyp[configured]
    plausible = frozenset(s.hyp for s in evidence if s.plausible)
    ref_word = _reference_word(ct)
    n = len(ct.currents)
    if abs(cfg.angle_deg) <= STANDING_CONE_DEG:
        return Verdict(
            "ok",
            configured,
            0.5 * cfg.r,
            f"No load changed, but its standing current follows {ref_word(ct.phase)} as configured "
            f"({describe_angle(cfg.angle_deg)}). Switch a load on and off on this circuit to confirm.",
            "standing",
            n=n,
            plausible=plausible,
        )
    if abs(cfg.angle_deg) < STANDING_WRONG_DEG:
        return Verdict(
            "low_current",
            None,
            0.0,
            f"No load changed and its standing current ({describe_angle(cfg.angle_deg)} against "
            f"{ref_word(ct.phase)}) is too ambiguous to judge: switch a load on and off on this circuit.",
            "standing",
            n=n,
            plausible=plausible,
        )
    candidates = sorted(
        (s for s in evidence if s.plausible),
        key=lambda s: (round(s.cost, 1), s.hyp.axis != ct.phase, ct.mode.axes.index(s.hyp.axis), -s.hyp.sign),
    )
    if not candidates:
        return Verdict(
            "low_current",
            None,
            0.0,
            "No load changed and its standing current fits no phase: switch a load on and off on this circuit.",
            "standing",
            n=n,
            plausible=plausible,
        )
    best = candidates[0]
    confidence = STANDING_MAX_CONFIDENCE * best.r
    ambiguous = _equivalent(ct, best.hyp, evidence)
    if ambiguous is not None and ambiguous.axis == ct.phase and ambiguous in plausible:
        best, ambiguous = next(s for s in evidence if s.hyp == ambiguous), best.hyp
    return _fix_verdict(
        ct, best, cfg, "standing", n, "frames (no load changed)", confidence, plausible, ambiguous, True
    )


def _reference_word(ct: CtInput):
    """Names a reference for the reasons: ``"L3's voltage"`` or, in delta, the line pair."""
    if ct.mode.name == "delta_ref":
        pairs = {"L1": "v(L1-L3)", "L2": "v(L2-L3)", "L3": "v(L1-L2)"}
        return lambda axis: f"{pairs[axis]} (phase {axis})"
    if ct.mode.name == "delta_line":
        return lambda axis: f"line {axis}"
    return lambda axis: f"{axis}'s voltage"


def _fix_verdict(
    ct: CtInput,
    best: Score,
    cfg: Score,
    basis: str,
    n: int,
    what: str,
    confidence: float,
    plausible: frozenset[Hypothesis],
    ambiguous: Hypothesis | None,
    direction: bool,
) -> Verdict:
    ref_word = _reference_word(ct)
    hyp = best.hyp
    if basis == "steps":
        measured = (
            f"Against {ref_word(ct.phase)} as configured, its load changes are "
            f"{describe_angle(cfg.angle_oriented_deg)}: its power fell in {cfg.falls} of the {n} load changes "
            "that raised its current"
        )
    else:
        measured = f"Against {ref_word(ct.phase)} as configured its current is {describe_angle(cfg.angle_deg)} (over {n} {what})"
    if hyp.axis == ct.phase:
        reason = f"{wrong_way(ct)}. {measured}: its power comes out negative. {turn_advice(ct)}"
        if ambiguous is not None and ambiguous.axis != hyp.axis:
            reason += (
                f" In split phase {ambiguous.axis} is {hyp.axis} inverted, so it may instead sit on "
                f"{ambiguous.axis}: then configure {ambiguous.axis}."
            )
        return Verdict("reversed", hyp, confidence, reason, basis, direction, n, plausible, ambiguous)
    if not ct.mode.fixable[ct.mode.index(hyp.axis)]:
        reason = (
            f"Its clamp is around line {hyp.axis}, not line {ct.phase} as configured. {measured}. In delta, "
            f"three-phase loads are measured on L1 and L2 only (two-wattmeter method): move this clamp onto line {ct.phase}."
        )
        return Verdict("phase", hyp, confidence, reason, basis, direction, n, plausible, ambiguous)
    reason = f"Its current follows {ref_word(hyp.axis)} ({describe_angle(best.angle_deg)}), not {ref_word(ct.phase)} as configured. {measured}."
    if ct.mode.name == "delta_ref":
        pairs = {"L1": "L1 and L3", "L2": "L2 and L3", "L3": "L1 and L2"}
        reason += f" Its load is powered by {pairs[hyp.axis]}: configure phase {hyp.axis} (manual's delta table)."
    if hyp.sign < 0:
        reason += also_reversed(ct)
    return Verdict("phase", hyp, confidence, reason, basis, direction, n, plausible, ambiguous)

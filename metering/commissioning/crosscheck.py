"""Matching every CT's load changes with the grid CTs': which line a load is really on.

When an appliance switches, its current change ``dX`` appears in the line current of the line
it is on, so in the grid CT clamped around that line. Over the frames, the changes of the grid
CTs are therefore a linear combination of the changes of the sub-metered CTs,

    dG[k, g] = sum_c dC[k, c] B[c, g] + (unmetered loads),

with every coefficient ``B[c, g]`` about +1, -1 or 0: a *pattern* per CT that names its line
(and the relative direction of the two clamps), whatever the power factor of the appliance.
``B`` is the least-squares fit over all frames at once, so two appliances switching in the
same frame are told apart, made robust to unmetered loads switching with a few rounds of
Huber reweighting. A CT's pattern is *decisive* when every coefficient is clearly -1, 0 or
+1 (within :data:`SNAP`, and :data:`MIN_FIT` likely from the standard errors), it has at least :data:`MIN_STEPS` changes of its own and its
changes are not a mere combination of other CTs' (a consumption CT and the appliances behind
it are fitted separately).

The grid CTs may be wrong too. The explanation chosen is the most *parsimonious*: over
assignments of a line and a direction to every grid CT (up to :data:`MAX_GRID_CHANGES` away
from the configuration), every decisive CT takes the hypothesis whose expected pattern
(:mod:`.model` incidence, signs) equals its pattern; each CT that has to change costs 1, a
grid CT :data:`GRID_CHANGE_COST`, a hypothesis the angle method rules out costs up to
:data:`IMPLAUSIBLE_WEIGHT` more (with its evidence), one contradicting the angle method's fix
:data:`ANGLE_FIX_WEIGHT` times that fix's confidence more, and a pattern no hypothesis
explains costs :data:`UNEXPLAINED_COST`. The cheapest assignment wins; a verdict's confidence grows with how
much dearer the best explanation keeping the CT as configured is.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from metering.commissioning.steps import CtInput, Hypothesis, Verdict, also_reversed, turn_advice, wrong_way

SNAP = 0.35
"""A coefficient counts as -1, 0 or +1 only within this distance of it..."""
MIN_FIT = 0.9
"""... and a pattern only when the probability that all its coefficients round to the right
values (from their standard errors) is at least this."""
MIN_STEPS = 2
MIN_UNIQUE = 0.3
"""Share of a CT's changes that no other CT's changes explain, below which its pattern
cannot be told apart."""
HUBER_ROUNDS = 4
MAX_GRID_CHANGES = 2
GRID_CHANGE_COST = 1.5
"""A grid CT that has to change costs more than another CT: a grid CT carries the patterns of
every CT on its line."""
IMPLAUSIBLE_WEIGHT = 1.5
"""Times how clearly the angle method rules a hypothesis out (0 to 1)."""
ANGLE_FIX_WEIGHT = 1.5
"""Times the confidence of the angle method's fix, added when a hypothesis contradicts it."""
UNEXPLAINED_COST = 2.0
MAX_UNEXPLAINED_SHARE = 0.3
"""Above this share of unexplained CTs, the grid CTs themselves are not what they seem
(a clamp around the neutral, say): the cross-check gives no verdict."""


@dataclass
class Pattern:
    """A decisive pattern of one CT: ``values[g]`` per usable grid CT; ``fit`` is the
    probability (from the coefficients' standard errors) that every coefficient rounds to its
    value; ``n`` is the CT's number of changes."""

    values: tuple[int, ...]
    fit: float
    n: int


def _fit(x: np.ndarray, y: np.ndarray, min_current_a: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Huber-reweighted least squares ``y ~ x @ b``.

    Returns ``b``, its standard errors (same shape) and the final row weights.
    """
    weights = np.ones(x.shape[0])
    b = np.zeros((x.shape[1], y.shape[1]), dtype=complex)
    for _ in range(HUBER_ROUNDS):
        root = np.sqrt(weights)[:, None]
        b = np.linalg.lstsq(root * x, root * y, rcond=None)[0]
        residual = np.linalg.norm(y - x @ b, axis=1)
        scale = 1.4826 * float(np.median(residual)) + 0.25 * min_current_a
        weights = np.minimum(1.0, 2.0 * scale / np.maximum(residual, 1e-12))
    root = np.sqrt(weights)[:, None]
    wx = root * x
    residual = root * y - wx @ b
    dof = max(1.0, float(weights.sum()) - x.shape[1])
    variance = (np.abs(residual) ** 2).sum(axis=0) / dof  # per grid CT
    unscaled = np.real(np.diag(np.linalg.pinv(wx.conj().T @ wx)))
    se = np.sqrt(np.maximum(unscaled, 0.0)[:, None] * variance[None, :])
    return b, se, weights


def _unique(x: np.ndarray, weights: np.ndarray, c: int) -> float:
    """Share of column ``c`` of ``x`` that the other columns do not explain."""
    root = np.sqrt(weights)[:, None]
    wx = root * x
    column = wx[:, c]
    norm = float(np.linalg.norm(column))
    if norm == 0.0:
        return 0.0
    others = np.delete(wx, c, axis=1)
    if others.shape[1] == 0:
        return 1.0
    gamma = np.linalg.lstsq(others, column, rcond=None)[0]
    return float(np.linalg.norm(column - others @ gamma)) / norm


def _patterns(subs: list[CtInput], wanted: set[str], grid: list[CtInput], min_current_a: float) -> dict[str, Pattern]:
    """Decisive patterns of the CTs in ``wanted`` against the grid CTs (see the module docstring).

    Every CT of ``subs`` with changes enters the fit, so that its changes are not mistaken
    for another's."""
    dg = np.array([np.diff(g.currents) for g in grid]).T  # (K-1, G)
    changes = {}
    for sub in subs:
        d = np.diff(sub.currents)
        n = int((np.abs(d) >= min_current_a).sum())
        if n >= MIN_STEPS:
            changes[sub.ct] = (sub, d, n)
    out: dict[str, Pattern] = {}
    producers = [ct for ct, (sub, _, _) in changes.items() if sub.role != "consumer"]
    joint = [ct for ct, (sub, _, _) in changes.items() if sub.kind != "consumption"]
    groups = [joint] + [[ct, *producers] for ct, (sub, _, _) in changes.items() if sub.kind == "consumption"]
    for group in groups:
        if not group:
            continue
        x = np.array([changes[ct][1] for ct in group]).T  # (K-1, N)
        if x.shape[0] <= x.shape[1]:
            continue
        b, se, weights = _fit(x, dg, min_current_a)
        for c, ct in enumerate(group):
            if ct in out or ct not in wanted or (group is not joint and c > 0):
                continue
            if _unique(x, weights, c) < MIN_UNIQUE:
                continue
            coefficients = b[c]
            snapped = np.clip(np.round(coefficients.real), -1, 1)
            distance = np.abs(coefficients - snapped)
            # Probability that each coefficient rounds to the right value (half-way is 0.5 away).
            z = (0.5 - distance) / np.maximum(se[c], 1e-3)
            fit = float(np.prod([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in z]))
            if float(distance.max()) > SNAP or fit < MIN_FIT:
                continue
            out[ct] = Pattern(tuple(int(v) for v in snapped), fit, changes[ct][2])
    return out


def _line_index(grid: CtInput, axis: str) -> int:
    row = grid.mode.incidence[grid.mode.index(axis)]
    return int(np.flatnonzero(row)[0])


def _signed_rows(sub: CtInput, verdict: Verdict) -> list[tuple[Hypothesis, float, tuple[int, ...]]]:
    """Per hypothesis of ``sub``: its cost and how a change of its current shows on L1, L2, L3.

    A consumer's current is the load's; a producer's (solar, battery) is the opposite of the
    consumer direction the grid CTs measure.
    """
    kappa = 1 if sub.role == "consumer" else -1
    configured = Hypothesis(sub.phase, 1)
    out = []
    for axis in sub.mode.axes:
        row = sub.mode.incidence[sub.mode.index(axis)]
        for sign in (1, -1):
            hyp = Hypothesis(axis, sign)
            out.append((hyp, _hyp_cost(hyp, configured, verdict), tuple(int(sign * kappa * v) for v in row)))
    out.sort(key=lambda item: item[1])
    return out


def _hyp_cost(hyp: Hypothesis, configured: Hypothesis, verdict: Verdict, change: float = 1.0) -> float:
    """Cost of explaining a CT by ``hyp``, given its configuration and its angle-method verdict."""
    cost = 0.0 if hyp == configured else change
    cost += IMPLAUSIBLE_WEIGHT * verdict.implausibility.get(hyp, 0.0)
    if verdict.kind in ("phase", "reversed") and verdict.hyp is not None:
        same = hyp.axis == verdict.hyp.axis and (hyp.sign == verdict.hyp.sign or not verdict.direction)
        if not same:
            cost += ANGLE_FIX_WEIGHT * verdict.confidence
    return cost


def crosscheck(
    grid: list[CtInput],
    grid_verdicts: list[Verdict],
    subs: list[CtInput],
    sub_verdicts: list[Verdict],
    min_current_a: float,
) -> tuple[dict[str, Verdict], dict[str, Verdict]]:
    """Verdicts from matching load changes with the grid CTs, for the CTs they settle.

    Parameters
    ----------
    grid, grid_verdicts : list
        The grid CTs that measure something (line modes only), and their angle-method
        verdicts.
    subs, sub_verdicts : list
        Every other CT that measures something, and its angle-method verdict.
    min_current_a : float

    Returns
    -------
    (grid_results, sub_results) : dict of CT id to Verdict
        Only the CTs the cross-check settles; the others keep their angle-method verdict.
    """
    if not grid or not subs:
        return {}, {}
    wanted = {
        sub.ct
        for sub in subs
        # A 240 V load's two clamps see one current on two lines: either could be either.
        if not (sub.mode.name == "split" and sub.kind in ("circuit", "appliance") and _n_cts(sub, subs) > 1)
    }
    patterns = _patterns(subs, wanted, grid, min_current_a)
    if not patterns:
        return {}, {}
    decisive = [
        (sub, verdict, patterns[sub.ct]) for sub, verdict in zip(subs, sub_verdicts, strict=True) if sub.ct in patterns
    ]

    # Every assignment of a hypothesis to each grid CT, at most MAX_GRID_CHANGES from the
    # configuration: rows of option indices, with their grid CTs' lines, signs and costs.
    options = [[Hypothesis(axis, sign) for axis in g.mode.axes for sign in (1, -1)] for g in grid]
    configured_grid = [Hypothesis(g.phase, 1) for g in grid]
    combos = np.array(list(itertools.product(*(range(len(o)) for o in options))), dtype=np.intp)
    configured_index = np.array([o.index(c) for o, c in zip(options, configured_grid, strict=True)])
    combos = combos[(combos != configured_index).sum(axis=1) <= MAX_GRID_CHANGES]
    columns = range(len(grid))
    lines = np.stack(
        [np.array([_line_index(g, h.axis) for h in options[k]])[combos[:, k]] for k, g in enumerate(grid)], axis=1
    )
    signs = np.stack([np.array([h.sign for h in options[k]])[combos[:, k]] for k in columns], axis=1)
    total = np.zeros(len(combos))
    for k, verdict in enumerate(grid_verdicts):
        costs = np.array([_hyp_cost(h, configured_grid[k], verdict, GRID_CHANGE_COST) for h in options[k]])
        total += costs[combos[:, k]]

    # Per decisive CT, its cheapest hypothesis whose expected pattern is its pattern.
    hyps_of, chosen = [], []
    for sub, verdict, pattern in decisive:
        ranked = _signed_rows(sub, verdict)  # cheapest first
        rows = np.array([row for _, _, row in ranked])  # (H, 3)
        expected = rows[:, lines] * signs[None, :, :]  # (H, assignments, grid CTs)
        match = (expected == np.array(pattern.values)).all(axis=2)
        found = match.any(axis=0)
        first = np.where(found, match.argmax(axis=0), -1)
        costs = np.array([cost for _, cost, _ in ranked] + [UNEXPLAINED_COST])
        total += costs[first]  # index -1: unexplained
        hyps_of.append([hyp for hyp, _, _ in ranked])
        chosen.append(first)

    best = int(np.argmin(total))
    best_cost = float(total[best])
    best_assignment = tuple(options[k][combos[best, k]] for k in columns)
    best_choices = [hyps[c[best]] if c[best] >= 0 else None for hyps, c in zip(hyps_of, chosen, strict=True)]
    if sum(h is None for h in best_choices) > MAX_UNEXPLAINED_SHARE * len(decisive):
        return {}, {}

    def gap(differs: np.ndarray) -> float:
        """How much dearer the cheapest explanation is where ``differs`` (capped at 1)."""
        alternative = float(total[differs].min()) if differs.any() else best_cost + 3.0
        return min(1.0, max(0.0, alternative - best_cost))

    sub_results: dict[str, Verdict] = {}
    for i, ((sub, verdict, pattern), hyp) in enumerate(zip(decisive, best_choices, strict=True)):
        if hyp is None:
            continue
        configured = Hypothesis(sub.phase, 1)
        as_configured = chosen[i] == hyps_of[i].index(configured)
        confidence = pattern.fit * (1.0 - 0.3**pattern.n) * (0.5 + 0.5 * gap(as_configured != (hyp == configured)))
        sub_results[sub.ct] = _sub_verdict(sub, hyp, configured, pattern, best_assignment, grid, confidence, verdict)

    grid_results: dict[str, Verdict] = {}
    for index, (g, verdict) in enumerate(zip(grid, grid_verdicts, strict=True)):
        covering = [
            (sub, pattern)
            for (sub, _, pattern), hyp in zip(decisive, best_choices, strict=True)
            if hyp is not None and pattern.values[index] != 0
        ]
        if not covering:
            continue
        hyp = best_assignment[index]
        configured = configured_grid[index]
        as_configured = combos[:, index] == configured_index[index]
        n = sum(p.n for _, p in covering)
        share = float(np.mean([p.fit for _, p in covering]))
        confidence = share * (1.0 - 0.3**n) * (0.5 + 0.5 * gap(as_configured != (hyp == configured)))
        grid_results[g.ct] = _grid_verdict(g, hyp, configured, covering, confidence, verdict)
    return grid_results, sub_results


def _n_cts(sub: CtInput, subs: list[CtInput]) -> int:
    return sum(other.load == sub.load for other in subs)


def _where(pattern: Pattern, assignment: tuple[Hypothesis, ...], grid: list[CtInput]) -> str:
    seen = [f"{g.ct} ({h.axis})" for g, h, v in zip(grid, assignment, pattern.values, strict=True) if v != 0]
    if not seen:
        return "on none of the grid CTs"
    return "on grid CT " + " and ".join(seen)


def _sub_verdict(
    sub: CtInput,
    hyp: Hypothesis,
    configured: Hypothesis,
    pattern: Pattern,
    assignment: tuple[Hypothesis, ...],
    grid: list[CtInput],
    confidence: float,
    verdict: Verdict,
) -> Verdict:
    where = _where(pattern, assignment, grid)
    counted = f"over {pattern.n} load changes"
    direction = True
    if hyp == configured:
        return Verdict(
            "ok",
            hyp,
            max(confidence, verdict.confidence if verdict.kind == "ok" else 0.0),
            f"Its load changes show up {where} ({counted}), as its phase {sub.phase} implies.",
            "grid",
            direction,
            pattern.n,
            verdict.plausible,
        )
    if hyp.axis == sub.phase:
        return Verdict(
            "reversed",
            hyp,
            confidence,
            f"{wrong_way(sub)}: its load changes show up {where} ({counted}) with the opposite sign. {turn_advice(sub)}",
            "grid",
            direction,
            pattern.n,
            verdict.plausible,
        )
    reason = f"Its load changes show up {where} ({counted}): it is on {hyp.axis}, not {sub.phase} as configured."
    if sub.mode.name == "delta_ref":
        pairs = {"L1": "L1 and L3", "L2": "L2 and L3", "L3": "L1 and L2"}
        reason = (
            f"Its load changes show up {where} ({counted}): the load is powered by {pairs[hyp.axis]}, "
            f"so configure phase {hyp.axis} (manual's delta table), not {sub.phase}."
        )
    if not sub.mode.fixable[sub.mode.index(hyp.axis)]:
        reason = (
            f"Its load changes show up {where} ({counted}): its clamp is around line {hyp.axis}. In delta, three-phase "
            f"loads are measured on L1 and L2 only (two-wattmeter method): move this clamp onto line {sub.phase}."
        )
    if hyp.sign < 0:
        reason += also_reversed(sub)
    return Verdict("phase", hyp, confidence, reason, "grid", direction, pattern.n, verdict.plausible)


def _grid_verdict(
    g: CtInput,
    hyp: Hypothesis,
    configured: Hypothesis,
    covering: list[tuple[CtInput, Pattern]],
    confidence: float,
    verdict: Verdict,
) -> Verdict:
    names = ", ".join(sorted({f"{sub.load} ({sub.ct})" for sub, _ in covering}))
    n = sum(p.n for _, p in covering)
    if hyp == configured:
        return Verdict(
            "ok",
            hyp,
            max(confidence, verdict.confidence if verdict.kind == "ok" else 0.0),
            f"The load changes of {names} show up on it as its phase {g.phase} implies ({n} changes).",
            "grid",
            True,
            n,
            verdict.plausible,
        )
    if hyp.axis == g.phase:
        return Verdict(
            "reversed",
            hyp,
            confidence,
            f"{wrong_way(g)}: the load changes of {names} show up on it with the opposite sign ({n} changes). "
            f"{turn_advice(g)}",
            "grid",
            True,
            n,
            verdict.plausible,
        )
    reason = f"The load changes of {names} show up on it ({n} changes): it is clamped around {hyp.axis}, not {g.phase} as configured."
    if not g.mode.fixable[g.mode.index(hyp.axis)]:
        reason += (
            f" In delta, three-phase loads are measured on L1 and L2 only (two-wattmeter method): "
            f"move this clamp onto line {g.phase}."
        )
    if hyp.sign < 0:
        reason += also_reversed(g)
    return Verdict("phase", hyp, confidence, reason, "grid", True, n, verdict.plausible)

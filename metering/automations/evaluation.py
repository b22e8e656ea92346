"""What an automation decides on one set of live values: pure functions, no Django, no I/O.

An automation watches one quantity of a location's live values (SPEC 5.3) and, when it has been
above (or below) a threshold for a while, switches one relay. Its inputs here are plain values:
the rule (:class:`Rule`), the live values dict, the time, the automation's state
(:class:`RuleState`, kept in the database between frames) and the relay as it is now
(:class:`RelayNow`). :func:`evaluate` returns a :class:`Decision`: the new state and whether to
switch the relay, so every behaviour is testable with a sequence of ``(time, values)``.

How a rule moves (times are Unix seconds, the frame's time):

- *Engage*: while inactive, the condition must hold without a break for ``duration_s`` (above:
  ``value > threshold``; below: ``value < threshold``), and the local time must lie within the
  rule's hours if it has any. Then the rule becomes active and wants its relay in the
  action's state (on, or off).
- *Release* (hysteresis): while active, the value must pass the release threshold the other way
  (above: ``value < release``; below: ``value > release``) or the hours must end, again for
  ``duration_s``. Then the rule becomes inactive and, with ``revert``, wants the opposite state.
- A value missing from the frame (a load or input not reported) neither engages nor releases and
  restarts the wait; the hours alone still release.
- *Switching* is edge-triggered: the rule asks for a state once per transition, and does not
  fight a relay changed later. What it wants waits (and is asked for once the wait is over)
  while the relay is within its minimum on or off time, while someone switched it by hand in
  the last ``manual_window_s`` (unless ``may_override_manual``), and while its own request is
  still unanswered (asked again after :data:`ASK_AGAIN_S`, at most :data:`MAX_ASKS` times).
  A relay already in the wanted state needs no command.

Local hours are read in the location's time zone at each instant (so a window of 22:00-07:00
lasts 10 hours on the night clocks go back and 8 on the night they go forward).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as clock_time
from zoneinfo import ZoneInfo

# What an automation watches: quantity -> (how it is named in a sentence, unit).
# The unit of an input's rate is the input's own unit per hour; see Rule.unit.
QUANTITIES = {
    "grid_export": ("grid export", "W"),
    "grid_import": ("grid import", "W"),
    "load_power": ("power", "W"),
    "grid_current": ("grid current on the busiest phase", "A"),
    "input_state": ("state", ""),
    "input_rate": ("rate", "/h"),
    "clock": ("the clock", ""),
}
NEEDS_LOAD = frozenset({"load_power"})
NEEDS_INPUT = frozenset({"input_state", "input_rate"})

# An unanswered request is asked again after this long (the server stops delivering a command
# after 2 minutes: metering.relays.PENDING_FOR), and given up after this many asks.
ASK_AGAIN_S = 120.0
MAX_ASKS = 3


@dataclass(frozen=True)
class Rule:
    """One automation, as the evaluation needs it (built from the model by the runner).

    ``hours`` is ``(from, until)`` in local time of ``timezone``: the rule may engage only within
    them (``until`` before ``from`` spans midnight); ``None``: at any hour.
    """

    quantity: str
    above: bool = True
    threshold: float = 0.0
    release: float | None = None  # None: the threshold itself (no hysteresis band)
    duration_s: float = 0.0
    switch_on: bool = True
    revert: bool = False
    on_minutes: int | None = None
    min_on_s: float = 0.0
    min_off_s: float = 0.0
    may_override_manual: bool = False
    manual_window_s: float = 0.0
    subject: str = ""  # the load's name or the input's reference
    subject_unit: str = ""  # an input's unit (m3, l, ...)
    hours: tuple[clock_time, clock_time] | None = None
    timezone: str = "UTC"

    @property
    def release_at(self) -> float:
        return self.threshold if self.release is None else self.release

    @property
    def unit(self) -> str:
        if self.quantity == "input_rate":
            return f"{self.subject_unit or 'pulses'}/h"
        return QUANTITIES[self.quantity][1]

    @property
    def label(self) -> str:
        name = QUANTITIES[self.quantity][0]
        if self.quantity in NEEDS_LOAD or self.quantity in NEEDS_INPUT:
            return f"{self.subject} {name}"
        return name


@dataclass(frozen=True)
class RuleState:
    """What an automation remembers between frames (a row in the database)."""

    active: bool = False
    since: float | None = None  # when the pending transition's condition began to hold
    want: bool | None = None  # relay state still to be reached (True = on)
    asked_at: float | None = None  # when this automation last asked for ``want``
    asks: int = 0  # how often it asked for ``want``
    fired_at: float | None = None  # when it last asked for a switch


@dataclass(frozen=True)
class RelayNow:
    """The relay as the server knows it: its acknowledged state, when it last changed, when
    someone last switched it by hand (not an automation), and when a timed switch-on ends.

    At ``off_at`` the Output module switches off by itself and reports nothing, so from then on
    the relay is off (since ``off_at``) whatever ``is_on`` still says: :meth:`at`."""

    is_on: bool
    changed_at: float | None = None
    manual_at: float | None = None
    off_at: float | None = None

    def at(self, now: float) -> RelayNow:
        """The relay at ``now``: off since the end of a timed switch-on that has ended."""
        if self.is_on and self.off_at is not None and now >= self.off_at:
            return dataclasses.replace(self, is_on=False, changed_at=self.off_at, off_at=None)
        return self


@dataclass(frozen=True)
class Decision:
    state: RuleState
    switch: bool | None = None  # None: leave the relay alone; True / False: switch it on / off
    reason: str = ""  # why it switches, or what it waits for
    value: float | None = None  # the watched value in this frame


def reading(rule: Rule, values: dict) -> float | None:
    """The value ``rule`` watches in the live values (SPEC 5.3), or None where it is missing."""
    quantity = rule.quantity
    if quantity == "clock":
        return None
    if quantity in ("grid_import", "grid_export"):
        return _number((values.get("totals") or {}).get(quantity))
    if quantity == "load_power":
        for load in values.get("loads") or ():
            if load.get("name") == rule.subject:
                return _number(load.get("p"))
        return None
    if quantity == "grid_current":
        currents = [
            _number(phase.get("i"))
            for load in values.get("loads") or ()
            if load.get("kind") == "grid"
            for phase in load.get("phases") or ()
        ]
        currents = [i for i in currents if i is not None]
        return max(currents) if currents else None
    for item in values.get("inputs") or ():
        if item.get("input") == rule.subject:
            return _number(item.get("state" if quantity == "input_state" else "rate"))
    return None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def within_hours(rule: Rule, now: float) -> bool:
    """Whether the local time of ``now`` (Unix s) lies within the rule's hours."""
    if rule.hours is None:
        return True
    start, end = rule.hours
    local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(rule.timezone)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def _engages(rule: Rule, value: float | None) -> bool:
    if rule.quantity == "clock":
        return True
    if value is None:
        return False
    return value > rule.threshold if rule.above else value < rule.threshold


def _releases(rule: Rule, value: float | None) -> bool:
    if rule.quantity == "clock" or value is None:
        return False
    return value < rule.release_at if rule.above else value > rule.release_at


def evaluate(rule: Rule, values: dict, now: float, state: RuleState, relay: RelayNow) -> Decision:
    """One step of ``rule`` at time ``now`` with the live ``values``: the new state, and the switch
    to ask for (if any) with its reason. Never raises on odd values: a missing one waits."""
    value = reading(rule, values)
    in_hours = within_hours(rule, now)
    if state.active:
        pending = not in_hours or _releases(rule, value)
    else:
        pending = in_hours and _engages(rule, value)
    if not pending:
        state = dataclasses.replace(state, since=None)
    else:
        since = state.since if state.since is not None else now
        state = dataclasses.replace(state, since=since)
        if now - since >= rule.duration_s:
            active = not state.active
            want = rule.switch_on if active else (not rule.switch_on if rule.revert else None)
            state = RuleState(active=active, want=want, fired_at=state.fired_at)
    return _switch(rule, state, relay, now, value, in_hours)


def _switch(rule: Rule, state: RuleState, relay: RelayNow, now: float, value: float | None, in_hours: bool) -> Decision:
    want = state.want
    relay = relay.at(now)
    if want is None:
        return Decision(state, value=value)
    if relay.is_on == want:
        return Decision(dataclasses.replace(state, want=None, asked_at=None, asks=0), value=value)
    if state.asked_at is not None and now - state.asked_at < ASK_AGAIN_S:
        return Decision(state, reason="waiting for the device to confirm", value=value)
    if state.asks >= MAX_ASKS:
        gave_up = dataclasses.replace(state, want=None, asked_at=None, asks=0)
        return Decision(gave_up, reason=f"the device did not confirm {MAX_ASKS} requests", value=value)
    if not rule.may_override_manual and relay.manual_at is not None and now - relay.manual_at < rule.manual_window_s:
        minutes = _minutes(rule.manual_window_s)
        return Decision(state, reason=f"switched by hand in the last {minutes}", value=value)
    if relay.changed_at is not None:
        held_s = now - relay.changed_at
        minimum_s = rule.min_on_s if relay.is_on else rule.min_off_s
        if held_s < minimum_s:
            return Decision(
                state, reason=f"minimum {'on' if relay.is_on else 'off'} time of {_minutes(minimum_s)}", value=value
            )
    asked = dataclasses.replace(state, asked_at=now, asks=state.asks + 1, fired_at=now)
    return Decision(asked, switch=want, reason=_why(rule, state.active, value, in_hours), value=value)


def _why(rule: Rule, active: bool, value: float | None, in_hours: bool) -> str:
    """The condition behind a switch, in words with units, for the Event."""
    hours = f"{rule.hours[0]:%H:%M}-{rule.hours[1]:%H:%M}" if rule.hours else ""
    if rule.quantity == "clock":
        return f"within {hours}" if active else f"outside {hours}"
    if not active and not in_hours:
        return f"outside {hours}"
    now_text = f"{rule.label} {format_value(value, rule.unit)}"
    if active:
        side = "above" if rule.above else "below"
        limit = rule.threshold
    else:
        side = "below" if rule.above else "above"
        limit = rule.release_at
    held = f" for {_duration(rule.duration_s)}" if rule.duration_s else ""
    return f"{now_text}, {side} {format_value(limit, rule.unit)}{held}"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "unknown"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".rstrip()


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return _minutes(seconds)
    return f"{seconds:g} s"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"

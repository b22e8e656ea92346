"""Running a location's automations on its live values, in the process that metered the frame.

:func:`on_live_values` receives :data:`metering.live.live_values_updated` (after every newest
frame, wherever frames are metered: the embedded server, an ingest worker, ``ingest_mqtt``).
Per frame it costs, for a location with enabled automations, one query (their state rows) and a
write only when a state changes; a location without any costs nothing (the empty set is kept).

- The enabled automations and their relays (state, last change, last manual switch) are read
  once and kept in this process (:class:`metering.installed.Kept`). Saving or deleting an
  automation, and every relay acknowledgement (a ``Relay`` save), calls
  :func:`metering.installed.forget`: this process drops them at once, every other within
  :data:`metering.installed.VERSION_READ_EVERY_S`.
- The state of each automation is a database row, so a location's next frame may be metered by
  another process and carry on from it.
- Before it switches, the automation is read again, its state row locked, its relay and the last
  manual switch read fresh, and the step evaluated again: an automation disabled or deleted a
  moment ago, or a relay someone just switched by hand, is never switched on stale data, and two
  processes never both ask.

A switch goes through :func:`metering.relays.request_relay` (the dashboard's path), recorded as
the automation's, with an Event saying why; it is delivered from a thread of its own, so the
ingest thread never waits for a broker.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max
from django.db.models.signals import post_delete, post_save, pre_delete

from devices.models import Event, Relay
from metering import installed, live
from metering.automations.evaluation import Decision, RelayNow, Rule, RuleState, evaluate
from metering.automations.models import Automation, AutomationState
from metering.models import RelayCommand
from metering.relays import CommandError, request_relay

log = logging.getLogger(__name__)

# Frames older than this (a gateway replaying its buffer after an outage) switch nothing.
STALE_S = 30.0


@dataclass(frozen=True)
class Armed:
    """An enabled automation as the runner keeps it."""

    pk: int
    name: str
    relay_id: int
    rule: Rule


@dataclass(frozen=True)
class LocationAutomations:
    automations: tuple[Armed, ...]
    relays: dict[int, RelayNow]


_kept = installed.Kept(installed.CACHE_SECONDS, spread_s=installed.CACHE_SPREAD_S)


def armed(location_id: int) -> LocationAutomations:
    """The location's enabled automations and their relays, kept in this process."""
    return _kept.get(location_id, lambda: _load(location_id))


def _load(location_id: int) -> LocationAutomations:
    rows = list(
        Automation.objects.filter(location_id=location_id, enabled=True).select_related(
            "location", "load", "input__module", "relay__module"
        )
    )
    if not rows:
        return LocationAutomations((), {})
    automations = tuple(Armed(row.pk, row.name, row.relay_id, row.rule()) for row in rows)
    return LocationAutomations(automations, relay_snapshots({row.relay_id for row in rows}))


def relay_snapshots(relay_ids: set[int]) -> dict[int, RelayNow]:
    """Each relay's acknowledged state, last change, last manual switch, and the end of a timed switch-on.

    A manual switch is any command no automation asked for (the dashboard, the API, an
    integration), at the time it was asked (an automation deleted since still asked its own:
    ``by_automation``); and a change the device reported that no
    automation's command explains (someone at the Output module)."""
    relays = {row.pk: row for row in Relay.objects.filter(pk__in=relay_ids)}
    asked_by_hand = dict(
        RelayCommand.objects.filter(relay_id__in=relay_ids, by_automation=False)
        .values_list("relay_id")
        .annotate(Max("requested_at"))
    )
    changed = [relay.changed_at for relay in relays.values() if relay.changed_at is not None]
    by_automation = set(
        RelayCommand.objects.filter(
            relay_id__in=relay_ids, by_automation=True, acknowledged_at__in=changed
        ).values_list("relay_id", "acknowledged_at")
    )
    snapshots = {}
    for pk, relay in relays.items():
        manual = [asked_by_hand[pk].timestamp()] if pk in asked_by_hand else []
        if relay.changed_at is not None and (pk, relay.changed_at) not in by_automation:
            manual.append(relay.changed_at.timestamp())
        snapshots[pk] = RelayNow(
            is_on=relay.is_on,
            changed_at=relay.changed_at.timestamp() if relay.changed_at else None,
            manual_at=max(manual) if manual else None,
            off_at=relay.off_at.timestamp() if relay.off_at else None,
        )
    return snapshots


def on_live_values(sender, values: dict, **kwargs) -> None:
    """Receiver of :data:`metering.live.live_values_updated` (``sender`` = the location id)."""
    t = values.get("t")
    if not isinstance(sender, int) or not isinstance(t, (int, float)) or not math.isfinite(t):
        return
    if time.time() - t > STALE_S:
        return
    run(sender, values, float(t))


def run(location_id: int, values: dict, now: float) -> list[Decision]:
    """One step of every enabled automation of the location; the decisions (tests, benchmarks)."""
    kept = armed(location_id)
    if not kept.automations:
        return []
    rows = AutomationState.objects.filter(pk__in=[a.pk for a in kept.automations]).values_list(
        "pk", *AutomationState.FIELDS
    )
    stored = {pk: RuleState(**dict(zip(AutomationState.FIELDS, fields))) for pk, *fields in rows}
    decisions = []
    for automation in kept.automations:
        state = stored.get(automation.pk, RuleState())
        relay = kept.relays.get(automation.relay_id)
        if relay is None:
            continue
        decision = evaluate(automation.rule, values, now, state, relay)
        try:
            if decision.switch is not None:
                decision = _fire(automation.pk, values, now) or decision
            elif decision.state != state:
                _store(automation.pk, decision.state)
        except Exception:  # one automation failing must not stop the others, nor ingest
            log.exception("automation %s failed on location %s", automation.pk, location_id)
        decisions.append(decision)
    return decisions


def _store(pk: int, state: RuleState) -> None:
    values = AutomationState.values_of(state)
    if not AutomationState.objects.filter(pk=pk).update(**values):
        AutomationState.objects.bulk_create([AutomationState(pk=pk, **values)], ignore_conflicts=True)


def _fire(pk: int, values: dict, now: float) -> Decision | None:
    """Switch for automation ``pk`` if it still wants to on fresh data; the decision, or None
    when the automation is gone or disabled."""
    with transaction.atomic():
        AutomationState.objects.bulk_create([AutomationState(pk=pk)], ignore_conflicts=True)
        row = AutomationState.objects.select_for_update().filter(pk=pk).first()
        automation = (
            Automation.objects.select_related("location", "load", "input__module", "relay__module")
            .filter(pk=pk, enabled=True)
            .first()
        )
        if row is None or automation is None:
            return None
        relay_now = relay_snapshots({automation.relay_id})[automation.relay_id]
        decision = evaluate(automation.rule(), values, now, row.as_rule_state(), relay_now)
        _store(pk, decision.state)
        if decision.switch is None:
            return decision
        relay = automation.relay
        what = "on" if decision.switch else "off"
        minutes = automation.on_minutes if decision.switch else None
        timed = f" for {minutes} min" if minutes else ""
        try:
            command = request_relay(relay, decision.switch, minutes=minutes, automation=automation, background=True)
        except CommandError as problem:
            message = f"Automation “{automation.name}” could not switch {relay.name} {what}: {problem}."
            command = None
        else:
            message = f"Automation “{automation.name}”: switch {relay.name} {what}{timed}, {decision.reason}."
        Event.objects.create(
            location_id=automation.location_id,
            kind=Event.RELAY,
            module=relay.ref,
            message=message,
            data={
                "automation": automation.pk,
                "relay": relay.ref,
                "on": decision.switch,
                "minutes": minutes,
                "value": decision.value,
                "command": command.pk if command else None,
            },
        )
    return decision


def _withdraw_pending(sender, instance, **kwargs) -> None:
    """An automation is saved (disabled, edited) or about to be deleted: the commands it asked
    for that the device has not taken yet are withdrawn, so a gateway that comes back online does
    not carry out what a stopped automation wanted (they are delivered for
    :data:`metering.relays.PENDING_FOR` otherwise)."""
    RelayCommand.objects.filter(automation_id=instance.pk, status=RelayCommand.PENDING).update(
        status=RelayCommand.FAILED
    )


def _forget_on_change(sender, instance, **kwargs) -> None:
    """An automation was saved or deleted: its state starts afresh, and every process drops
    what it kept (this one at once)."""
    if kwargs.get("signal") is post_save:
        _withdraw_pending(sender, instance)
        AutomationState.objects.update_or_create(pk=instance.pk, defaults=AutomationState.values_of(RuleState()))
    transaction.on_commit(installed.forget)
    installed.forget()


def connect_signals() -> None:
    live.live_values_updated.connect(on_live_values, dispatch_uid="metering.automations.run")
    post_save.connect(_forget_on_change, sender=Automation, dispatch_uid="metering.automations.forget-save")
    pre_delete.connect(_withdraw_pending, sender=Automation, dispatch_uid="metering.automations.withdraw-delete")
    post_delete.connect(_forget_on_change, sender=Automation, dispatch_uid="metering.automations.forget-delete")

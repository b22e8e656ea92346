"""Relay commands: from a user's click to the device, and the device's acknowledgement back.

A command is stored, then delivered on every path the gateway may be listening on: its open
ingest WebSocket (a group message), the MQTT commands topic when ``MQTT_URL`` is set, and the
reply to its next HTTP ingest request. The relay's state changes only when the device
acknowledges, so the page never shows a state the hardware does not have.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.cache import cache
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from devices.models import Event, Gateway, Relay
from metering.ingest.broker import send_to_gateway
from metering.models import RelayCommand

log = logging.getLogger(__name__)

relay_changed = Signal()  # sender=location id, relay=Relay

TIMED_MINUTES = (5, 15, 30, 60)
# Commands not acknowledged within this time are not delivered again.
PENDING_FOR = timedelta(minutes=2)


class CommandError(ValueError):
    pass


def request_relay(
    relay: Relay, on: bool, minutes: int | None = None, user=None, automation=None, *, background: bool = False
) -> RelayCommand:
    """Ask the device to switch ``relay``; ``minutes`` switches it on for that long. ``user`` or
    ``automation`` asks (an automation's commands are told apart from switches by hand).

    With ``background`` its MQTT publication is done on a thread of its own after the commit:
    for callers that must never wait for the server's broker (an ingest thread running
    automations, an MQTT connection's network thread), as publishing may wait seconds for a
    broker that hangs."""
    if minutes is not None:
        if not on:
            raise CommandError("a timed switch is only for switching on")
        if minutes not in TIMED_MINUTES:
            raise CommandError(f"timed switch-on lasts {', '.join(map(str, TIMED_MINUTES))} minutes, not {minutes}")
    until = timezone.now() + timedelta(minutes=minutes) if minutes else None
    command = RelayCommand.objects.create(
        relay=relay, on=on, until=until, requested_by=user, automation=automation, by_automation=automation is not None
    )
    cache.set(_pending_key(relay.module.location_id), True, timeout=PENDING_FOR.total_seconds())
    gateway = Gateway.objects.get(location_id=relay.module.location_id)
    transaction.on_commit(lambda: deliver(gateway, command, background=background))
    return command


def deliver(gateway: Gateway, command: RelayCommand, *, background: bool = False) -> None:
    send_to_gateway(gateway.pk, gateway.serial, command.as_message(), publish_in_background=background)


def _pending_key(location_id: int) -> str:
    return f"relay-commands-pending:{location_id}"


def pending_for(gateway: Gateway) -> list[dict]:
    # Every HTTP frame asks; a cache flag set with each command spares the query when none waits.
    if not cache.get(_pending_key(gateway.location_id)):
        return []
    since = timezone.now() - PENDING_FOR
    commands = RelayCommand.objects.filter(
        relay__module__location_id=gateway.location_id, status=RelayCommand.PENDING, requested_at__gte=since
    ).select_related("relay__module")
    return [command.as_message() for command in commands.order_by("requested_at", "pk")]


def acknowledge(gateway: Gateway, ack: dict) -> Relay:
    """Apply a device's acknowledgement ``{"type": "ack", "command": id, "relay": ref, "on": bool}``."""
    ref, on = ack.get("relay"), ack.get("on")
    if not isinstance(ref, str) or "/" not in ref:
        raise CommandError("acknowledgement needs 'relay' as '<module serial>/<output>'")
    if not isinstance(on, bool):
        raise CommandError("acknowledgement needs 'on' as true or false")
    serial, number = ref.split("/", 1)
    relay = (
        Relay.objects.select_related("module")
        .filter(module__location_id=gateway.location_id, module__serial=serial, number=number)
        .first()
    )
    if relay is None:
        raise CommandError(f"unknown relay {ref} on this location")
    command = None
    if ack.get("command") is not None:
        command = RelayCommand.objects.filter(pk=_int(ack["command"]), relay=relay).first()
    now = timezone.now()
    with transaction.atomic():
        if command is not None:
            command.status, command.acknowledged_at = RelayCommand.DONE, now
            command.save(update_fields=["status", "acknowledged_at"])
        changed = relay.is_on != on
        relay.is_on = on
        relay.off_at = command.until if command is not None and on else None
        if changed or relay.changed_at is None:
            relay.changed_at = now
        relay.save(update_fields=["is_on", "changed_at", "off_at"])
        who = _who_asked(command)
        timed = f" until {relay.off_at.astimezone(relay.module.location.zoneinfo):%H:%M}" if relay.off_at else ""
        Event.objects.create(
            location_id=gateway.location_id,
            kind=Event.RELAY,
            module=relay.ref,
            message=f"{relay.name} switched {'on' if on else 'off'}{timed} (by {who})",
            data={"on": on, "command": command.pk if command else None, "until": ack.get("until")},
        )
    transaction.on_commit(lambda: _announce(gateway.location_id, relay))
    return relay


def _who_asked(command: RelayCommand | None) -> str:
    if command is not None and command.requested_by:
        return command.requested_by.get_username()
    if command is not None and command.automation:
        return f"automation “{command.automation.name}”"
    if command is not None and command.by_automation:
        return "an automation since deleted"
    return "the device"


def _announce(location_id: int, relay: Relay) -> None:
    for receiver, outcome in relay_changed.send_robust(sender=location_id, relay=relay):
        if isinstance(outcome, Exception):
            log.error("relay_changed receiver %r failed", receiver, exc_info=outcome)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

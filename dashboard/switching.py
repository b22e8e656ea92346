"""A person asks for a relay to switch: the one path of the dashboard's buttons and the API.

The device is asked through :func:`metering.relays.request_relay`; the relay's state, and its
Event, change when the device acknowledges. Support staff acting on a location they are no
member of are named in an Event of their own at once (docs/security.md, "Access").
Callers check :meth:`devices.models.Location.may_switch` first.
"""

from __future__ import annotations

from django.db import transaction

from dashboard import broadcast
from devices.models import SUPPORT, Event, Location, Relay, support_note
from metering.models import RelayCommand
from metering.relays import request_relay


def switch(location: Location, relay: Relay, on: bool, minutes: int | None, user) -> RelayCommand:
    """Ask for ``relay`` on (for ``minutes``, if given) or off; raises :class:`metering.relays.CommandError`."""
    command = request_relay(relay, on, minutes=minutes, user=user)
    if location.role_of(user) == SUPPORT:
        what = f"on for {minutes} min" if minutes else ("on" if on else "off")
        Event.objects.create(
            location=location,
            kind=Event.RELAY,
            module=relay.ref,
            message=f"{relay.name}: switch {what} asked by {support_note(user)}.",
            data={"relay": relay.ref, "on": on, "minutes": minutes, "by": user.get_username()},
        )
    transaction.on_commit(lambda: broadcast.push_relays(location.pk))
    return command

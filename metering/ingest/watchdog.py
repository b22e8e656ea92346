"""Gateways that stopped sending: an "offline" Event once, after 30 s without a frame.

The matching "online" Event is written by ingest when frames come back. Run
``python manage.py watch_gateways`` beside the server (``bin/run`` does).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.db import transaction

from devices.models import Event, Gateway
from metering.ingest.process import OFFLINE_AFTER_S
from metering.models import PowerBoxState


def report_offline_gateways(now_unix: float | None = None) -> list[Event]:
    """Write an offline Event for each Power Box silent for more than 30 s; returns them."""
    now_unix = time.time() if now_unix is None else now_unix
    events = []
    silent = PowerBoxState.objects.filter(
        offline_reported=False, last_end_t__lt=now_unix - OFFLINE_AFTER_S
    ).select_related("powerbox__location")
    for state in silent:
        location = state.powerbox.location
        gateway = Gateway.objects.filter(location=location).first()
        name = gateway.serial if gateway else state.powerbox.serial
        with transaction.atomic():
            claimed = PowerBoxState.objects.filter(pk=state.pk, offline_reported=False).update(offline_reported=True)
            if not claimed:  # another watcher got there first
                continue
            events.append(
                Event.objects.create(
                    location=location,
                    kind=Event.GATEWAY_OFFLINE,
                    module=name,
                    time=datetime.fromtimestamp(state.last_end_t, tz=UTC),
                    message=(
                        f"Gateway {name} offline: no data since {_local(state.last_end_t, location.zoneinfo)}. "
                        "Check its power and network connection and the colour of its light."
                    ),
                    data={"last_frame_end": state.last_end_t, "silence_s": round(now_unix - state.last_end_t, 1)},
                )
            )
    return events


def _local(unix: float, zone) -> str:
    return datetime.fromtimestamp(unix, tz=zone).strftime("%Y-%m-%d %H:%M:%S")

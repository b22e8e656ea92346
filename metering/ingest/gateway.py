"""What a gateway sends, whatever the transport: frames, relay acknowledgements, and the trace
of what was refused.

HTTP (:mod:`metering.ingest.http`), WebSocket (:mod:`metering.ingest.ws`) and MQTT
(:mod:`metering.ingest.mqtt`) only authenticate the gateway, decode their transport's
message and turn the :class:`Received` or :class:`Acknowledged` outcome into their reply.
Every refusal is answered the same way on all three: a frame that breaks the format is
recorded here as an "Invalid frame" Event; one the worker refused was recorded by the worker;
a busy or unreachable stream (or database) is answered with 503 and how long to wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from django.db import InterfaceError, OperationalError

from devices.models import Gateway
from metering import relays
from metering.ingest.frames import FrameError, SampleFrame
from metering.ingest.process import Receipt, record_invalid_frame
from metering.ingest.stream import Busy, Refused, stream

log = logging.getLogger(__name__)

HTTP, WEBSOCKET, MQTT = "HTTP", "WebSocket", "MQTT"

# The database or the stream's Redis out of reach for a moment (a restart): the device is answered
# 503 and sends the frame again, as when the stream is behind; nothing was stored (tests/faults).
UNAVAILABLE = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError)


def unavailable(problem: Exception) -> Busy:
    """The 503 for one of :data:`UNAVAILABLE`."""
    log.warning("ingest unavailable: %s: %s", type(problem).__name__, problem)
    return Busy("ingest is unavailable for a moment (database or stream unreachable); send the frame again", 5)


@dataclass(frozen=True)
class Received:
    """What became of one message of frames: the receipts, or the problem to tell the device."""

    receipts: list[Receipt] = field(default_factory=list)
    problem: FrameError | Busy | None = None
    seq: int | None = None  # of the one frame a refused message held, to name it in the reply

    @property
    def status(self) -> int:
        """200, or the HTTP status of the refusal (400, 403, 409, 413, 422, 500, 503)."""
        return 200 if self.problem is None else self.problem.status

    @property
    def retry_after_s(self) -> int | None:
        """When the device may try again: only for a busy stream."""
        return self.problem.retry_after_s if isinstance(self.problem, Busy) else None

    def error(self) -> dict:
        """``{"error": message, "field": JSON path or None, "status": status}`` of the refusal."""
        return {**self.problem.as_dict(), "status": self.status}


@dataclass(frozen=True)
class Acknowledged:
    """A relay acknowledgement applied (``relay``, ``on``) or refused (``problem``, status 422)."""

    relay: str | None = None
    on: bool | None = None
    problem: FrameError | None = None

    @property
    def status(self) -> int:
        return 200 if self.problem is None else self.problem.status

    def as_dict(self) -> dict:
        return {"relay": self.relay, "on": self.on} if self.problem is None else self.problem.as_dict()


class AcknowledgementError(FrameError):
    """An acknowledgement naming no relay of the gateway's location, or without a valid ``on``."""

    status = 422


def receive_frames(
    gateway: Gateway, transport: str, decode: Callable[[], list[SampleFrame]], *, binary: bytes | None = None
) -> Received:
    """Decode the gateway's frames with ``decode`` and hand them to the stream; never raises for
    anything the device sent. ``binary``: the binary message the frames came from, which the
    stream forwards instead of the decoded frames."""
    try:
        frames = decode()
    except FrameError as problem:
        return refuse(gateway, problem, transport)
    seq = frames[0].seq if len(frames) == 1 else None
    try:
        outcome = stream().submit(gateway, frames, transport, binary=binary)
    except Refused as problem:  # recorded where it was refused
        return Received(problem=problem, seq=seq)
    except Busy as busy:
        log.warning("frames over %s from gateway %s not taken: %s", transport, gateway.serial, busy.message)
        return Received(problem=busy, seq=seq)
    except UNAVAILABLE as problem:
        return Received(problem=unavailable(problem), seq=seq)
    return Received(receipts=outcome.receipts)


def refuse(gateway: Gateway | None, problem: FrameError, transport: str, *, authenticated: bool = True) -> Received:
    """Record a message the transport refused before it reached the stream, and answer it.

    ``authenticated=False``: the message named ``gateway`` without its valid token (MQTT, where
    the token travels in the message); recorded on that gateway's location all the same, so
    its owner sees someone is trying. ``gateway=None``: nothing to record it on.
    """
    if gateway is not None:
        record_invalid_frame(gateway, problem, transport, authenticated=authenticated)
    return Received(problem=problem)


def acknowledge(gateway: Gateway, ack: object) -> Acknowledged:
    """Apply the device's ``{"type": "ack", "command": id, "relay": ref, "on": bool}``."""
    if not isinstance(ack, dict):
        return Acknowledged(problem=FrameError("an acknowledgement is a JSON object"))
    try:
        relay = relays.acknowledge(gateway, ack)
    except relays.CommandError as problem:
        return Acknowledged(problem=AcknowledgementError(str(problem), "relay"))
    return Acknowledged(relay=relay.ref, on=relay.is_on)


def pending_commands(gateway: Gateway) -> list[dict]:
    """Relay commands waiting for the gateway, for transports that only answer (HTTP)."""
    return relays.pending_for(gateway)

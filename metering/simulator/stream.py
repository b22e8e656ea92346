"""Streaming a simulated house to the server, as its gateway would.

One frame per simulated second (``speed`` simulated seconds per wall second), ``seq`` derived
from the frame's time so that it carries on across restarts. Frames that cannot be delivered
(the network or the server is down) wait in a bounded buffer and go out in order once the
connection is back, retried with exponential backoff; when the buffer is full the oldest are
dropped, which the server records as a data gap. Relay commands from the server are applied to
the house and acknowledged. With ``faults`` a few frames are sent twice, skipped, or replaced
by malformed ones, each logged, to exercise the server's defences.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from metering.simulator.house import House
from metering.simulator.transport import FatalTransportError, OutgoingFrame, Payload, TransportError, dumps

FAULTS = ("duplicate", "gap", "bad_json", "unequal_lengths", "unknown_ct")
MAX_BACKOFF_S = 30.0


@dataclass
class StreamStats:
    """What a stream did. ``produced`` counts sequence numbers used (frames generated)."""

    produced: int = 0
    sent: int = 0  # genuine frames delivered, accepted or refused
    accepted: int = 0
    duplicates: int = 0  # genuine frames the server had already seen
    errors: int = 0  # genuine frames the server refused
    dropped: int = 0  # lost to a full buffer during an outage
    injected: Counter = field(default_factory=Counter)
    injected_refused: int = 0  # malformed frames the server refused, as it should
    commands: int = 0
    last_seq: int | None = None


def apply_command(house: House, command: dict[str, Any]) -> dict[str, Any]:
    """Apply a relay command ``{"type": "command", "id", "relay", "on", "until"}`` to the
    house; return the acknowledgement to send back, or an error naming the problem."""
    command_id = command.get("id")
    relay, on, until = command.get("relay"), command.get("on"), command.get("until")

    def refuse(message: str) -> dict[str, Any]:
        return {"type": "error", "command": command_id, "relay": relay, "error": message}

    if command_id is None:
        return refuse("command without an id")
    if not isinstance(relay, str):
        return refuse("relay must be a relay reference such as OUT-0001/1")
    if not isinstance(on, bool):
        return refuse("on must be true or false")
    if until is not None and (
        isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until)
    ):
        return refuse("until must be Unix seconds or null")
    try:
        house.set_relay(relay, on, until)
    except ValueError as exc:
        return refuse(str(exc))
    return {"type": "ack", "command": command_id, "relay": relay, "on": on}


def malformed_payload(frame: OutgoingFrame, fault: str, encode_doc: Callable[[dict], bytes] = dumps) -> Payload:
    """A deliberately broken JSON frame: truncated JSON, one channel a sample short, or an
    extra CT the installation does not have. ``encode_doc`` wraps a document as the transport
    sends it (MQTT puts it in its token envelope)."""
    doc = frame.to_doc()
    if fault == "bad_json":
        data = encode_doc(doc)
        return Payload(data[: len(data) // 2], frame.seq, note="truncated JSON", fault=fault, t=frame.t)
    if fault == "unequal_lengths":
        name = next(iter(doc["currents"]))
        doc["currents"][name] = doc["currents"][name][:-1]
        note = f"{name} one sample short"
    elif fault == "unknown_ct":
        doc["currents"]["ZZZ-9999/A"] = np.zeros_like(doc["voltages"]["L1"])
        note = "unknown CT ZZZ-9999/A"
    else:
        raise ValueError(f"unknown fault {fault!r}")
    return Payload(encode_doc(doc), frame.seq, note=note, fault=fault, t=frame.t)


def stream(
    house: House,
    transport,
    *,
    speed: float = 1.0,
    frames: int | None = None,
    faults: bool = False,
    fault_rate: float = 0.02,
    seed: int = 0,
    duration_s: float = 1.0,
    fs_hz: float = 6400.0,
    start_t: float | None = None,
    report_every: int = 10,
    buffer_limit: int = 120,
    out: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], float] = time.time,
) -> StreamStats:
    """Stream frames of ``house`` through ``transport`` until ``frames`` were produced (and
    delivered or dropped), or forever. Returns the counts; raises
    :class:`FatalTransportError` when the server refuses the gateway for good.

    ``seq`` is ``round(t / duration_s)``: with one-second frames, the frame's Unix second.
    """
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if buffer_limit < 1:
        raise ValueError(f"buffer_limit must be at least 1, got {buffer_limit}")
    stats = StreamStats()
    start_t = float(math.floor(wall())) if start_t is None else float(start_t)
    seq0 = round(start_t / duration_s)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0xFA17])
    buffer: deque[Payload] = deque()
    answered: dict[Any, dict[str, Any]] = {}
    wall0 = clock()
    retry_at, backoff = 0.0, 0.0
    last_t = start_t

    dropping: list[int] = []  # seqs dropped since the buffer last had room, reported once per run

    def push(payload: Payload) -> None:
        if len(buffer) >= buffer_limit:
            lost = buffer.popleft()
            if lost.fault is None:
                stats.dropped += 1
                if not dropping:
                    warn(f"buffer full ({buffer_limit} frames): dropping the oldest frames; the server will see gaps")
                dropping.append(lost.seq)
        buffer.append(payload)

    def report_drops() -> None:
        if dropping:
            warn(f"dropped {len(dropping)} frames (seq {dropping[0]}..{dropping[-1]}) while the buffer was full")
            dropping.clear()

    def produce() -> None:
        nonlocal last_t
        k = stats.produced
        t, seq = start_t + k * duration_s, seq0 + k
        stats.produced += 1
        voltages, currents, inputs = house.frame(t, duration_s, fs_hz)
        frame = OutgoingFrame(house.powerbox_serial, seq, t, fs_hz, voltages, currents, inputs)
        last_t = t
        fault = FAULTS[int(rng.integers(len(FAULTS)))] if faults and rng.random() < fault_rate else None
        if fault == "gap":
            stats.injected[fault] += 1
            warn(f"fault injected: gap, frame seq {seq} not sent")
            return
        if fault in ("bad_json", "unequal_lengths", "unknown_ct"):
            payload = malformed_payload(frame, fault, getattr(transport, "encode_doc", dumps))
            stats.injected[fault] += 1
            warn(f"fault injected: malformed frame seq {seq} ({payload.note}) sent before the real one")
            push(payload)
        genuine = transport.encode(frame)
        push(genuine)
        if fault == "duplicate":
            stats.injected[fault] += 1
            warn(f"fault injected: frame seq {seq} sent twice")
            push(dataclasses.replace(genuine, fault="duplicate", note="resent"))

    def handle(commands: list[dict[str, Any]]) -> None:
        for command in commands:
            if command.get("type") not in (None, "command"):
                continue
            key = command.get("id")
            ack = answered.get(key) if key is not None else None
            if ack is None:
                ack = apply_command(house, command)
                stats.commands += 1
                if key is not None:
                    answered[key] = ack
                    while len(answered) > 1000:
                        answered.pop(next(iter(answered)))
                out(_describe_command(house, command, ack))
            transport.ack(ack)

    def tally(payload: Payload, reply, late: bool = False) -> None:
        """Count the server's verdict on a payload; ``late`` verdicts (MQTT) follow a PUBACK
        that was already counted as delivered."""
        seq = payload.seq
        if payload.fault is not None:
            if payload.fault != "duplicate" and not reply.ok:
                stats.injected_refused += 1
            elif payload.fault != "duplicate" and reply.status != "published":
                warn(f"the server accepted the malformed frame seq {seq} ({payload.note})")
            return
        if late:
            if not reply.ok:
                stats.accepted -= 1
                stats.errors += 1
                warn(f"frame seq {seq} refused: {reply.error}" + (f" at {reply.field}" if reply.field else ""))
            elif reply.status == "duplicate":
                stats.duplicates += 1
            return
        stats.sent += 1
        stats.last_seq = seq
        if reply.ok:
            stats.accepted += 1
            if reply.status == "duplicate":
                stats.duplicates += 1
        else:
            stats.errors += 1
            where = f" at {reply.field}" if reply.field else ""
            warn(f"frame seq {seq} refused: {reply.error}{where}")
        if report_every and stats.sent % report_every == 0:
            totals = house.totals(payload.t)
            out(
                f"frame {stats.sent}: consumption {totals.consumption_w / 1000:.2f} kW, "
                f"solar {totals.solar_w / 1000:.2f} kW, grid {totals.grid_w / 1000:.2f} kW, "
                f"sent {stats.accepted} ok, {stats.errors} errors"
            )

    def settle_late_replies(wait_s: float = 2.0) -> None:
        """Give verdicts that come after the PUBACK (MQTT) a moment to arrive."""
        awaiting = getattr(transport, "awaiting_replies", None)
        deadline = clock() + wait_s
        while awaiting is not None and awaiting() and clock() < deadline:
            sleep(0.05)
            for payload, verdict in transport.take_replies():
                tally(payload, verdict, late=True)

    try:
        while True:
            now = clock()
            due = int((now - wall0) * speed / duration_s) + 1
            if frames is not None:
                due = min(due, frames)
            while stats.produced < due:
                produce()
            for payload, verdict in getattr(transport, "take_replies", list)():
                tally(payload, verdict, late=True)
            if buffer and now >= retry_at:
                payload = buffer[0]
                try:
                    reply = transport.send(payload)
                except FatalTransportError:
                    raise
                except TransportError as exc:
                    backoff = min(MAX_BACKOFF_S, backoff * 2 or 1.0)
                    retry_at = clock() + backoff
                    warn(f"{exc}; retrying in {backoff:g} s ({len(buffer)} frames buffered)")
                    continue
                buffer.popleft()
                backoff = 0.0
                if len(buffer) < buffer_limit // 2:
                    report_drops()
                tally(payload, reply)
                handle(reply.commands)
                continue
            handle(transport.poll_commands())
            if frames is not None and stats.produced >= frames and not buffer:
                settle_late_replies()
                return stats
            done_producing = frames is not None and stats.produced >= frames
            next_frame = math.inf if done_producing else wall0 + stats.produced * duration_s / speed
            wake = min(next_frame, retry_at) if buffer else next_frame
            sleep(min(max(wake - clock(), 0.0), 0.25))
    finally:
        report_drops()
        transport.close()


def _describe_command(house: House, command: dict[str, Any], ack: dict[str, Any]) -> str:
    relay = command.get("relay")
    if ack["type"] != "ack":
        return f"command {command.get('id')}: refused ({ack['error']})"
    name = house.relay_name(relay)
    until = command.get("until")
    timed = f" until {datetime.fromtimestamp(until, house.tz):%H:%M:%S}" if until is not None else ""
    state = "on" if command.get("on") else "off"
    return f"command {command.get('id')}: relay {relay} ({name}) {state}{timed}, acknowledged"

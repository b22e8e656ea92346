"""Streaming a simulated house to the server, as its gateway would.

One frame per simulated second (``speed`` simulated seconds per wall second), numbered by a
counter as a Power Box numbers them: ``first_seq`` is where the server's stored numbering left
off, so a new run carries on from it (a Power Box keeps its counter across restarts). A frame is
never sent before its time: a fast run replays the recent past (:func:`start_time`) and slows
down to real time when it catches up with the wall clock, so that no frame starts in the
future. The server's receipt for each frame is counted: stored (``ok``, ``late``, ``gap``), or
a ``duplicate`` it already had and did not store again. Frames that cannot be delivered
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

from tools.simulator.house import House
from tools.simulator.transport import FatalTransportError, OutgoingFrame, Payload, TransportError, dumps

FAULTS = ("duplicate", "gap", "bad_json", "unequal_lengths", "unknown_ct")
MAX_BACKOFF_S = 30.0
# A fast run without a frame count replays the last hour.
REPLAY_FRAMES = 3600


def start_time(
    now: float, *, speed: float, frames: int | None, resume_t: float | None = None, duration_s: float = 1.0
) -> float:
    """The Unix time of a stream's first frame, ``now`` being the wall clock.

    At ``speed`` 1 or less the stream starts now. A fast run replays the recent past: it starts
    ``frames`` frames back (:data:`REPLAY_FRAMES` without a count) and, since no frame is sent
    before its time, ends in real time once it has caught up with the wall clock. It never
    starts before ``resume_t``, the end of what the server already stores for the Power Box (or
    of the written history), so no second is metered twice, nor after ``now``.
    """
    whole_now = float(math.floor(now))
    replay_s = 0.0 if speed <= 1 else (REPLAY_FRAMES if frames is None else frames) * duration_s
    start = whole_now - replay_s
    if resume_t is not None:
        start = max(start, resume_t)
    return min(start, whole_now)


@dataclass
class StreamStats:
    """What a stream did. ``produced`` counts sequence numbers used (frames generated); the
    verdicts count genuine frames only, not the injected faults."""

    produced: int = 0
    sent: int = 0  # genuine frames delivered, stored or not
    stored: int = 0  # the server stored them (receipt "ok", "late" or "gap")
    duplicates: int = 0  # the server already had that seq and did not store the frame again
    errors: int = 0  # genuine frames the server refused
    awaiting: int = 0  # published (MQTT) with no verdict back yet
    receipts: Counter = field(default_factory=Counter)  # receipt status -> genuine frames
    dropped: int = 0  # lost to a full buffer during an outage
    injected: Counter = field(default_factory=Counter)
    injected_refused: int = 0  # malformed frames the server refused, as it should
    commands: int = 0
    last_seq: int | None = None

    @property
    def accepted(self) -> int:
        """Frames the server took, stored or counted as duplicates."""
        return self.stored + self.duplicates

    def verdicts(self) -> str:
        """``"3 stored (1 after a gap), 2 duplicates, 0 refused"``."""
        detail = ", ".join(
            f"{self.receipts[status]} {label}"
            for status, label in (("gap", "after a gap"), ("late", "late"))
            if self.receipts[status]
        )
        text = f"{self.stored} stored{f' ({detail})' if detail else ''}, {self.duplicates} duplicates, "
        text += f"{self.errors} refused"
        if self.awaiting:
            text += f", {self.awaiting} awaiting a verdict"
        return text


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


def _on_house_clock(command: dict[str, Any], offset_s: float) -> dict[str, Any]:
    """A command whose ``until`` (server time) is moved to the house's clock."""
    until = command.get("until")
    if offset_s and isinstance(until, (int, float)) and not isinstance(until, bool) and math.isfinite(until):
        return {**command, "until": until + offset_s}
    return command


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
    first_seq: int = 0,
    report_every: int = 10,
    buffer_limit: int = 120,
    out: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], float] = time.time,
    house_offset_s: float = 0.0,
) -> StreamStats:
    """Stream frames of ``house`` through ``transport`` until ``frames`` were produced (and
    delivered or dropped), or forever. Returns the counts; raises
    :class:`FatalTransportError` when the server refuses the gateway for good.

    Frame ``k`` is numbered ``first_seq + k`` and starts at ``start_t + k * duration_s``
    (default: the current Unix second). It goes out ``k * duration_s / speed`` wall seconds
    after the start, but not before ``wall()`` reaches its start time.

    ``house_offset_s`` lets the house live at another time than its frames say: frame ``k``
    carries what the house does at ``start_t + k * duration_s + house_offset_s`` (a sunny noon
    at any hour of the day), stamped with its real time, as the server accepts only those.
    """
    if not math.isfinite(house_offset_s):
        raise ValueError(f"house_offset_s must be a finite number of seconds, got {house_offset_s}")
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if buffer_limit < 1:
        raise ValueError(f"buffer_limit must be at least 1, got {buffer_limit}")
    stats = StreamStats()
    start_t = float(math.floor(wall())) if start_t is None else float(start_t)
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
        t, seq = start_t + k * duration_s, first_seq + k
        stats.produced += 1
        voltages, currents, inputs = house.frame(t + house_offset_s, duration_s, fs_hz)
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
                ack = apply_command(house, _on_house_clock(command, house_offset_s))
                stats.commands += 1
                if key is not None:
                    answered[key] = ack
                    while len(answered) > 1000:
                        answered.pop(next(iter(answered)))
                out(_describe_command(house, command, ack))
            transport.ack(ack)

    published: set[int] = set()  # genuine payloads awaiting a verdict (MQTT)

    def count(payload: Payload, reply) -> None:
        """Count the server's verdict on a genuine frame."""
        seq = payload.seq
        if not reply.ok:
            stats.errors += 1
            warn(f"frame seq {seq} refused: {reply.error}" + (f" at {reply.field}" if reply.field else ""))
        elif reply.status == "published":  # MQTT: the broker has it, the verdict comes later
            stats.awaiting += 1
            published.add(id(payload))
        else:
            status = reply.status or "ok"
            stats.receipts[status] += 1
            if status != "duplicate":
                stats.stored += 1
                return
            stats.duplicates += 1
            if stats.duplicates == 1:
                warn(f"frame seq {seq} is a duplicate: the server already had that number and did not store it")

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
            if id(payload) in published:  # else a frame published before this stream started
                published.discard(id(payload))
                stats.awaiting -= 1
                count(payload, reply)
            return
        stats.sent += 1
        stats.last_seq = seq
        count(payload, reply)
        if report_every and stats.sent % report_every == 0:
            totals = house.totals(payload.t + house_offset_s)
            out(
                f"frame {stats.sent}: consumption {totals.consumption_w / 1000:.2f} kW, "
                f"solar {totals.solar_w / 1000:.2f} kW, grid {totals.grid_w / 1000:.2f} kW; "
                f"{stats.sent} sent: {stats.verdicts()}"
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
            # No frame that starts in the future: a fast run slows down to real time.
            due = min(due, math.floor((wall() - start_t) / duration_s) + 1)
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
            if done_producing:
                next_frame = math.inf
            else:
                next_t = start_t + stats.produced * duration_s
                next_frame = max(wall0 + stats.produced * duration_s / speed, clock() + next_t - wall())
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

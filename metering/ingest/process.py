"""From a validated sample frame to registers, history, live values and events.

One entry point, :func:`ingest_frames`, used by every transport (HTTP, WebSocket, MQTT).
A batch is checked against the installation first and computed before anything is written;
then the whole batch is recorded in one transaction with its Power Box's state row (``seq``
window, energy registers, pending 5-minute bucket), so a refused frame changes nothing.
Live values, the in-process carry and card pushes follow the commit.

Frame ordering (see docs/ingest.md):

- ``seq`` = last + 1: the leftover samples of the previous frame (kept in this process) are
  prepended so live values are computed over whole cycles without losing energy.
- ``seq`` > last + 1: a data gap Event with its duration; nothing is invented for the gap.
- a repeated ``seq``: acknowledged as a duplicate, nothing changes.
- a late frame (``seq`` below the newest, not seen before): its energy goes to its own
  5-minute bucket and the registers; the live values stay those of the newest frame.
- a frame that does not fit the numbering but fits the one before the last jump of ``seq``
  (an outlier ``seq``): counted in that numbering, which becomes the current one again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import orjson
from django.db import connection, transaction
from django.utils import timezone

from devices.models import CtModule, Event, Gateway, InputModule, OutputModule, PowerBox
from metering import live, rollups
from metering.core import Carry, FrameResult, MeterConfig, compute_block, compute_frame
from metering.ingest.frames import FrameError, SampleFrame, decode_binary
from metering.ingest.sequence import Arrival, SeqWindow
from metering.installed import Installed, installed
from metering.models import InputCount, LoadEnergy, LocationEnergy, PowerBoxState

log = logging.getLogger(__name__)

BUCKET_S = 300
# The pending bucket is written out at least this often, so history lags little behind.
FLUSH_EVERY_S = 30.0
OFFLINE_AFTER_S = 30.0
# Gateway.last_seen_at is for people; a few seconds of precision saves a write per frame.
LAST_SEEN_EVERY_S = 5.0
# A pulse input counts at most this fast (an S0 meter output gives under 20 pulses a second), plus
# a margin: a bigger jump of the counter is a glitch or a swapped counter, not consumption.
MAX_PULSE_RATE_HZ = 1000.0
PULSE_JUMP_MARGIN = 1000
# The history tables store counts as signed 64-bit integers.
MAX_STORED_COUNT = 2**63 - 1


@dataclass
class Receipt:
    seq: int
    status: str  # "ok", "duplicate", "late", "gap"
    gap_s: float | None = None

    def as_dict(self) -> dict:
        data = {"seq": self.seq, "status": self.status}
        if self.gap_s is not None:
            data["gap_s"] = round(self.gap_s, 3)
        return data


@dataclass
class BatchOutcome:
    receipts: list[Receipt] = field(default_factory=list)


class IngestError(FrameError):
    """A frame that is well formed but does not fit the installation (HTTP 422, or 403)."""

    def __init__(self, message: str, field: str | None = None, status: int = 422):
        super().__init__(message, field)
        self.status = status


def record_invalid_frame(gateway: Gateway, problem: FrameError, transport: str, *, authenticated: bool = True) -> None:
    """The trace of a refused frame on its location's events, whatever refused it.

    ``authenticated=False``: a message that named ``gateway`` without its valid token (MQTT, where
    the token travels in the message), recorded all the same so its owner sees someone is trying.
    """
    refused = f"Invalid frame over {transport} refused" if authenticated else f"{transport} message refused"
    Event.objects.create(
        location_id=gateway.location_id,
        kind=Event.INVALID_FRAME,
        module=gateway.serial,
        message=f"{refused}: {problem.message}",
        data={"error": problem.message, "field": problem.field, "transport": transport},
    )


@dataclass
class Entry:
    """One submission: a gateway's frames, decoded (``frames``) or one binary message."""

    gateway_id: int
    transport: str
    now: float
    frames: list[SampleFrame] | None = None
    binary: bytes | None = None
    gateway: Gateway | None = None  # known in process; a worker looks it up by id
    reply: str = ""
    rid: str = ""


def process_entry(entry: Entry) -> dict:
    """Meter and store one entry's frames; its JSON-able outcome.

    ``{"accepted": [receipt, ...]}``, or ``{"error", "field", "status"}`` for a refused frame,
    which is recorded as an "Invalid frame" Event of the gateway's location, as the transports
    did. Everything is committed when it returns. Database errors propagate (the entry is then
    processed again).
    """
    gateway = entry.gateway or Gateway.objects.select_related("location").filter(pk=entry.gateway_id).first()
    if gateway is None:
        return {"error": "gateway no longer exists", "field": "Authorization", "status": 401}
    try:
        frames = entry.frames if entry.frames is not None else [decode_binary(entry.binary or b"", now=entry.now)]
        outcome = ingest_frames(gateway, frames)
    except FrameError as problem:
        record_invalid_frame(gateway, problem, entry.transport)
        return {"error": problem.message, "field": problem.field, "status": problem.status}
    return {"accepted": [receipt.as_dict() for receipt in outcome.receipts]}


# Leftover samples per Power Box, valid only for the frame that follows them.
_carries: dict[int, tuple[int, MeterConfig, Carry]] = {}
_carry_lock = threading.Lock()


def check_against_installation(frame: SampleFrame, gateway: Gateway, setup: Installed) -> None:
    """Refuse a frame that names hardware this gateway's location does not have."""
    if frame.powerbox != setup.powerbox_serial:
        other = PowerBox.objects.filter(serial=frame.powerbox).exclude(location_id=gateway.location_id).exists()
        if other:
            raise IngestError(
                f"Power Box {frame.powerbox} belongs to another location than gateway {gateway.serial}",
                "powerbox",
                status=403,
            )
        raise IngestError(
            f"unknown Power Box {frame.powerbox}: this location's Power Box is {setup.powerbox_serial}", "powerbox"
        )
    wanted = set(setup.voltage_refs)
    got = set(frame.voltages)
    if got != wanted:
        missing, extra = sorted(wanted - got), sorted(got - wanted)
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise IngestError(f"topology {setup.topology} needs voltages {', '.join(sorted(wanted))}: {detail}", "voltages")
    for ref in frame.currents:
        if ref not in setup.ct_refs:
            _refuse_unknown(ref, f"currents.{ref}", "CT input", setup, gateway)
    for ref in frame.inputs:
        if ref not in setup.inputs:
            _refuse_unknown(ref, f"inputs.{ref}", "input", setup, gateway)


def _refuse_unknown(ref: str, field_path: str, what: str, setup: Installed, gateway: Gateway) -> None:
    serial = ref.split("/", 1)[0]
    if serial not in setup.module_serials and _module_elsewhere(serial, gateway.location_id):
        raise IngestError(f"module {serial} belongs to another location than gateway {gateway.serial}", field_path, 403)
    raise IngestError(f"unknown {what} {ref}: it is not configured on this installation", field_path)


def _module_elsewhere(serial: str, location_id: int) -> bool:
    return (
        CtModule.objects.filter(serial=serial).exclude(powerbox__location_id=location_id).exists()
        or InputModule.objects.filter(serial=serial).exclude(location_id=location_id).exists()
        or OutputModule.objects.filter(serial=serial).exclude(location_id=location_id).exists()
    )


@dataclass
class _Metered:
    """A frame of a batch with its live values, computed before anything is written."""

    frame: SampleFrame
    meter: MeterConfig
    missing_modules: tuple[str, ...]
    result: FrameResult
    # Leftover samples of the previous frame at another sample rate: not metered, reported.
    dropped: Carry | None = None


def ingest_frames(gateway: Gateway, frames: list[SampleFrame]) -> BatchOutcome:
    """Check, compute and record a batch of frames from one gateway: all or nothing on error.

    A refused frame raises :class:`IngestError` (its ``field`` starts with ``[i]`` in a batch
    of several) and leaves every row as it was.
    """
    setup = installed(gateway.location_id)
    for index, frame in enumerate(frames):
        try:
            check_against_installation(frame, gateway, setup)
        except FrameError as error:
            raise _at(error, index, len(frames)) from None
    metered = _meter(setup, frames)

    outcome = BatchOutcome()
    newest: list[tuple[_Metered, dict]] = []
    with transaction.atomic():
        state = _lock_state(setup.powerbox_id)
        events: list[Event] = []
        recorded = False
        for index, item in enumerate(metered):
            try:
                receipt, is_newest = _record(state, gateway, setup, item, events)
            except IngestError as error:
                raise _at(error, index, len(frames)) from None  # rolls the whole batch back
            outcome.receipts.append(receipt)
            recorded = recorded or receipt.status != "duplicate"
            if is_newest:
                newest.append((item, dict(state.inputs)))
        _save_state(state)
        for event in events:  # saved one by one (rare) so post_save lets pages show them at once
            event.save()
        now = timezone.now()
        if recorded and (
            gateway.last_seen_at is None or (now - gateway.last_seen_at).total_seconds() >= LAST_SEEN_EVERY_S
        ):
            gateway.last_seen_at = now
            Gateway.objects.filter(pk=gateway.pk).update(last_seen_at=now)

    if newest:
        last = newest[-1][0]
        with _carry_lock:
            _carries[setup.powerbox_id] = (last.frame.seq, last.meter, last.result.carry)
        for item, input_states in newest:
            live.publish(setup, item.frame, item.result, input_states)
    return outcome


def _at(error: FrameError, index: int, count: int) -> FrameError:
    """``error`` with the frame's index in front of its field, in a batch of several."""
    if count > 1:
        error.field = f"[{index}].{error.field}" if error.field else f"[{index}]"
    return error


def _meter(setup: Installed, frames: list[SampleFrame]) -> list[_Metered]:
    """Compute every frame of a batch, each with the leftover samples of the one before it."""
    with _carry_lock:
        held = _carries.get(setup.powerbox_id)
    carries: dict[int, tuple[MeterConfig, Carry]] = {held[0]: (held[1], held[2])} if held else {}
    metered = []
    for index, frame in enumerate(frames):
        meter, missing_modules = metered_part(setup, frame)
        carry = dropped = None
        before = carries.get(frame.seq - 1)
        # Leftover samples fit only the next frame, metered the same way at the same rate.
        if before is not None and before[0] == meter:
            if before[1].fs_hz == frame.fs_hz:
                carry = before[1]
            else:
                dropped = before[1]
        try:
            result = _compute(frame, meter, carry)
        except IngestError as error:
            raise _at(error, index, len(frames)) from None
        carries[frame.seq] = (meter, result.carry)
        metered.append(_Metered(frame, meter, missing_modules, result, dropped))
    return metered


def _compute(frame: SampleFrame, meter: MeterConfig, carry: Carry | None) -> FrameResult:
    try:
        if frame.block is not None:  # decoded frames: the core reads the block in place
            n_voltages = len(frame.voltages)
            return compute_block(
                frame.block[:n_voltages],
                tuple(frame.voltages),
                frame.block[n_voltages:],
                tuple(frame.currents),
                frame.fs_hz,
                meter,
                carry,
            )
        return compute_frame(frame.voltages, frame.currents, frame.fs_hz, meter, carry)
    except ValueError as exc:
        raise IngestError(str(exc), None) from exc


def metered_part(setup: Installed, frame: SampleFrame) -> tuple[MeterConfig, tuple[str, ...]]:
    """The configuration to meter this frame with, and the configured CT modules it lacks.

    A CT Hub that drops off the bus must not stop the rest of the house from being metered:
    its CTs are left out (and diagnosed) instead of the whole frame being refused.
    """
    channels = setup.meter.channels
    present = tuple(ch for ch in channels if ch.ct in frame.currents)
    if len(present) == len(channels):
        return setup.meter, ()
    missing = sorted({ch.ct.split("/", 1)[0] for ch in channels if ch.ct not in frame.currents})
    return setup.meter_with(present), tuple(missing)


def _record(
    state: SimpleNamespace, gateway: Gateway, setup: Installed, item: _Metered, events: list[Event]
) -> tuple[Receipt, bool]:
    """Record one computed frame in the locked state row; returns its receipt and whether it
    is the newest frame (live values, inputs). Raises :class:`IngestError` to refuse it."""
    frame = item.frame
    window = SeqWindow.load(state.last_seq, state.seen_window)
    arrival = window.classify(frame.seq)
    renumbered = _renumbered(state, window, arrival, frame)
    if arrival is Arrival.DUPLICATE and not renumbered:
        state.duplicates += 1
        return Receipt(frame.seq, "duplicate"), False
    misfit = renumbered or arrival is Arrival.TOO_OLD or (arrival is Arrival.AFTER_GAP and frame.t < state.last_t)
    earlier = _fit_previous(state, window, frame) if misfit else None
    if earlier is not None:
        previous, arrival = earlier
        if arrival is Arrival.DUPLICATE:  # sent again after the jump: counted before it
            state.duplicates += 1
            return Receipt(frame.seq, "duplicate"), False
        # The frames go on from the numbering before the jump: the jump was an outlier. Its one
        # frame stays counted and stays known, so that it is a duplicate if it comes again.
        events.append(
            _event(
                setup,
                Event.DATA_GAP,
                frame.powerbox,
                f"Power Box {frame.powerbox} went back to its frame numbering (seq {state.last_seq} → {frame.seq}): "
                f"seq {state.last_seq} was out of line",
                {"from_seq": state.last_seq, "to_seq": frame.seq, "returned": True},
                frame.t,
            )
        )
        before = state.previous_numbering
        state.previous_numbering = _numbering(state)
        window, renumbered = previous, False
        state.last_seq, state.seen_window = before["last_seq"], before["seen"]
        state.last_t, state.last_end_t = before["last_t"], before["last_end_t"]
    if renumbered:
        # The Power Box restarted its numbering (e.g. after a reboot): start a new window.
        events.append(
            _event(
                setup,
                Event.DATA_GAP,
                frame.powerbox,
                f"Power Box {frame.powerbox} restarted its frame numbering (seq {state.last_seq} → {frame.seq})"
                + _silence_note(frame.t - state.last_end_t),
                {
                    "from_seq": state.last_seq,
                    "to_seq": frame.seq,
                    "renumbered": True,
                    "duration_s": round(max(frame.t - state.last_end_t, 0.0), 3),
                },
                state.last_end_t,
            )
        )
        state.previous_numbering = {**_numbering(state), "jumped_to": frame.seq}
        window, arrival = SeqWindow(), Arrival.FIRST
    elif arrival is Arrival.TOO_OLD:
        raise IngestError(
            f"frame seq {frame.seq} is older than the replay window of the newest frame {state.last_seq}", "seq", 409
        )
    elif arrival is Arrival.AFTER_GAP and frame.t < state.last_t:
        raise IngestError(
            f"frame seq {frame.seq} follows seq {state.last_seq} but starts earlier (t {frame.t} < {state.last_t})",
            "t",
            409,
        )
    receipt = Receipt(frame.seq, "late" if arrival is Arrival.LATE else "ok")

    if state.last_end_t is not None and arrival in (Arrival.NEXT, Arrival.AFTER_GAP, Arrival.FIRST):
        silence_s = frame.t - state.last_end_t
        if state.offline_reported or silence_s > OFFLINE_AFTER_S:
            events.append(
                _event(
                    setup,
                    Event.GATEWAY_ONLINE,
                    gateway.serial,
                    f"Gateway {gateway.serial} is sending data again",
                    {"silence_s": round(silence_s, 1)},
                    frame.t,
                )
            )
            state.offline_reported = False
    if arrival is Arrival.AFTER_GAP:
        missing = frame.seq - window.last_seq - 1
        gap_s = max(frame.t - (state.last_end_t or frame.t), 0.0)
        receipt = Receipt(frame.seq, "gap", gap_s)
        state.gaps += 1
        events.append(
            _event(
                setup,
                Event.DATA_GAP,
                frame.powerbox,
                f"Data gap: {missing} frame{'s' if missing != 1 else ''} missing from Power Box {frame.powerbox} ({_duration(gap_s)})",
                {
                    "from_seq": window.last_seq + 1,
                    "to_seq": frame.seq - 1,
                    "missing": missing,
                    "duration_s": round(gap_s, 3),
                },
                state.last_end_t or frame.t,
            )
        )

    window.record(frame.seq)
    newest = arrival is not Arrival.LATE
    if newest:
        state.last_seq, state.last_t, state.last_end_t = window.last_seq, frame.t, frame.end_t
    state.seen_window = window.dump()
    return _count(state, setup, item, events, newest, receipt), newest


def _count(
    state: SimpleNamespace, setup: Installed, item: _Metered, events: list[Event], newest: bool, receipt: Receipt
) -> Receipt:
    """Add a recorded frame's energy, pulses and diagnoses to the state row."""
    frame, result = item.frame, item.result
    state.frames += 1
    _add_registers(state, result)
    if item.dropped is not None:
        lost_s = item.dropped.n_samples / item.dropped.fs_hz
        events.append(
            _event(
                setup,
                Event.DATA_GAP,
                frame.powerbox,
                f"Power Box {frame.powerbox} changed its sample rate from {item.dropped.fs_hz:g} to {frame.fs_hz:g} Hz: "
                f"the last {lost_s * 1000:.1f} ms of the previous frame were not metered",
                {
                    "from_fs_hz": item.dropped.fs_hz,
                    "to_fs_hz": frame.fs_hz,
                    "duration_s": round(lost_s, 6),
                    "seq": frame.seq,
                },
                frame.t - lost_s,
            )
        )
    if newest:
        events.extend(_diagnose_missing_modules(state, setup, frame, item.missing_modules))
    input_events, input_pulses = _track_inputs(state, setup, frame, newest)
    events.extend(input_events)
    _add_to_buckets(state, setup, frame, result, input_pulses)
    return receipt


def _numbering(state: SimpleNamespace) -> dict:
    """The state's current numbering, to remember when another one takes over."""
    if state.last_seq is None:
        return {}
    return {
        "last_seq": state.last_seq,
        "seen": state.seen_window,
        "last_t": state.last_t,
        "last_end_t": state.last_end_t,
    }


def _fit_previous(state: SimpleNamespace, window: SeqWindow, frame: SampleFrame) -> tuple[SeqWindow, Arrival] | None:
    """How a frame that does not fit the current numbering fits the one it jumped from.

    A frame that numbering holds (sent before the jump) is a duplicate. A frame that goes on
    from it, in ``seq`` and in time, takes it back, but only while the current numbering holds
    nothing but the one frame that jumped to it: then that frame was an outlier. Otherwise None.
    """
    before = state.previous_numbering
    if not before:
        return None
    previous = SeqWindow.load(before["last_seq"], before["seen"])
    arrival = previous.classify(frame.seq)
    if arrival is Arrival.DUPLICATE:
        return (previous, arrival) if frame.t < before["last_end_t"] else None
    if before.get("jumped_to") != window.last_seq or window.seen:
        return None
    if arrival in (Arrival.NEXT, Arrival.AFTER_GAP) and frame.t >= before["last_end_t"] - 0.5 * frame.duration_s:
        missing = frame.seq - previous.last_seq - 1
        could_have_missed = (frame.t - before["last_end_t"]) / frame.duration_s
        if missing <= 2 * could_have_missed + 10:
            return previous, arrival
    return None


# The state row is read and written with plain SQL and orjson: it is the one row every frame
# touches, and the ORM's query building cost as much as the rest of storing a frame. Kept for
# tools/bench_ingest.py (WebSocket with binary frames, target >= 300 frames/s): measured again
# after the layout split (2026-12-04, SQLite, lock + save in one transaction) 0.28-0.44 ms here
# against 1.7-2.6 ms through select_for_update().get() and save().
_STATE_COLUMNS = (
    "id",
    "last_seq",
    "last_t",
    "last_end_t",
    "seen_window",
    "frames",
    "duplicates",
    "gaps",
    "registers",
    "inputs",
    "pending_bucket",
    "offline_reported",
    "missing_modules",
    "previous_numbering",
)
_STATE_JSON = frozenset({"registers", "inputs", "pending_bucket", "missing_modules", "previous_numbering"})


def _lock_state(powerbox_id: int) -> SimpleNamespace:
    """The Power Box's state row, locked for this transaction (created on the first frame)."""
    q = connection.ops.quote_name
    table = q(PowerBoxState._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = f"SELECT {', '.join(q(c) for c in _STATE_COLUMNS)} FROM {table} WHERE {q('powerbox_id')} = %s{lock}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [powerbox_id])
        row = cursor.fetchone()
        if row is None:
            # Two workers may see the first frames of a Power Box at once: one insert wins.
            PowerBoxState.objects.bulk_create([PowerBoxState(powerbox_id=powerbox_id)], ignore_conflicts=True)
            cursor.execute(sql, [powerbox_id])
            row = cursor.fetchone()
    state = SimpleNamespace(**dict(zip(_STATE_COLUMNS, row)))
    for name in _STATE_JSON:
        value = getattr(state, name)
        if isinstance(value, (str, bytes)):
            setattr(state, name, orjson.loads(value))
    state.offline_reported = bool(state.offline_reported)
    return state


def _save_state(state: SimpleNamespace) -> None:
    q = connection.ops.quote_name
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    columns = [c for c in _STATE_COLUMNS if c != "id"]
    assignments = ", ".join(f"{q(c)} = %s{cast if c in _STATE_JSON else ''}" for c in columns)
    values = [orjson.dumps(getattr(state, c)).decode() if c in _STATE_JSON else getattr(state, c) for c in columns]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {q(PowerBoxState._meta.db_table)} SET {assignments} WHERE {q('id')} = %s", [*values, state.id]
        )


def _diagnose_missing_modules(
    state: SimpleNamespace, setup: Installed, frame: SampleFrame, missing: tuple[str, ...]
) -> list[Event]:
    """A diagnosis Event when a configured CT module drops out of the frames (once per episode)."""
    known = set(state.missing_modules)
    events = []
    for serial in sorted(set(missing) - known):
        events.append(
            _event(
                setup,
                Event.DIAGNOSIS,
                serial,
                f"CT module {serial} is missing from the frames of Power Box {frame.powerbox}: its loads are not "
                "measured. Check the bus cable (A) to it, that the termination plug sits on the last CT Hub, "
                "and its light (one pulse a second: communication error; two: configuration problem).",
                {"diagnosis": "module_missing", "module": serial},
                frame.t,
            )
        )
    for serial in sorted(known - set(missing)):
        events.append(
            _event(
                setup,
                Event.DIAGNOSIS,
                serial,
                f"CT module {serial} is back in the frames of Power Box {frame.powerbox}.",
                {"diagnosis": "module_back", "module": serial},
                frame.t,
            )
        )
    state.missing_modules = list(missing)
    return events


def _renumbered(state: SimpleNamespace, window: SeqWindow, arrival: Arrival, frame: SampleFrame) -> bool:
    """True when ``seq`` and ``t`` disagree in a way only a restarted numbering explains."""
    if state.last_end_t is None:
        return False
    later_in_time = frame.t >= state.last_end_t - 0.5 * frame.duration_s
    if arrival in (Arrival.LATE, Arrival.TOO_OLD, Arrival.DUPLICATE) and later_in_time and frame.seq < window.last_seq:
        return True
    if arrival is Arrival.AFTER_GAP and later_in_time:
        missing = frame.seq - window.last_seq - 1
        could_have_missed = (frame.t - state.last_end_t) / frame.duration_s
        return missing > 2 * could_have_missed + 10
    return False


def _silence_note(silence_s: float) -> str:
    return f"; no data for {_duration(silence_s)}" if silence_s > 1.5 else ""


def _event(setup: Installed, kind: str, module: str, message: str, data: dict, at_unix: float) -> Event:
    return Event(
        location_id=setup.location_id,
        kind=kind,
        module=module,
        message=message,
        data=data,
        time=datetime.fromtimestamp(at_unix, tz=UTC),
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _add_registers(state: SimpleNamespace, result: FrameResult) -> None:
    registers = state.registers or {}
    cts = registers.setdefault("ct", {})
    loads = registers.setdefault("load", {})
    for ct in result.cts:
        pair = cts.setdefault(ct.ct, [0.0, 0.0])
        pair[0] += ct.energy_import_wh
        pair[1] += ct.energy_export_wh
    for load in result.loads:
        pair = loads.setdefault(load.name, [0.0, 0.0])
        pair[0] += load.energy_import_wh
        pair[1] += load.energy_export_wh
    state.registers = registers


def _track_inputs(
    state: SimpleNamespace, setup: Installed, frame: SampleFrame, newest: bool
) -> tuple[list[Event], dict[str, int]]:
    """Input state changes and pulse counters. Returns events and pulses counted in this frame."""
    events: list[Event] = []
    pulses_added: dict[str, int] = {}
    known = state.inputs or {}
    for ref, reading in frame.inputs.items():
        spec = setup.inputs[ref]
        previous = known.get(ref)
        if previous is None:
            known[ref] = {"state": reading.state, "pulses": reading.pulses, "t": frame.t, "since": frame.t, "rate": 0.0}
            continue
        if not newest:
            continue  # a late frame's readings are older than what we hold
        restarted = reading.pulses < previous["pulses"]
        added = reading.pulses if restarted else reading.pulses - previous["pulses"]
        possible_s = max(frame.end_t - previous["t"], 0.0)
        if added > PULSE_JUMP_MARGIN + MAX_PULSE_RATE_HZ * possible_s:
            events.append(
                _event(
                    setup,
                    Event.PULSES_RESET,
                    ref,
                    f"{spec.name}: pulse counter jumped from {previous['pulses']} to {reading.pulses}, more than the input "
                    f"can count in {_duration(possible_s)}; counted as a counter reset, without adding pulses",
                    {"before": previous["pulses"], "after": reading.pulses, "implausible": True},
                    frame.t,
                )
            )
            added = 0
        elif restarted:
            events.append(
                _event(
                    setup,
                    Event.PULSES_RESET,
                    ref,
                    f"{spec.name}: pulse counter restarted at {reading.pulses} (was {previous['pulses']})",
                    {"before": previous["pulses"], "after": reading.pulses},
                    frame.t,
                )
            )
        if added:
            pulses_added[ref] = added
        dt = frame.t - previous["t"]
        rate = 0.0
        if spec.mode == "pulse" and spec.pulses_per_unit and dt > 0:
            rate = added / spec.pulses_per_unit / dt * 3600.0  # units per hour
        since = previous.get("since", frame.t)
        if spec.mode == "status" and reading.state != previous["state"]:
            since = frame.t
            word = "closed" if reading.state else "open"
            events.append(
                _event(setup, Event.INPUT_CHANGED, ref, f"{spec.name} {word}", {"state": reading.state}, frame.t)
            )
        known[ref] = {"state": reading.state, "pulses": reading.pulses, "t": frame.t, "since": since, "rate": rate}
    state.inputs = known
    return events, pulses_added


def bucket_start(t_unix: float) -> float:
    return t_unix - t_unix % BUCKET_S


def _add_to_buckets(
    state: SimpleNamespace, setup: Installed, frame: SampleFrame, result: FrameResult, pulses: dict[str, int]
) -> None:
    start = bucket_start(frame.t)
    pending = state.pending_bucket or {}
    totals = result.totals
    increment = {
        "location": {
            "consumption_wh": totals.consumption_wh,
            "solar_wh": totals.solar_production_wh,
            "grid_import_wh": totals.grid_import_wh,
            "grid_export_wh": totals.grid_export_wh,
            "battery_charge_wh": totals.battery_charge_wh,
            "battery_discharge_wh": totals.battery_discharge_wh,
            "self_consumption_wh": totals.self_consumption_wh,
            "self_supplied_wh": totals.self_supplied_wh,
            "seconds": frame.duration_s,
        },
        "loads": {load.name: [load.energy_import_wh, load.energy_export_wh] for load in result.loads},
        "inputs": pulses,
    }
    if pending and pending.get("start") == start:
        _merge(pending, increment)
    elif not pending or start > pending["start"]:
        if pending:
            write_bucket(setup, pending)
        pending = {"start": start, "written_at": frame.t, **increment}
    else:
        write_bucket(setup, {"start": start, **increment})  # a late frame for an older bucket
    if pending and frame.t - pending.get("written_at", frame.t) >= FLUSH_EVERY_S:
        write_bucket(setup, pending)
        pending = {"start": pending["start"], "written_at": frame.t, "location": {}, "loads": {}, "inputs": {}}
    state.pending_bucket = pending


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra["location"].items():
        into["location"][key] = into["location"].get(key, 0.0) + value
    for name, (imp, exp) in extra["loads"].items():
        pair = into["loads"].setdefault(name, [0.0, 0.0])
        pair[0] += imp
        pair[1] += exp
    for ref, count in extra["inputs"].items():
        total = into["inputs"].get(ref, 0) + count
        if total > MAX_STORED_COUNT:  # only a count stored by an older version can be this big
            log.warning(
                "input %s: pending count %s cannot be stored; keeping this frame's %s", ref, total - count, count
            )
            total = count
        into["inputs"][ref] = total


def write_bucket(setup: Installed, bucket: dict) -> None:
    """Add a bucket's energy to the 5-minute tables: one adding upsert per table; then set the
    location's hour, day and month rollups containing it (:mod:`metering.rollups`).

    ``INSERT … ON CONFLICT … DO UPDATE SET x = x + excluded.x`` is the same SQL on SQLite
    (3.24+) and PostgreSQL, and adds atomically even with several ingest processes. The
    rollups are recomputed under a per-location lock taken first, in the caller's transaction.
    """
    start = datetime.fromtimestamp(bucket["start"], tz=UTC)
    start_db = connection.ops.adapt_datetimefield_value(start)
    location_flows = {k: v for k, v in bucket.get("location", {}).items() if v}
    if location_flows:
        rollups.lock(setup.location_id)
    with connection.cursor() as cursor:
        if location_flows:
            _upsert(
                cursor,
                LocationEnergy,
                ("location_id", "start"),
                list(location_flows),
                [(setup.location_id, start_db, *location_flows.values())],
            )
        load_rows = [
            (setup.load_ids[name], start_db, imp, exp)
            for name, (imp, exp) in bucket.get("loads", {}).items()
            if name in setup.load_ids
        ]
        if load_rows:
            _upsert(cursor, LoadEnergy, ("load_id", "start"), ["import_wh", "export_wh"], load_rows)
        input_rows = []
        for ref, count in bucket.get("inputs", {}).items():
            if ref not in setup.inputs or not count:
                continue
            if not 0 < count <= MAX_STORED_COUNT:  # never let one input's count fail every later frame
                log.warning("input %s: count %s for %s cannot be stored; dropped", ref, count, start.isoformat())
                continue
            input_rows.append((setup.inputs[ref].pk, start_db, count))
        if input_rows:
            _upsert(cursor, InputCount, ("input_id", "start"), ["pulses"], input_rows)
    if location_flows:
        rollups.update_after_write(setup.location_id, ZoneInfo(setup.timezone), [start])


def _upsert(cursor, model, keys: tuple[str, str], adds: list[str], rows: list[tuple]) -> None:
    table = connection.ops.quote_name(model._meta.db_table)
    q = connection.ops.quote_name
    columns = [*keys, *adds]
    # Columns not given take their model default (NOT NULL columns have no SQL default).
    default_fields = [
        f for f in model._meta.concrete_fields if f.column not in columns and not f.primary_key and f.has_default()
    ]
    defaults = [f.column for f in default_fields]
    all_columns = ", ".join(q(c) for c in [*columns, *defaults])
    placeholders = ", ".join(["%s"] * (len(columns) + len(defaults)))
    updates = ", ".join(f"{q(c)} = {table}.{q(c)} + excluded.{q(c)}" for c in adds)
    sql = f"INSERT INTO {table} ({all_columns}) VALUES ({placeholders}) ON CONFLICT ({q(keys[0])}, {q(keys[1])}) DO UPDATE SET {updates}"
    default_values = tuple(f.get_default() for f in default_fields)
    cursor.executemany(sql, [(*row, *default_values) for row in rows])

"""Sample frames (SPEC 5.2): decoding and strict validation, JSON and the compact binary encoding.

A Power Box sends its instantaneous voltage and current samples in *frames*: one frame holds
``n`` samples of every channel, taken at ``fs`` samples per second, the first at Unix time
``t``. This module turns the bytes of a frame -- a JSON document (HTTP ingest, WebSocket text
messages, MQTT) or the compact binary encoding (WebSocket binary messages) -- into a
:class:`SampleFrame` of float64 arrays, or refuses them with a :class:`FrameError` that names
the problem and the JSON path of the offending field.

Two kinds of refusal, told apart by ``status`` (the HTTP status a transport answers with):
a :class:`FrameError` (``status`` 400) is input that breaks the format -- malformed JSON, a
missing field, a value outside its documented range; a :class:`FrameRefused` (a
``FrameError`` subclass, ``status`` 422) is a frame that is well formed in every other
respect but whose ``t`` the server will not accept: before 2020, or further ahead of the
server's clock than :data:`MAX_CLOCK_AHEAD_S`. The clock rules are checked last, so a
``FrameRefused`` always means "only the device's clock is wrong".

The module imports numpy and orjson only, never Django, so the metering core, the simulator
and the benchmarks can use it outside a Django process. ``docs/frames.md`` documents the
formats, every rule, the limits and the measured timings.
"""

from __future__ import annotations

import array
import math
import numbers
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

__all__ = [
    "BINARY_MAGIC",
    "EARLIEST_T",
    "MAX_CLOCK_AHEAD_S",
    "MAX_COUNTER",
    "FS_RANGE_HZ",
    "MAX_CHANNELS",
    "MAX_FRAMES_PER_BODY",
    "MAX_FRAME_BYTES",
    "MAX_INPUTS",
    "MAX_SAMPLES_PER_CHANNEL",
    "SUPPORTED_VERSIONS",
    "FrameError",
    "FrameRefused",
    "FrameTooLarge",
    "FrameRefused",
    "FrameTooLarge",
    "InputReading",
    "SampleFrame",
    "decode_binary",
    "encode_binary",
    "frame_from_dict",
    "frames_from_dicts",
    "frame_to_dict",
    "parse_frames",
    "parse_json",
]

#: Samples per channel in one frame: 10.24 s at 6,400 Hz, 1.31 s at the top rate of 50 kHz.
MAX_SAMPLES_PER_CHANNEL = 65_536
#: L1, L2, L3 plus 7 CT Hubs of 4 inputs each (the most a Power Box takes on bus A).
MAX_CHANNELS = 3 + 7 * 4
#: 10 Input modules (the most a Genius gateway takes on bus B) of 4 inputs each.
MAX_INPUTS = 10 * 4
#: Largest JSON body (one frame or a list) or binary frame. The reference frame (31 channels,
#: 1 s at 6,400 Hz) is about 1.6 MB as JSON and 400 kB in binary; the largest valid binary
#: frame (31 x 65,536 samples) is just over 4 MiB.
MAX_FRAME_BYTES = 8 * 1024 * 1024
#: Most frames in one JSON list.
MAX_FRAMES_PER_BODY = 64
#: Accepted sampling rates, inclusive.
FS_RANGE_HZ = (1_000.0, 50_000.0)
#: Frame versions (``"v"``) this server speaks.
SUPPORTED_VERSIONS = (1,)
#: First four bytes of a binary frame.
BINARY_MAGIC = b"IFB1"
#: ``seq`` and input ``pulses`` are below this: integers a JSON number (an IEEE double, as
#: in JavaScript and many device JSON encoders) holds exactly, and far inside the signed
#: 64 bits of the database columns.
MAX_COUNTER = 2**53
#: Earliest accepted ``t``: 2020-01-01T00:00:00Z. Earlier is a device clock that was never set.
EARLIEST_T = 1_577_836_800.0
#: How far (s) a frame's ``t`` may be ahead of the server's clock: room for a gateway clock
#: without NTP drifting for weeks, while a clock that is hours or years off is refused.
MAX_CLOCK_AHEAD_S = 300.0

VOLTAGE_CHANNELS = ("L1", "L2", "L3")
MAX_SERIAL_CHARS = 64

_REQUIRED_FIELDS = ("v", "powerbox", "seq", "t", "fs", "voltages", "currents")
_KNOWN_FIELDS = frozenset(_REQUIRED_FIELDS) | {"inputs"}
# A module serial: 1-64 printable ASCII characters, no space and no "/" (it separates the input).
_SERIAL = rf"[!-.0-~]{{1,{MAX_SERIAL_CHARS}}}"
_SERIAL_RE = re.compile(_SERIAL)
_CT_KEY_RE = re.compile(_SERIAL + r"/[A-D]")  # CT Hub inputs A-D, Solid Core 3-Phase CT A-C
_INPUT_KEY_RE = re.compile(_SERIAL + r"/[1-4]")  # Input module inputs 1-4

# Binary layout, little-endian; see docs/frames.md.
_HEADER = struct.Struct("<4sBBBBHIQdd")  # magic, v, flags, n_volt, n_curr, n_inputs, n, seq, t, fs
_CHANNEL_SCALING = struct.Struct("<dd")  # scale, offset: value = offset + scale * count
_INPUT_READING = struct.Struct("<BQ")  # state, pulses
_COUNT_MAX = 32_767


class FrameError(ValueError):
    """A frame that cannot be accepted.

    ``message`` says what is wrong in words a device developer can act on; ``field`` is the
    JSON path of the offending value (``"seq"``, ``"voltages.L2"``,
    ``"inputs.INP-0001/1.pulses"``, ``"[3]"`` for the fourth frame of a list), or ``None``
    when the problem is the body as a whole.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message

    #: The HTTP status for this refusal: 400, the input breaks the format.
    status = 400

    def as_dict(self) -> dict[str, str | None]:
        """The error as a JSON-able response body: ``{"error": message, "field": field}``."""
        return {"error": self.message, "field": self.field}


class FrameRefused(FrameError):
    """A well-formed frame whose ``t`` the server refuses: before :data:`EARLIEST_T` or more
    than :data:`MAX_CLOCK_AHEAD_S` ahead of the server's clock (HTTP 422).

    Raised only after every format rule has passed, so the device's data is fine and its
    clock is not. ``field`` is ``"t"`` (``"[i].t"`` in a list).
    """

    status = 422


class FrameTooLarge(FrameError):
    """A body or binary frame over :data:`MAX_FRAME_BYTES` (HTTP 413)."""

    status = 413


@dataclass(frozen=True)
class InputReading:
    """One digital input of an Input module: its state (0 low, 1 high) and cumulative pulses."""

    state: int
    pulses: int


@dataclass(eq=False)
class SampleFrame:
    """A validated frame: every channel is a float64 1-D array of the same length.

    Voltages are keyed ``"L1"``..``"L3"`` (volts, against the reference terminal), currents by
    CT reference ``"<module serial>/<letter>"`` (amps), inputs by ``"<module serial>/<number>"``.
    The arrays that :func:`frame_from_dict` and :func:`decode_binary` produce are read-only
    rows of one block. Two frames are equal when every field and every sample is equal.
    """

    version: int
    powerbox: str
    seq: int
    t: float
    fs_hz: float
    voltages: dict[str, np.ndarray]
    currents: dict[str, np.ndarray]
    inputs: dict[str, InputReading] = field(default_factory=dict)
    # The decoded (channels, samples) block behind ``voltages`` then ``currents``, in key
    # order, read-only; None for a frame built by hand. Lets the core read it without copying.
    block: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_samples(self) -> int:
        """Samples per channel."""
        return int(next(iter(self.voltages.values())).shape[0])

    @property
    def duration_s(self) -> float:
        """Time the frame covers, ``n_samples / fs_hz``."""
        return self.n_samples / self.fs_hz

    @property
    def end_t(self) -> float:
        """Unix time just after the last sample: the ``t`` of the next contiguous frame."""
        return self.t + self.duration_s

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleFrame):
            return NotImplemented
        return (
            (self.version, self.powerbox, self.seq, self.t, self.fs_hz, self.inputs)
            == (other.version, other.powerbox, other.seq, other.t, other.fs_hz, other.inputs)
            and _channels_equal(self.voltages, other.voltages)
            and _channels_equal(self.currents, other.currents)
        )


def _channels_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------- JSON


def parse_json(body: bytes | bytearray | memoryview | str) -> list[dict[str, Any]]:
    """Decode a JSON body holding one frame object or a list of them.

    Returns the frame objects, not yet validated (see :func:`frame_from_dict`), in body order.

    Raises
    ------
    FrameError
        The body is over :data:`MAX_FRAME_BYTES`, is not JSON (orjson's message with line
        and column), is neither an object nor a list, or is a list that is empty, longer
        than :data:`MAX_FRAMES_PER_BODY` or holds something other than an object (field
        ``"[i]"``).
    """
    return _parse_json(body)[0]


def parse_frames(body: bytes | bytearray | memoryview | str, *, now: float | None = None) -> list[SampleFrame]:
    """Decode and validate a JSON body of one frame or a list of frames, all or nothing.

    :func:`parse_json` followed by :func:`frame_from_dict` on each frame, all against the
    same ``now`` (the server's Unix time, ``time.time()`` when ``None``). When the body is a
    list, an error in a frame has its message and ``field`` prefixed with the frame's index:
    ``"frame [2]: ..."``, ``"[2].seq"``; it keeps its class (:class:`FrameRefused` stays one).
    """
    docs, is_list = _parse_json(body)
    return frames_from_dicts(docs, listed=is_list, now=now)


def frames_from_dicts(docs: list[dict[str, Any]], *, listed: bool, now: float | None = None) -> list[SampleFrame]:
    """:func:`frame_from_dict` on each of ``docs``, all against the same ``now``; with
    ``listed`` (they came as a JSON list) an error names the frame's index, as in
    :func:`parse_frames`."""
    now = time.time() if now is None else now
    if not listed:
        return [frame_from_dict(doc, now=now) for doc in docs]
    frames = []
    for i, doc in enumerate(docs):
        try:
            frames.append(frame_from_dict(doc, now=now))
        except FrameError as exc:
            path = f"[{i}]" if exc.field is None else f"[{i}].{exc.field}"
            raise type(exc)(f"frame [{i}]: {exc.message}", path) from None
    return frames


def _parse_json(body: bytes | bytearray | memoryview | str) -> tuple[list[dict[str, Any]], bool]:
    """The frame objects of a JSON body, and whether the body was a list."""
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FrameError(f"malformed JSON: {exc.reason} at character {exc.start}") from None
    size = body.nbytes if isinstance(body, memoryview) else len(body)
    if size > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame too large: {size} bytes, limit {MAX_FRAME_BYTES}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"malformed JSON: {exc}") from None
    if isinstance(doc, dict):
        return [doc], False
    if not isinstance(doc, list):
        raise FrameError(f"expected a frame object or a list of frames, got {_json_type(doc)}")
    if not doc:
        raise FrameError("empty list of frames")
    if len(doc) > MAX_FRAMES_PER_BODY:
        raise FrameError(f"too many frames in one body: {len(doc)}, limit {MAX_FRAMES_PER_BODY}")
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise FrameError(f"frame [{i}] is not an object but {_json_type(item)}", f"[{i}]")
    return doc, True


def frame_from_dict(doc: dict[str, Any], *, now: float | None = None) -> SampleFrame:
    """Validate a decoded JSON frame and convert its sample lists to float64 arrays.

    Every rule of ``docs/frames.md`` is checked, cheapest first; the first broken one raises.
    Each channel is converted in one C-level pass, all channels land in one
    ``(channels, samples)`` block, and finiteness is checked once over the block. Then ``t``
    is checked against the clock: ``now`` is the server's Unix time (``time.time()`` when
    ``None``).

    Raises
    ------
    FrameError
        With ``field`` the JSON path of the offending value.
    FrameRefused
        The frame is well formed but its ``t`` is before 2020 or too far in the future.
    """
    if not isinstance(doc, dict):
        raise FrameError(f"frame is not an object but {_json_type(doc)}")
    if "v" not in doc:
        raise FrameError("missing required field 'v'", "v")
    version = _check_version(doc["v"])
    for key in doc:
        if key not in _KNOWN_FIELDS:
            raise FrameError(f"unknown field {key!r}", str(key))
    for key in _REQUIRED_FIELDS:
        if key not in doc:
            raise FrameError(f"missing required field {key!r}", key)
    powerbox = _check_powerbox(doc["powerbox"])
    seq = _check_seq(doc["seq"])
    t = _check_t(doc["t"])
    fs_hz = _check_fs(doc["fs"])

    voltages, currents = doc["voltages"], doc["currents"]
    if not isinstance(voltages, dict):
        raise FrameError(f"voltages must be an object, got {_json_type(voltages)}", "voltages")
    if not isinstance(currents, dict):
        raise FrameError(f"currents must be an object, got {_json_type(currents)}", "currents")
    names = _check_channel_names(list(voltages), list(currents))
    lists = [voltages[name] for name in voltages] + [currents[name] for name in currents]
    n_samples = _check_sample_lists(names, lists)
    inputs = _check_inputs(doc.get("inputs", {}))

    block = np.empty((len(lists), n_samples), dtype=np.float64)
    for row, (name, samples) in enumerate(zip(names, lists)):
        try:
            # array.array refuses str, None and containers (np.asarray would parse "1.5" and
            # turn null into NaN); bools pass as ints and are caught just below.
            block[row] = array.array("d", samples)
        except (TypeError, OverflowError):
            _raise_not_a_number(name, samples)
    _check_no_bools(block, names, lists)
    frame = _assemble(version, powerbox, seq, t, fs_hz, names, len(voltages), block, inputs)
    _check_clock(t, now)
    return frame


def frame_to_dict(frame: SampleFrame) -> dict[str, Any]:
    """The frame as a JSON-able dict (lists of floats), the inverse of :func:`frame_from_dict`."""
    return {
        "v": frame.version,
        "powerbox": frame.powerbox,
        "seq": frame.seq,
        "t": frame.t,
        "fs": frame.fs_hz,
        "voltages": {name: samples.tolist() for name, samples in frame.voltages.items()},
        "currents": {name: samples.tolist() for name, samples in frame.currents.items()},
        "inputs": {name: {"state": reading.state, "pulses": reading.pulses} for name, reading in frame.inputs.items()},
    }


# ------------------------------------------------------------------------------------- binary


def encode_binary(frame: SampleFrame) -> bytes:
    """Encode a frame in the compact binary format (docs/frames.md, little-endian).

    Each channel is quantised to int16 counts with ``offset = (max + min) / 2`` and
    ``scale = (max - min) / 2 / 32767`` (``scale = 1`` for a constant channel, which is then
    exact), so a decoded sample is off by at most half a count: ``scale / 2``, 0.0015 % of
    the channel's half peak-to-peak range.

    Raises
    ------
    FrameError
        The frame cannot be encoded: channels of unequal length, non-finite samples, a name
        over 255 UTF-8 bytes, a count or integer outside its binary field.
    """
    names = [*frame.voltages, *frame.currents]
    try:
        block = np.array([*frame.voltages.values(), *frame.currents.values()], dtype=np.float64)
    except ValueError:
        raise FrameError("cannot encode: channels differ in length") from None
    if block.ndim != 2 or block.shape[1] == 0:
        raise FrameError("cannot encode: channels must be non-empty 1-D arrays")
    if not np.isfinite(block).all():
        raise FrameError("cannot encode: samples must be finite")
    high, low = block.max(axis=1), block.min(axis=1)
    offset = (high + low) / 2
    half_range = (high - low) / 2
    scale = np.where(half_range > 0, half_range / _COUNT_MAX, 1.0)
    counts = np.rint((block - offset[:, None]) / scale[:, None])
    np.clip(counts, -_COUNT_MAX, _COUNT_MAX, out=counts)

    try:
        parts = [
            _HEADER.pack(
                BINARY_MAGIC,
                frame.version,
                0,
                len(frame.voltages),
                len(frame.currents),
                len(frame.inputs),
                block.shape[1],
                frame.seq,
                frame.t,
                frame.fs_hz,
            ),
            _pack_name(frame.powerbox),
        ]
        for name, channel_scale, channel_offset in zip(names, scale.tolist(), offset.tolist()):
            parts += [_pack_name(name), _CHANNEL_SCALING.pack(channel_scale, channel_offset)]
        for name, reading in frame.inputs.items():
            parts += [_pack_name(name), _INPUT_READING.pack(reading.state, reading.pulses)]
    except struct.error as exc:
        raise FrameError(f"cannot encode: {exc}") from None
    parts.append(counts.astype("<i2").tobytes())
    return b"".join(parts)


def decode_binary(data: bytes | bytearray | memoryview, *, now: float | None = None) -> SampleFrame:
    """Decode and validate a binary frame (docs/frames.md).

    The header is read field by field with bounds checks, the samples in one
    ``np.frombuffer`` and scaled per channel to float64; then the same rules as for JSON
    apply, the clock rules last against ``now`` (``time.time()`` when ``None``). Any
    malformed buffer -- truncated, bad magic, garbled -- raises :class:`FrameError`, never
    another exception; a well-formed frame with a wrong clock raises :class:`FrameRefused`.
    """
    data = bytes(data)
    try:
        frame = _decode_binary(data)
    except FrameError:
        raise
    except (struct.error, UnicodeDecodeError, IndexError, ValueError, OverflowError) as exc:
        raise FrameError(f"binary frame garbled: {exc}") from None
    _check_clock(frame.t, now)
    return frame


def _decode_binary(data: bytes) -> SampleFrame:
    size = len(data)
    if size > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame too large: {size} bytes, limit {MAX_FRAME_BYTES}")
    if data[:4] != BINARY_MAGIC[:size]:
        raise FrameError("not a binary frame: bad magic")
    reader = _Reader(data)
    _magic, version, flags, n_voltages, n_currents, n_inputs, n_samples, seq, t, fs_hz = reader.unpack(_HEADER)
    version = _check_version(version)
    if flags != 0:
        raise FrameError(f"unsupported binary frame flags 0x{flags:02x}; expected 0", "flags")
    powerbox = _check_powerbox(reader.name("powerbox"))
    seq, t, fs_hz = _check_seq(seq), _check_t(t), _check_fs(fs_hz)
    n_channels = n_voltages + n_currents
    if n_channels > MAX_CHANNELS:
        raise FrameError(f"too many channels: {n_channels}, limit {MAX_CHANNELS}", "currents")
    if n_inputs > MAX_INPUTS:
        raise FrameError(f"too many inputs: {n_inputs}, limit {MAX_INPUTS}", "inputs")

    names, scaling = [], []
    for i in range(n_channels):
        names.append(reader.name(f"channel #{i}"))
        scaling.append(reader.unpack(_CHANNEL_SCALING))
    names = _check_channel_names(names[:n_voltages], names[n_voltages:])
    for name, (scale, offset) in zip(names, scaling):
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
            raise FrameError(
                f"{name} has scale {scale!r} and offset {offset!r}; the scale must be finite "
                "and positive, the offset finite",
                name,
            )
    if n_samples == 0:
        raise FrameError(f"{names[0]} is empty", names[0])
    if n_samples > MAX_SAMPLES_PER_CHANNEL:
        raise FrameError(f"{names[0]} has {n_samples} samples, limit {MAX_SAMPLES_PER_CHANNEL}", names[0])

    inputs_doc: dict[str, dict[str, int]] = {}
    for i in range(n_inputs):
        name = reader.name(f"input #{i}")
        state, pulses = reader.unpack(_INPUT_READING)
        if name in inputs_doc:
            raise FrameError(f"duplicate input {name!r}", f"inputs.{name}")
        inputs_doc[name] = {"state": state, "pulses": pulses}
    inputs = _check_inputs(inputs_doc)

    expected = reader.pos + 2 * n_channels * n_samples
    if size < expected:
        raise FrameError(f"binary frame truncated: expected {expected} bytes, got {size}")
    if size > expected:
        raise FrameError(f"binary frame has {size - expected} trailing bytes after {expected}")
    counts = np.frombuffer(data, dtype="<i2", offset=reader.pos).reshape(n_channels, n_samples)
    scale, offset = np.array(scaling, dtype=np.float64).T
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported as not finite
        block = counts * scale[:, None]
        block += offset[:, None]
    return _assemble(version, powerbox, seq, t, fs_hz, names, n_voltages, block, inputs)


class _Reader:
    """A bounds-checked cursor over a binary frame."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise FrameError(f"binary frame truncated: expected at least {self.pos + n} bytes, got {len(self.data)}")

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        self.need(layout.size)
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def name(self, what: str) -> str:
        (length,) = self.unpack(_U8)
        self.need(length)
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(f"binary frame: the name of {what} is not UTF-8") from None


_U8 = struct.Struct("<B")


def _pack_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > 255:
        raise FrameError(f"cannot encode: name {name[:20]!r}... is over 255 bytes")
    return bytes((len(raw),)) + raw


# --------------------------------------------------------------------------------- validation


def _json_type(value: object) -> str:
    """What a value is called in JSON, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Integral):
        return "an integer"
    if isinstance(value, numbers.Real):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_version(value: object) -> int:
    if not _is_int(value):
        raise FrameError(f"v must be an integer, got {_json_type(value)}", "v")
    if value not in SUPPORTED_VERSIONS:
        speaks = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise FrameError(f"unsupported frame version {value}; this server speaks {speaks}", "v")
    return int(value)


def _check_powerbox(value: object) -> str:
    if not isinstance(value, str):
        raise FrameError(f"powerbox must be a string, got {_json_type(value)}", "powerbox")
    if not 1 <= len(value) <= MAX_SERIAL_CHARS:
        raise FrameError(
            f"powerbox must be 1 to {MAX_SERIAL_CHARS} characters long, got {len(value)}",
            "powerbox",
        )
    if not _SERIAL_RE.fullmatch(value):
        raise FrameError(
            f"powerbox {value!r} is not a serial: printable ASCII without spaces or '/'",
            "powerbox",
        )
    return value


def _check_seq(value: object) -> int:
    if not _is_int(value) or not 0 <= value < MAX_COUNTER:
        shown = _json_type(value) if not _is_int(value) else value
        raise FrameError(f"seq must be a non-negative integer below 2**53, got {shown}", "seq")
    return int(value)


def _check_t(value: object) -> float:
    """The format rules of ``t``; the clock rules are :func:`_check_clock`."""
    if not _is_number(value):
        raise FrameError(f"t must be a number of seconds, got {_json_type(value)}", "t")
    try:
        t = float(value)
    except OverflowError:
        raise FrameError("t is out of range for a float", "t") from None
    if not math.isfinite(t):
        raise FrameError(f"t must be finite, got {t!r}", "t")
    return t


def _check_clock(t: float, now: float | None) -> None:
    """Refuse a ``t`` before 2020 or more than :data:`MAX_CLOCK_AHEAD_S` ahead of ``now``."""
    if t < EARLIEST_T:
        raise FrameRefused(
            f"t {t!r} is before 2020-01-01T00:00:00Z ({EARLIEST_T:.0f}); check the device's clock",
            "t",
        )
    now = time.time() if now is None else now
    if t > now + MAX_CLOCK_AHEAD_S:
        raise FrameRefused(
            f"t {t!r} is more than {MAX_CLOCK_AHEAD_S:.0f} s ahead of the server's clock ({now:.3f}); "
            "check the device's clock",
            "t",
        )


def _check_fs(value: object) -> float:
    if not _is_number(value):
        raise FrameError(f"fs must be a number of samples per second, got {_json_type(value)}", "fs")
    fs_hz = float(value)
    low, high = FS_RANGE_HZ
    if not low <= fs_hz <= high:  # also refuses NaN
        raise FrameError(f"fs must be between {low:g} and {high:g} Hz, got {fs_hz!r}", "fs")
    return fs_hz


def _check_channel_names(voltages: list[Any], currents: list[Any]) -> list[str]:
    """Check channel names and counts; return their JSON paths, voltages first."""
    if not voltages:
        raise FrameError("voltages must hold at least one channel (L1, L2 or L3)", "voltages")
    paths = []
    seen = set()
    for name in voltages:
        path = f"voltages.{name}"
        if name not in VOLTAGE_CHANNELS:
            raise FrameError(f"unknown voltage channel {name!r}; expected L1, L2 or L3", path)
        if name in seen:
            raise FrameError(f"duplicate channel {name!r}", path)
        seen.add(name)
        paths.append(path)
    total = len(voltages) + len(currents)
    if total > MAX_CHANNELS:
        raise FrameError(f"too many channels: {total}, limit {MAX_CHANNELS} (3 voltages + 28 CTs)", "currents")
    for name in currents:
        path = f"currents.{name}"
        if not isinstance(name, str) or not _CT_KEY_RE.fullmatch(name):
            raise FrameError(f"bad CT channel name {name!r}; expected '<module serial>/<input A-D>'", path)
        if name in seen:
            raise FrameError(f"duplicate channel {name!r}", path)
        seen.add(name)
        paths.append(path)
    return paths


def _check_sample_lists(paths: list[str], lists: list[Any]) -> int:
    """Check that every channel is a non-empty list, all of one length; return the length."""
    n_samples = -1
    for path, samples in zip(paths, lists):
        if not isinstance(samples, list):
            raise FrameError(f"{path} must be an array of numbers, got {_json_type(samples)}", path)
        if not samples:
            raise FrameError(f"{path} is empty", path)
        if len(samples) > MAX_SAMPLES_PER_CHANNEL:
            raise FrameError(f"{path} has {len(samples)} samples, limit {MAX_SAMPLES_PER_CHANNEL}", path)
        if n_samples < 0:
            n_samples, first = len(samples), path
        elif len(samples) != n_samples:
            raise FrameError(
                f"{path} has {len(samples)} samples but {first} has {n_samples}; "
                "all channels must have the same length",
                path,
            )
    return n_samples


def _raise_not_a_number(path: str, samples: list[Any]) -> None:
    """Name the first element of a channel that is not a (representable) number."""
    for i, value in enumerate(samples):
        if not _is_number(value):
            raise FrameError(f"{path}[{i}] is not a number but {_json_type(value)}", path)
        try:
            float(value)
        except OverflowError:
            raise FrameError(f"{path}[{i}] is out of range for a float", path) from None
    raise FrameError(f"{path} must be an array of numbers", path)  # pragma: no cover


def _check_no_bools(block: np.ndarray, paths: list[str], lists: list[list[Any]]) -> None:
    """Refuse ``true``/``false`` samples, which ``array.array`` took as 1.0 and 0.0.

    Only the channels holding an exact 0.0 or 1.0 can hold one. A channel with a few such
    values has them checked one by one, a channel with many (an idle CT reading exact zeros)
    in one C-level pass over the element types.
    """
    rows, cols = np.nonzero((block == 0.0) | (block == 1.0))
    if rows.size == 0:
        return
    for row in np.unique(rows).tolist():
        samples = lists[row]
        candidates = cols[rows == row]
        if candidates.size <= 64:
            if not any(samples[i].__class__ is bool for i in candidates.tolist()):
                continue
        elif bool not in set(map(type, samples)):
            continue
        first = next(i for i, value in enumerate(samples) if isinstance(value, bool))
        raise FrameError(f"{paths[row]}[{first}] is not a number but a boolean", paths[row])


def _check_inputs(inputs: object) -> dict[str, InputReading]:
    if not isinstance(inputs, dict):
        raise FrameError(f"inputs must be an object, got {_json_type(inputs)}", "inputs")
    if len(inputs) > MAX_INPUTS:
        raise FrameError(f"too many inputs: {len(inputs)}, limit {MAX_INPUTS}", "inputs")
    readings = {}
    for name, reading in inputs.items():
        path = f"inputs.{name}"
        if not isinstance(name, str) or not _INPUT_KEY_RE.fullmatch(name):
            raise FrameError(f"bad input name {name!r}; expected '<module serial>/<input 1-4>'", path)
        if not isinstance(reading, dict):
            raise FrameError(
                f"{path} must be an object with state and pulses, got {_json_type(reading)}",
                path,
            )
        for key in reading:
            if key not in ("state", "pulses"):
                raise FrameError(f"unknown field {key!r} in {path}", f"{path}.{key}")
        for key in ("state", "pulses"):
            if key not in reading:
                raise FrameError(f"missing required field {key!r} in {path}", f"{path}.{key}")
        state, pulses = reading["state"], reading["pulses"]
        if not _is_int(state) or state not in (0, 1):
            shown = state if _is_int(state) else _json_type(state)
            raise FrameError(f"{path}.state must be 0 or 1, got {shown}", f"{path}.state")
        if not _is_int(pulses) or not 0 <= pulses < MAX_COUNTER:
            shown = pulses if _is_int(pulses) else _json_type(pulses)
            raise FrameError(
                f"{path}.pulses must be a non-negative integer below 2**53, got {shown}",
                f"{path}.pulses",
            )
        readings[name] = InputReading(state=int(state), pulses=int(pulses))
    return readings


def _assemble(
    version: int,
    powerbox: str,
    seq: int,
    t: float,
    fs_hz: float,
    paths: list[str],
    n_voltages: int,
    block: np.ndarray,
    inputs: dict[str, InputReading],
) -> SampleFrame:
    """Check the ``(channels, samples)`` block is finite and split it into a frame."""
    finite = np.isfinite(block)
    if not finite.all():
        row, col = np.argwhere(~finite)[0].tolist()
        raise FrameError(f"{paths[row]}[{col}] is not finite ({float(block[row, col])!r})", paths[row])
    block.flags.writeable = False
    channels = [(path.split(".", 1)[1], samples) for path, samples in zip(paths, block)]
    return SampleFrame(
        version=version,
        powerbox=powerbox,
        seq=seq,
        t=t,
        fs_hz=fs_hz,
        voltages=dict(channels[:n_voltages]),
        currents=dict(channels[n_voltages:]),
        inputs=inputs,
        block=block,
    )

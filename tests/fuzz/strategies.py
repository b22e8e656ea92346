"""Hostile inputs for the fuzz tests: JSON and binary sample frames, and installation files.

A frame strategy draws a :class:`Case`: the bytes to send, what was done to a valid frame to get
them, and whether the server *must* refuse them (``True``) or may accept them (``None``: a valid
frame, or one only the metering core can judge, e.g. a sample of 1e300 V). The frames fit the
test house of ``tests.factories.make_location`` (serial prefix ``T``); ``O`` is the house next
door, whose hardware the ``T`` gateway must not report.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from hypothesis import strategies as st

from metering.ingest.frames import encode_binary, frame_from_dict

FS_HZ = 6400.0
N_SAMPLES = 320  # 50 ms: two and a half cycles of 50 Hz, small enough for hundreds of examples
T0 = float(int(time.time()) - 3600)  # an hour ago: within every bound on t
T_MIN = 1_577_836_800.0  # 2020-01-01T00:00:00Z, the earliest t the server takes
SEQ_LIMIT = PULSES_LIMIT = 2**53  # docs/frames.md, MAX_COUNTER
FAR_AHEAD_S = 3600.0  # well beyond the 300 s a device clock may run ahead of the server's
CT_REFS = ("CTH-T/A", "CTH-T/B", "CTH-T/C", "CTH-T/D")
VOLTAGES = ("L1", "L2", "L3")
INPUT_REFS = ("INP-T/1", "INP-T/2")  # Gas (pulses) and Front door (status)

# --- JSON text that Python values cannot express: orjson writes NaN as null and refuses ints
# beyond 64 bits, so these go into a body as placeholders replaced after dumping.
RAW_JSON = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "18446744073709551616",
    "123456789012345678901234567890",
    "-9223372036854775809",
    "[" * 300 + "]" * 300,
    "[" * 5000 + "]" * 5000,
)


class Malformed:
    """What a raw JSON text parses to when orjson refuses it."""

    def __repr__(self) -> str:
        return "<malformed>"


MALFORMED = Malformed()


def _parse_raw(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return MALFORMED


RAW_VALUES = {f"@@raw:{i}@@": _parse_raw(text) for i, text in enumerate(RAW_JSON)}


def raw(text: str) -> str:
    return f"@@raw:{RAW_JSON.index(text)}@@"


def dumps(doc: Any) -> bytes:
    """JSON bytes of ``doc`` with the raw placeholders replaced by their text."""
    body = orjson.dumps(doc)
    if b"@@raw:" in body:
        for i, text in enumerate(RAW_JSON):
            body = body.replace(f'"@@raw:{i}@@"'.encode(), text.encode())
    return body


def parsed(value: Any) -> Any:
    """What the server sees for ``value`` once the body is parsed."""
    return RAW_VALUES.get(value, value) if isinstance(value, str) else value


# Every kind of wrong: types, sizes, signs, non-finite numbers, long strings, containers.
HOSTILE = (
    None, True, False, 0, 1, -1, 2, 0.5, -0.0, 1e300, -1e300, 5e-324, 1.7976931348623157e308,
    2**31, 2**32, 2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63),
    "", "1", "1.5", "NaN", "PB-T", "x" * 3000, "é\x00/ \u2028", [], [1, 2], [[1.0]], [None], {},
    {"state": 0, "pulses": 1}, {"a": {"b": [1, {"c": None}]}},
    *(raw(text) for text in RAW_JSON),
)  # fmt: skip
hostile = st.sampled_from(HOSTILE)


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_sample(x: Any) -> bool:
    """A value every validation rule takes as a sample (the core may still refuse it)."""
    if not is_number(x):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


# --- what a field's value makes of a frame: True must be refused, None may be accepted


def seq_verdict(x: Any) -> bool | None:
    return None if is_int(x) and 0 <= x < SEQ_LIMIT else True


def t_verdict(x: Any) -> bool | None:
    if not is_number(x) or not math.isfinite(x) or x < T_MIN or x > time.time() + FAR_AHEAD_S:
        return True
    return None


def fs_verdict(x: Any) -> bool | None:
    return None if is_number(x) and 1000 <= x <= 50_000 else True


def reading_verdict(reading: Any) -> bool | None:
    if not isinstance(reading, dict) or set(reading) != {"state", "pulses"}:
        return True
    state, pulses = parsed(reading["state"]), parsed(reading["pulses"])
    if not (is_int(state) and state in (0, 1) and is_int(pulses) and 0 <= pulses < PULSES_LIMIT):
        return True
    return None


FIELD_VERDICTS = {
    "v": lambda x: None if is_int(x) and x == 1 else True,
    "powerbox": lambda x: None if x == "PB-T" else True,
    "seq": seq_verdict,
    "t": t_verdict,
    "fs": fs_verdict,
    "voltages": lambda x: True,
    "currents": lambda x: None if x == {} else True,
    "inputs": lambda x: None if x == {} else True,
}


def worst(verdicts) -> bool | None:
    return True if any(v is True for v in verdicts) else None


class Case:
    """A body to send, how it was made, and whether it must be refused."""

    def __init__(self, body: bytes, how: str, must_refuse: bool | None) -> None:
        self.body, self.how, self.must_refuse = body, how, must_refuse

    def __repr__(self) -> str:
        shown = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return f"Case(how={self.how!r}, must_refuse={self.must_refuse}, {len(self.body)} bytes: {shown!r})"


# --- valid frames of the test house


@functools.lru_cache(maxsize=32)
def _signals(fs_hz: float, n: int) -> tuple[dict, dict]:
    k = np.arange(n) / fs_hz
    shifts = {"L1": 0.0, "L2": -2 * math.pi / 3, "L3": 2 * math.pi / 3}
    voltages = {p: (325.0 * np.sin(2 * math.pi * 50 * k + s)).round(1).tolist() for p, s in shifts.items()}
    amps = {"CTH-T/A": (6.0, "L1"), "CTH-T/B": (3.0, "L2"), "CTH-T/C": (1.5, "L3"), "CTH-T/D": (4.0, "L1")}
    currents = {
        ref: (a * np.sin(2 * math.pi * 50 * k + shifts[p] - 0.3)).round(3).tolist() for ref, (a, p) in amps.items()
    }
    return voltages, currents


def frame_doc(seq: int = 1, t: float = T0, fs_hz: float = FS_HZ, n: int = N_SAMPLES, pulses: int = 1000) -> dict:
    """A valid frame of the test house (50 Hz, about 2.3 kW), with its two inputs."""
    voltages, currents = _signals(fs_hz, n)
    return {
        "v": 1, "powerbox": "PB-T", "seq": seq, "t": t, "fs": fs_hz,
        "voltages": {name: list(samples) for name, samples in voltages.items()},
        "currents": {name: list(samples) for name, samples in currents.items()},
        "inputs": {"INP-T/1": {"state": 0, "pulses": pulses}, "INP-T/2": {"state": 1, "pulses": 0}},
    }  # fmt: skip


# --- one frame, one thing wrong with it

UNKNOWN_KEYS = ("input", "V", "Seq", "", "x" * 300, "seq ", "type", "token")
STRANGE_REFS = (
    "CTH-T/E", "CTH-T/a", "CTH-T", "CTH-ZZ/A", "CTH-O/A", "INP-T/1", "OUT-T/1", "L4", "l1", "", "PB-T/A",
    "CTH-T/A/B", "x" * 100 + "/A", "é/A", "CTH T/A", "N",
)  # fmt: skip
INPUT_KEYS = ("INP-T/1", "INP-T/2", "INP-T/3", "INP-T/4", "INP-T/5", "INP-T/0", "INP-O/1", "INP-ZZ/1", "GAS", "OUT-T/1")
STATES = (0, 1, 2, -1, True, None, "1", 0.0, 2**64 - 1)
PULSES = (
    0, 1, 999, 2**32, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1, raw("18446744073709551616"), -1, 1.5, True, None,
    "5", raw("NaN"),
)  # fmt: skip
SEQS = (
    0, 1, 2, 3599, 3600, 3601, 2**32, 2**53 - 2, 2**53 - 1, 2**53, 2**53 + 1, 2**63, 2**64 - 1, -1, -(2**63),
    raw("18446744073709551616"), 1.0, True,
)  # fmt: skip


def _ts() -> tuple:
    now = time.time()
    return (
        0, 0.0, -1.0, 1.0, 1e9, T_MIN - 1, T_MIN, T0, now + 5, now + 3600, now + 86_400, now + 365 * 86_400,
        1e10, 1e12, 2.0**53, 1e300, 5e-324, -0.0, raw("NaN"), raw("1e400"), raw("-Infinity"), "1764090000",
    )  # fmt: skip


TS = _ts()
FSS = (0, 1, 999.999, 1000, 3200, 6400.0, 8000, 50_000, 50_000.001, 1e300, -6400, raw("NaN"), "6400")
VERSIONS = (0, 1, 2, 255, 2**64 - 1, "1", 1.0, True, -1)
POWERBOXES = ("PB-T", "PB-O", "PB-ZZ", "", "PB T", "PB/T", "x" * 65, "x" * 64, "é", "\x7f", "PB-t")
CHANNELS = tuple(("voltages", v) for v in VOLTAGES) + tuple(("currents", c) for c in CT_REFS)


@st.composite
def broken_frame(draw, seq: int = 1, t: float = T0) -> tuple[dict, str, bool | None]:
    """A frame of the test house with one thing changed; (doc, what was changed, must it be refused)."""
    doc = frame_doc(seq, t)
    kind = draw(
        st.sampled_from(
            (
                "field", "delete", "unknown field", "sample", "channel", "length", "all lengths", "rename",
                "drop channel", "input", "seq", "t", "fs", "v", "powerbox",
            )
        )
    )  # fmt: skip
    if kind == "field":
        name, value = draw(st.sampled_from(tuple(FIELD_VERDICTS))), draw(hostile)
        doc[name] = value
        return doc, f"{name} = {value!r:.60}", FIELD_VERDICTS[name](parsed(value))
    if kind == "delete":
        name = draw(st.sampled_from(tuple(FIELD_VERDICTS)))
        del doc[name]
        return doc, f"no {name}", None if name == "inputs" else True
    if kind == "unknown field":
        key, value = draw(st.sampled_from(UNKNOWN_KEYS)), draw(hostile)
        doc[key] = value
        return doc, f"unknown field {key!r:.40} = {value!r:.60}", True
    group, name = draw(st.sampled_from(CHANNELS))
    samples = doc[group][name]
    if kind == "sample":
        index, value = draw(st.integers(0, len(samples) - 1)), draw(hostile)
        samples[index] = value
        return doc, f"{group}.{name}[{index}] = {value!r:.60}", None if is_sample(parsed(value)) else True
    if kind == "channel":
        value = draw(hostile)
        doc[group][name] = value
        return doc, f"{group}.{name} = {value!r:.60}", True
    if kind == "length":
        length = draw(st.sampled_from((0, 1, N_SAMPLES - 1, N_SAMPLES + 1, 2 * N_SAMPLES, 65_537)))
        doc[group][name] = (samples * (length // len(samples) + 1))[:length]
        return doc, f"{group}.{name} has {length} samples, the others {N_SAMPLES}", True
    if kind == "all lengths":
        length = draw(st.sampled_from((1, 2, 20, 64, 127, 128, 129, 256, 300)))
        for channels in (doc["voltages"], doc["currents"]):
            for key in channels:
                channels[key] = channels[key][:length]
        # Under one 50 Hz cycle (128 samples at 6,400 Hz) the core has nothing to compute over.
        return doc, f"every channel {length} samples", True if length < 128 else None
    if kind == "rename":
        new = draw(st.sampled_from(STRANGE_REFS))
        doc[group][new] = doc[group].pop(name)
        return doc, f"{group}.{name} renamed {new!r:.40}", True
    if kind == "drop channel":
        del doc[group][name]
        return doc, f"no {group}.{name}", True if group == "voltages" else None
    if kind == "input":
        key = draw(st.sampled_from(INPUT_KEYS))
        if draw(st.booleans()):
            reading = draw(hostile)
        else:
            reading = {"state": draw(st.sampled_from(STATES)), "pulses": draw(st.sampled_from(PULSES))}
        doc["inputs"][key] = reading
        verdict = reading_verdict(reading) if key in INPUT_REFS else True
        return doc, f"inputs.{key} = {reading!r:.80}", verdict
    pools = {"seq": (SEQS, seq_verdict), "t": (TS, t_verdict), "fs": (FSS, fs_verdict)}
    pools["v"] = (VERSIONS, FIELD_VERDICTS["v"])
    pools["powerbox"] = (POWERBOXES, FIELD_VERDICTS["powerbox"])
    values, verdict = pools[kind]
    value = draw(st.sampled_from(values))
    doc[kind] = value
    return doc, f"{kind} = {value!r:.60}", verdict(parsed(value))


@st.composite
def frame_case(draw) -> Case:
    doc, how, verdict = draw(broken_frame())
    return Case(dumps(doc), how, verdict)


@st.composite
def batch_case(draw) -> Case:
    """A JSON list of 2 to 5 consecutive frames, some of them broken, or out of order."""
    count = draw(st.integers(2, 5))
    first = draw(st.sampled_from((1, 1000, 2**32, SEQ_LIMIT - 6)))
    duration_s = N_SAMPLES / FS_HZ
    docs, hows, verdicts = [], [], []
    for i in range(count):
        seq, t = first + i, T0 + i * duration_s
        if draw(st.integers(0, 2)) == 0:
            doc, how, verdict = draw(broken_frame(seq, t))
        else:
            doc, how, verdict = frame_doc(seq, t, pulses=1000 + i), "ok", None
        docs.append(doc)
        hows.append(f"[{i}] {how}")
        verdicts.append(verdict)
    order = draw(st.sampled_from(("as sent", "reversed", "repeated", "t backwards", "fs changes", "pulse jump")))
    if order == "reversed":
        docs.reverse()
    elif order == "repeated":
        docs.append(copy.deepcopy(docs[0]))
    elif order == "t backwards":
        # A frame after a gap that starts before the newest frame: refused with 409.
        docs[-1]["seq"], docs[-1]["t"] = first + count + 5, T0 - 10.0
        verdicts.append(True)
    elif order == "fs changes":
        docs[-1] = frame_doc(first + count - 1, T0 + (count - 1) * duration_s, fs_hz=8000.0, n=400)
        hows[-1], verdicts[-1] = f"[{count - 1}] ok at 8000 Hz", None
    elif order == "pulse jump":
        pulses = draw(st.sampled_from((0, 2**62, 2**63 - 1)))
        docs[-1] = frame_doc(first + count - 1, T0 + (count - 1) * duration_s, pulses=pulses)
        hows[-1], verdicts[-1] = f"[{count - 1}] ok with {pulses} pulses", None
    return Case(dumps(docs), f"batch {order}: " + "; ".join(hows), worst(verdicts))


@st.composite
def garbage_case(draw) -> Case:
    """A body that is not a frame at all: random, truncated, the wrong shape, too many frames."""
    kind = draw(st.sampled_from(("bytes", "text", "truncated", "value", "too many", "wrapped", "not utf-8", "flipped")))
    valid = dumps(frame_doc())
    if kind == "bytes":
        body = draw(st.binary(max_size=512))
        return Case(body, "random bytes", True)
    if kind == "text":
        body = draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
        return Case(body, "random text", True)
    if kind == "truncated":
        cut = draw(st.integers(0, len(valid) - 1))
        return Case(valid[:cut], f"a valid frame cut at byte {cut}", True)
    if kind == "value":
        value = draw(hostile)
        return Case(dumps(value), f"the body is {value!r:.60}", True)
    if kind == "too many":
        count = draw(st.sampled_from((65, 1000)))
        return Case(dumps([{"v": 1}] * count), f"{count} frames in one list", True)
    if kind == "wrapped":
        return Case(dumps({"frames": [frame_doc()]}), "the frame wrapped in an object", True)
    if kind == "not utf-8":
        return Case(valid.replace(b'"PB-T"', b'"PB-\xff\xfe"'), "a serial that is not UTF-8", True)
    index, byte = draw(st.integers(0, len(valid) - 1)), draw(st.integers(0, 255))
    return Case(valid[:index] + bytes((byte,)) + valid[index + 1 :], f"byte {index} set to {byte}", None)


json_case = st.one_of(garbage_case(), frame_case(), batch_case())


# --- binary frames


@functools.lru_cache(maxsize=4)
def binary_frame(seq: int = 1, t: float = T0) -> bytes:
    return encode_binary(frame_from_dict(frame_doc(seq, t)))


def _table_offsets(data: bytes) -> list[int]:
    """Where each channel table entry of an encoded frame starts (its name length byte)."""
    n_channels = data[6] + data[7]
    offsets, pos = [], 39 + data[38]
    for _ in range(n_channels):
        offsets.append(pos)
        pos += 1 + data[pos] + 16
    return offsets


# (offset, struct format, values to write, verdict on the written value or None for "lies")
HEADER_FIELDS = {
    "version": (4, "<B", (0, 1, 2, 255), lambda x: None if x == 1 else True),
    "flags": (5, "<B", (0, 1, 128, 255), lambda x: None if x == 0 else True),
    "V": (6, "<B", (0, 1, 2, 3, 4, 31, 255), lambda x: None if x == 3 else True),
    "C": (7, "<B", (0, 1, 3, 4, 5, 28, 29, 255), lambda x: None if x == 4 else True),
    "I": (8, "<H", (0, 1, 2, 3, 40, 41, 65_535), lambda x: None if x == 2 else True),
    "N": (10, "<I", (0, 1, N_SAMPLES - 1, N_SAMPLES, N_SAMPLES + 1, 65_536, 65_537, 2**32 - 1),
          lambda x: None if x == N_SAMPLES else True),
    "seq": (14, "<Q", (0, 2, 2**53 - 1, 2**53, 2**63, 2**64 - 1), seq_verdict),
    "t": (22, "<d", (T_MIN - 1, 0.0, -1.0, math.nan, math.inf, -math.inf, 1e300, T0 + 365 * 86_400, T0 + 1, 5e-324),
          t_verdict),
    "fs": (30, "<d", (0.0, math.nan, math.inf, 999.0, 1000.0, 8000.0, 50_000.0, 50_001.0, -6400.0, 5e-324), fs_verdict),
    "P": (38, "<B", (0, 1, 3, 5, 64, 255), lambda x: None if x == 4 else True),
}  # fmt: skip
SCALES = (0.0, -1.0, 5e-324, 1e300, math.nan, math.inf, -math.inf, 1.0)


@st.composite
def binary_case(draw) -> Case:
    """A binary frame with a lying header or table, cut short, overlong, or random bytes."""
    data = bytearray(binary_frame())
    kind = draw(
        st.sampled_from(
            ("random", "magic+random", "header", "scale", "name length", "truncated", "appended", "flipped")
        )
    )
    if kind == "random":
        return Case(draw(st.binary(max_size=600)), "random bytes", True)
    if kind == "magic+random":
        return Case(b"IFB1" + draw(st.binary(max_size=600)), "IFB1 and random bytes", True)
    if kind == "header":
        name = draw(st.sampled_from(tuple(HEADER_FIELDS)))
        offset, fmt, values, verdict = HEADER_FIELDS[name]
        value = draw(st.sampled_from(values))
        struct.pack_into(fmt, data, offset, value)
        return Case(bytes(data), f"header {name} = {value!r}", verdict(value))
    if kind == "scale":
        entry = draw(st.sampled_from(_table_offsets(bytes(data))))
        at = entry + 1 + data[entry] + draw(st.sampled_from((0, 8)))
        value = draw(st.sampled_from(SCALES))
        struct.pack_into("<d", data, at, value)
        is_scale = (at - entry - 1 - data[entry]) == 0
        ok = math.isfinite(value) and (value > 0 or not is_scale)
        return Case(bytes(data), f"{'scale' if is_scale else 'offset'} at byte {at} = {value!r}", None if ok else True)
    if kind == "name length":
        entry = draw(st.sampled_from(_table_offsets(bytes(data))))
        value = draw(st.integers(0, 255))
        verdict = None if value == data[entry] else True
        data[entry] = value
        return Case(bytes(data), f"name length at byte {entry} = {value}", verdict)
    if kind == "truncated":
        cut = draw(st.integers(0, len(data) - 1))
        return Case(bytes(data[:cut]), f"cut at byte {cut} of {len(data)}", True)
    if kind == "appended":
        extra = draw(st.binary(min_size=1, max_size=64))
        return Case(bytes(data) + extra, f"{len(extra)} bytes appended", True)
    index, byte = draw(st.integers(0, len(data) - 1)), draw(st.integers(0, 255))
    data[index] = byte
    return Case(bytes(data), f"byte {index} set to {byte}", None)


# --- installation files

DEMO_FILE = Path(__file__).resolve().parents[2] / "devices" / "demo" / "demo_installation.json"


@functools.cache
def demo_installation_text() -> str:
    return DEMO_FILE.read_text(encoding="utf-8")


def demo_installation() -> dict:
    return json.loads(demo_installation_text())


# Python values a JSON file can hold (stdlib json, as the import command reads it: NaN and
# Infinity literals included, integers of any size).
FILE_HOSTILE = (
    None, True, False, 0, -1, 1, 50, 60, 2**31, 2**63, 2**64, 10**30, -(10**30), 0.5, 1e300, -1e300,
    math.nan, math.inf, -math.inf, "", " ", "x" * 5000, "é\x00\u2028", "Europe/Nowhere", "3P+N", "1P", "L1",
    "CTH-DEMO-0001/A", "CTH-O/A", "GW-O", "PB-O", "INP-O", "OUT-O", [], [None], [[[[[[[[]]]]]]]], {}, {"": None},
    {"serial": "CTH-X", "inputs": {"Z": "AC-CT-100A"}},
)  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a document, the document itself as ``()``."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def installation_doc(draw) -> tuple[Any, list[str]]:
    """The demo installation file with one to three things changed; (doc, what was changed)."""
    doc: Any = demo_installation()
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(("replace", "replace", "delete", "add key", "duplicate", "nest")))
        if op == "replace" or not path:
            value = draw(st.sampled_from(FILE_HOSTILE))
            if not path:
                doc = copy.deepcopy(value)  # later changes must not change the pool
            else:
                _parent(doc, path)[path[-1]] = copy.deepcopy(value)
            changes.append(f"{'/'.join(map(str, path))} = {value!r:.60}")
            continue
        parent, key = _parent(doc, path), path[-1]
        if op == "delete":
            del parent[key]
            changes.append(f"deleted {'/'.join(map(str, path))}")
        elif op == "add key":
            target = parent[key]
            if isinstance(target, dict):
                extra = draw(st.sampled_from(("id", "extra", "serial", "inputs", "E", "5", "x" * 300)))
                target[extra] = copy.deepcopy(draw(st.sampled_from(FILE_HOSTILE)))
                changes.append(f"added {'/'.join(map(str, path))}/{extra}")
            else:
                changes.append(f"nothing added at {'/'.join(map(str, path))}")
        elif op == "duplicate":
            if isinstance(parent, list):
                parent.append(copy.deepcopy(parent[key]))
            elif isinstance(parent, dict):
                parent[f"{key}2"] = copy.deepcopy(parent[key])
            changes.append(f"duplicated {'/'.join(map(str, path))}")
        else:
            parent[key] = _deep(draw(st.sampled_from((2, 50, 500))))
            changes.append(f"nested {'/'.join(map(str, path))}")
    return doc, changes


def _parent(doc: Any, path: tuple) -> Any:
    node = doc
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def installation_text(draw) -> tuple[bytes, str]:
    """The bytes of an installation file: the demo's, broken at the byte level."""
    text = demo_installation_text().encode()
    kind = draw(st.sampled_from(("bytes", "truncated", "literal", "nested", "long int", "not utf-8", "flipped")))
    if kind == "bytes":
        return draw(st.binary(max_size=400)), "random bytes"
    if kind == "truncated":
        cut = draw(st.integers(0, len(text) - 1))
        return text[:cut], f"the demo file cut at byte {cut}"
    if kind == "literal":
        literal = draw(st.sampled_from(("NaN", "Infinity", "-Infinity", "1e400", "1" * 50, "-0", "null", "[]", '"50"')))
        return text.replace(b'"frequency": 50', b'"frequency": ' + literal.encode()), f"frequency {literal}"
    if kind == "nested":
        depth = draw(st.sampled_from((100, 900, 5000, 100_000)))
        return b"[" * depth + b"]" * depth, f"arrays nested {depth} deep"
    if kind == "long int":
        digits = draw(st.sampled_from((19, 20, 400, 4300, 5000)))
        return text.replace(b'"frequency": 50', b'"frequency": ' + b"7" * digits), f"frequency of {digits} digits"
    if kind == "not utf-8":
        return text.replace(b"Demo house", b"Demo \xff\xfe house"), "a name that is not UTF-8"
    index, byte = draw(st.integers(0, len(text) - 1)), draw(st.integers(0, 255))
    return text[:index] + bytes((byte,)) + text[index + 1 :], f"byte {index} set to {byte}"

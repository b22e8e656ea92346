"""Sample frames: JSON and binary decoding, and every validation rule of docs/frames.md."""

from __future__ import annotations

import copy
import json
import math
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from metering.ingest.frames import (
    EARLIEST_T,
    MAX_CHANNELS,
    MAX_CLOCK_AHEAD_S,
    MAX_FRAME_BYTES,
    MAX_FRAMES_PER_BODY,
    MAX_SAMPLES_PER_CHANNEL,
    FrameError,
    FrameRefused,
    InputReading,
    SampleFrame,
    decode_binary,
    encode_binary,
    frame_from_dict,
    frame_to_dict,
    parse_frames,
    parse_json,
)

REPO = Path(__file__).resolve().parents[2]

# The worked example of docs/frames.md, byte for byte.
WORKED_EXAMPLE = bytes.fromhex(
    "49464231010001010100030000000700000000000000000000247849da41000000000000b940"
    "0450422d31024c31e600738039c07c3f00000000000000000643542d312f41800040002000f03e"
    "000000000000e03f06494e2d312f31012a000000000000000000ff7f0180ff7f00000180"
)


def small_doc(n: int = 8) -> dict:
    """A valid star-connected frame: three voltages, two CTs, one input, ``n`` samples."""
    ramp = [round(0.1 * k, 3) for k in range(n)]
    return {
        "v": 1,
        "powerbox": "PB-0001",
        "seq": 1042,
        "t": 1764090000.0,
        "fs": 6400,
        "voltages": {
            "L1": [325.1 + x for x in ramp],
            "L2": [-162.5 + x for x in ramp],
            "L3": [-162.6 - x for x in ramp],
        },
        "currents": {"CTH-0001/A": [0.41 + x for x in ramp], "CTH-0001/B": [-0.2 - x for x in ramp]},
        "inputs": {"INP-0001/1": {"state": 0, "pulses": 123456}},
    }


def reference_doc(seed: int = 0) -> dict:
    """The reference frame: 3 voltages + 28 CTs, 1 s at 6,400 Hz."""
    rng = np.random.default_rng(seed)
    n, fs = 6400, 6400.0
    t = np.arange(n) / fs
    voltages = {
        f"L{k + 1}": (325 * np.sin(2 * np.pi * 50 * t - k * 2 * np.pi / 3) + rng.normal(0, 0.5, n)).round(2).tolist()
        for k in range(3)
    }
    currents = {
        f"CTH-{hub:04d}/{letter}": (10 * rng.random() * np.sin(2 * np.pi * 50 * t - rng.random())).round(4).tolist()
        for hub in range(1, 8)
        for letter in "ABCD"
    }
    return {
        "v": 1,
        "powerbox": "PB-0001",
        "seq": 1,
        "t": 1764090000.0,
        "fs": fs,
        "voltages": voltages,
        "currents": currents,
    }


def changed(path: str, value: object, doc: dict | None = None) -> dict:
    """A copy of ``doc`` (default :func:`small_doc`) with the dotted ``path`` set or deleted."""
    doc = copy.deepcopy(doc or small_doc())
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


DELETE = object()


def rejected(doc: object, match: str, field: str | None) -> FrameError:
    with pytest.raises(FrameError, match=match) as caught:
        frame_from_dict(doc)  # type: ignore[arg-type]
    assert caught.value.field == field
    return caught.value


# ------------------------------------------------------------------------------ valid frames


def test_it_decodes_a_valid_frame():
    frame = frame_from_dict(small_doc())

    assert (frame.version, frame.powerbox, frame.seq, frame.t, frame.fs_hz) == (
        1,
        "PB-0001",
        1042,
        1764090000.0,
        6400.0,
    )
    assert list(frame.voltages) == ["L1", "L2", "L3"]
    assert list(frame.currents) == ["CTH-0001/A", "CTH-0001/B"]
    assert frame.inputs == {"INP-0001/1": InputReading(state=0, pulses=123456)}
    np.testing.assert_array_equal(frame.currents["CTH-0001/B"], small_doc()["currents"]["CTH-0001/B"])
    for samples in [*frame.voltages.values(), *frame.currents.values()]:
        assert samples.dtype == np.float64 and samples.shape == (8,)


def test_it_knows_the_frame_timing():
    frame = frame_from_dict(changed("fs", 6400.0, reference_doc()))

    assert frame.n_samples == 6400
    assert frame.duration_s == 1.0
    assert frame.end_t == 1764090001.0


def test_it_makes_the_sample_arrays_read_only():
    frame = frame_from_dict(small_doc())

    with pytest.raises(ValueError, match="read-only"):
        frame.voltages["L1"][0] = 0.0


def test_it_accepts_a_lone_voltage_frame():
    doc = changed("inputs", DELETE, changed("currents", {}, changed("voltages", {"L1": [1.0, 2.0, 3.0]})))

    frame = frame_from_dict(doc)

    assert list(frame.voltages) == ["L1"] and frame.currents == {} and frame.inputs == {}
    assert frame.n_samples == 3


def test_it_accepts_a_delta_frame_with_two_voltages():
    doc = small_doc()
    del doc["voltages"]["L3"]

    assert list(frame_from_dict(doc).voltages) == ["L1", "L2"]


def test_it_accepts_integer_samples_and_idle_cts_reading_exact_zeros():
    doc = changed("currents", {"CTH-0001/A": [0] * 200, "CTH-0001/B": [0.0, 1] * 100}, small_doc(200))

    frame = frame_from_dict(doc)

    np.testing.assert_array_equal(frame.currents["CTH-0001/A"], np.zeros(200))
    assert frame.currents["CTH-0001/B"].dtype == np.float64


def test_it_accepts_the_limits():
    assert frame_from_dict(changed("fs", 1000)).fs_hz == 1000.0
    assert frame_from_dict(changed("fs", 50_000.0)).fs_hz == 50_000.0
    assert frame_from_dict(changed("seq", 0)).seq == 0
    assert frame_from_dict(changed("seq", 2**53 - 1)).seq == 2**53 - 1
    assert frame_from_dict(changed("inputs.INP-0001/1.pulses", 2**53 - 1)).inputs["INP-0001/1"].pulses == 2**53 - 1
    assert frame_from_dict(changed("powerbox", "P" * 64)).powerbox == "P" * 64
    full = {f"CTH-{hub:04d}/{letter}": [0.5] for hub in range(1, 8) for letter in "ABCD"}
    doc = changed("currents", full, changed("voltages", {"L1": [1.0], "L2": [2.0], "L3": [3.0]}))
    assert len(frame_from_dict(doc).currents) == MAX_CHANNELS - 3
    longest = changed("currents", {}, changed("voltages", {"L1": [1.5] * MAX_SAMPLES_PER_CHANNEL}))
    assert frame_from_dict(longest).n_samples == MAX_SAMPLES_PER_CHANNEL


def test_it_round_trips_dict_json_frame():
    doc = small_doc()
    body = orjson.dumps(doc)

    frame = parse_frames(body)[0]

    assert frame == frame_from_dict(doc)
    assert frame_to_dict(frame) == doc
    assert parse_frames(orjson.dumps(frame_to_dict(frame))) == [frame]
    assert frame_from_dict(json.loads(body)) == frame  # stdlib json reads the same frame


def test_it_compares_frames_by_their_samples():
    frame = frame_from_dict(small_doc())

    assert frame == frame_from_dict(small_doc())
    assert frame != frame_from_dict(changed("voltages.L1", [0.0] * 8))
    assert frame != frame_from_dict(changed("seq", 1043))
    assert frame != "a frame"


# ------------------------------------------------------------------------------- parse_json


def test_it_parses_one_frame_object_as_a_list_of_one():
    assert parse_json(orjson.dumps(small_doc())) == [small_doc()]
    assert parse_json(orjson.dumps(small_doc()).decode()) == [small_doc()]


def test_it_parses_a_json_list_of_frames():
    docs = [changed("seq", 1), changed("seq", 2)]
    body = orjson.dumps(docs)

    assert parse_json(body) == docs
    assert [frame.seq for frame in parse_frames(body)] == [1, 2]


def test_it_names_the_frame_of_a_list_that_is_invalid():
    body = orjson.dumps([changed("seq", 1), changed("seq", -2)])

    with pytest.raises(FrameError, match=r"frame \[1\]: seq must be a non-negative integer") as caught:
        parse_frames(body)
    assert caught.value.field == "[1].seq"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"v": 1, "seq": ', r"malformed JSON: .*line 1 column 17"),
        (b'{"v": 1,\n "seq": 3,,}', r"malformed JSON: .*line 2 column"),
        (b'{"v": 1, "t": NaN}', r"malformed JSON: "),
        (b"", r"malformed JSON: "),
        ('{"v": 1, "powerbox": "\ud800"}', r"malformed JSON: surrogates not allowed"),
        (b"42", r"expected a frame object or a list of frames, got an integer"),
        (b'"frame"', r"expected a frame object or a list of frames, got a string"),
        (b"null", r"expected a frame object or a list of frames, got null"),
        (b"[]", r"empty list of frames"),
        (orjson.dumps([{}] * (MAX_FRAMES_PER_BODY + 1)), r"too many frames in one body: 65, limit 64"),
    ],
)
def test_it_refuses_a_body_that_is_not_frames(body, match):
    with pytest.raises(FrameError, match=match) as caught:
        parse_json(body)
    assert caught.value.field is None


def test_it_names_the_list_item_that_is_not_an_object():
    with pytest.raises(FrameError, match=r"frame \[3\] is not an object but an array") as caught:
        parse_json(b"[{}, {}, {}, [1, 2]]")
    assert caught.value.field == "[3]"


@pytest.mark.parametrize("as_text", [False, True])
def test_it_refuses_an_oversized_body_before_parsing_it(as_text):
    body = orjson.dumps(small_doc()) + b" " * MAX_FRAME_BYTES
    size = len(body)

    with pytest.raises(FrameError, match=f"frame too large: {size} bytes, limit {MAX_FRAME_BYTES}") as caught:
        parse_json(body.decode() if as_text else body)
    assert caught.value.field is None


def test_it_accepts_a_body_of_exactly_the_limit():
    body = orjson.dumps(small_doc())
    body += b" " * (MAX_FRAME_BYTES - len(body))

    assert len(parse_json(body)) == 1


def test_it_explains_errors_as_json():
    error = FrameError("seq must be a non-negative integer below 2**53, got -1", "seq")

    assert str(error) == error.message == "seq must be a non-negative integer below 2**53, got -1"
    assert error.as_dict() == {"error": error.message, "field": "seq"}
    assert isinstance(error, ValueError)
    assert FrameError("malformed JSON: x").as_dict() == {"error": "malformed JSON: x", "field": None}


# ---------------------------------------------------------------------------- bad frames


@pytest.mark.parametrize(
    ("path", "value", "match", "field"),
    [
        # fields
        ("v", DELETE, r"missing required field 'v'", "v"),
        ("powerbox", DELETE, r"missing required field 'powerbox'", "powerbox"),
        ("seq", DELETE, r"missing required field 'seq'", "seq"),
        ("t", DELETE, r"missing required field 't'", "t"),
        ("fs", DELETE, r"missing required field 'fs'", "fs"),
        ("voltages", DELETE, r"missing required field 'voltages'", "voltages"),
        ("currents", DELETE, r"missing required field 'currents'", "currents"),
        ("volts", [1.0], r"unknown field 'volts'", "volts"),
        # version
        ("v", 2, r"unsupported frame version 2; this server speaks 1", "v"),
        ("v", 0, r"unsupported frame version 0; this server speaks 1", "v"),
        ("v", "1", r"v must be an integer, got a string", "v"),
        ("v", True, r"v must be an integer, got a boolean", "v"),
        ("v", 1.0, r"v must be an integer, got a number", "v"),
        # powerbox
        ("powerbox", 1, r"powerbox must be a string, got an integer", "powerbox"),
        ("powerbox", "", r"powerbox must be 1 to 64 characters long, got 0", "powerbox"),
        ("powerbox", "P" * 65, r"powerbox must be 1 to 64 characters long, got 65", "powerbox"),
        ("powerbox", "PB 0001", r"powerbox 'PB 0001' is not a serial", "powerbox"),
        ("powerbox", "PB/0001", r"powerbox 'PB/0001' is not a serial", "powerbox"),
        # seq
        ("seq", -1, r"seq must be a non-negative integer below 2\*\*53, got -1", "seq"),
        ("seq", 2**64, r"seq must be a non-negative integer below 2\*\*53, got 18446744073709551616", "seq"),
        ("seq", True, r"seq must be a non-negative integer below 2\*\*53, got a boolean", "seq"),
        ("seq", 3.0, r"seq must be a non-negative integer below 2\*\*53, got a number", "seq"),
        ("seq", "3", r"seq must be a non-negative integer below 2\*\*53, got a string", "seq"),
        ("seq", None, r"seq must be a non-negative integer below 2\*\*53, got null", "seq"),
        # t
        ("t", "now", r"t must be a number of seconds, got a string", "t"),
        ("t", False, r"t must be a number of seconds, got a boolean", "t"),
        ("t", math.inf, r"t must be finite, got inf", "t"),
        ("t", math.nan, r"t must be finite, got nan", "t"),
        # fs
        ("fs", "6400", r"fs must be a number of samples per second, got a string", "fs"),
        ("fs", True, r"fs must be a number of samples per second, got a boolean", "fs"),
        ("fs", 999.9, r"fs must be between 1000 and 50000 Hz, got 999.9", "fs"),
        ("fs", 50_001, r"fs must be between 1000 and 50000 Hz, got 50001.0", "fs"),
        ("fs", math.nan, r"fs must be between 1000 and 50000 Hz, got nan", "fs"),
        # channel names and counts
        ("voltages", [[1.0]], r"voltages must be an object, got an array", "voltages"),
        ("voltages", {}, r"voltages must hold at least one channel", "voltages"),
        ("voltages.L4", [1.0] * 8, r"unknown voltage channel 'L4'; expected L1, L2 or L3", "voltages.L4"),
        ("voltages.l1", [1.0] * 8, r"unknown voltage channel 'l1'", "voltages.l1"),
        ("currents", None, r"currents must be an object, got null", "currents"),
        (
            "currents.CTH-0001",
            [1.0] * 8,
            r"bad CT channel name 'CTH-0001'; expected '<module serial>/<input A-D>'",
            "currents.CTH-0001",
        ),
        ("currents.CTH-0001/E", [1.0] * 8, r"bad CT channel name 'CTH-0001/E'", "currents.CTH-0001/E"),
        ("currents.CTH 0001/A", [1.0] * 8, r"bad CT channel name 'CTH 0001/A'", "currents.CTH 0001/A"),
        ("currents.CTH-0001/1", [1.0] * 8, r"bad CT channel name 'CTH-0001/1'", "currents.CTH-0001/1"),
        # sample arrays
        ("voltages.L2", "325.1", r"voltages.L2 must be an array of numbers, got a string", "voltages.L2"),
        (
            "currents.CTH-0001/A",
            {"0": 1.0},
            r"currents.CTH-0001/A must be an array of numbers, got an object",
            "currents.CTH-0001/A",
        ),
        ("voltages.L1", [], r"voltages.L1 is empty", "voltages.L1"),
        ("voltages.L3", [], r"voltages.L3 is empty", "voltages.L3"),
        (
            "currents.CTH-0001/B",
            [1.0] * 7,
            r"currents.CTH-0001/B has 7 samples but voltages.L1 has 8; all channels must have the same length",
            "currents.CTH-0001/B",
        ),
        ("voltages.L2", [1.0] * 9, r"voltages.L2 has 9 samples but voltages.L1 has 8", "voltages.L2"),
        (
            "voltages.L2",
            [1.0, 2.0, 3.0, "4.0", 5.0, 6.0, 7.0, 8.0],
            r"voltages.L2\[3\] is not a number but a string",
            "voltages.L2",
        ),
        (
            "voltages.L1",
            [1.0, None, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            r"voltages.L1\[1\] is not a number but null",
            "voltages.L1",
        ),
        (
            "currents.CTH-0001/A",
            [0.5, 0.25, True, 0.0, 1.0, 1.0, 0.5, 0.5],
            r"currents.CTH-0001/A\[2\] is not a number but a boolean",
            "currents.CTH-0001/A",
        ),
        (
            "currents.CTH-0001/A",
            [0.5] * 7 + [False],
            r"currents.CTH-0001/A\[7\] is not a number but a boolean",
            "currents.CTH-0001/A",
        ),
        ("voltages.L3", [1.0] * 7 + [[1.0]], r"voltages.L3\[7\] is not a number but an array", "voltages.L3"),
        ("voltages.L3", [10**400] + [1.0] * 7, r"voltages.L3\[0\] is out of range for a float", "voltages.L3"),
        ("voltages.L3", [1.0] * 5 + [math.nan, 1.0, 1.0], r"voltages.L3\[5\] is not finite \(nan\)", "voltages.L3"),
        (
            "currents.CTH-0001/B",
            [1.0] * 6 + [-math.inf, 1.0],
            r"currents.CTH-0001/B\[6\] is not finite \(-inf\)",
            "currents.CTH-0001/B",
        ),
        # inputs
        ("inputs", [], r"inputs must be an object, got an array", "inputs"),
        (
            "inputs.INP-0001/5",
            {"state": 0, "pulses": 0},
            r"bad input name 'INP-0001/5'; expected '<module serial>/<input 1-4>'",
            "inputs.INP-0001/5",
        ),
        ("inputs.INP-0001/A", {"state": 0, "pulses": 0}, r"bad input name 'INP-0001/A'", "inputs.INP-0001/A"),
        (
            "inputs.INP-0001/1",
            1,
            r"inputs.INP-0001/1 must be an object with state and pulses, got an integer",
            "inputs.INP-0001/1",
        ),
        ("inputs.INP-0001/1.state", 2, r"inputs.INP-0001/1.state must be 0 or 1, got 2", "inputs.INP-0001/1.state"),
        (
            "inputs.INP-0001/1.state",
            True,
            r"inputs.INP-0001/1.state must be 0 or 1, got a boolean",
            "inputs.INP-0001/1.state",
        ),
        (
            "inputs.INP-0001/1.state",
            "on",
            r"inputs.INP-0001/1.state must be 0 or 1, got a string",
            "inputs.INP-0001/1.state",
        ),
        (
            "inputs.INP-0001/1.pulses",
            -1,
            r"inputs.INP-0001/1.pulses must be a non-negative integer below 2\*\*53, got -1",
            "inputs.INP-0001/1.pulses",
        ),
        (
            "inputs.INP-0001/1.pulses",
            12.5,
            r"inputs.INP-0001/1.pulses must be a non-negative integer .*, got a number",
            "inputs.INP-0001/1.pulses",
        ),
        (
            "inputs.INP-0001/1.pulses",
            DELETE,
            r"missing required field 'pulses' in inputs.INP-0001/1",
            "inputs.INP-0001/1.pulses",
        ),
        ("inputs.INP-0001/1.count", 3, r"unknown field 'count' in inputs.INP-0001/1", "inputs.INP-0001/1.count"),
    ],
)
def test_it_refuses_an_invalid_frame_naming_the_field(path, value, match, field):
    rejected(changed(path, value), match, field)


@pytest.mark.parametrize("doc", [[small_doc()], "frame", None, 3])
def test_it_refuses_a_frame_that_is_not_an_object(doc):
    rejected(doc, r"frame is not an object but ", None)


def test_it_checks_the_version_before_anything_else():
    doc = {"v": 2, "samples": {"L1": [1.0]}}

    rejected(doc, r"unsupported frame version 2; this server speaks 1", "v")


def test_it_refuses_too_many_channels():
    currents = {f"CTH-{i:04d}/A": [0.5] * 8 for i in range(MAX_CHANNELS - 3 + 1)}

    rejected(changed("currents", currents), r"too many channels: 32, limit 31 \(3 voltages \+ 28 CTs\)", "currents")


def test_it_refuses_too_many_samples():
    n = MAX_SAMPLES_PER_CHANNEL + 1
    doc = changed("currents", {}, changed("voltages", {"L1": [1.0] * n}))

    rejected(doc, rf"voltages.L1 has {n} samples, limit {MAX_SAMPLES_PER_CHANNEL}", "voltages.L1")


def test_it_refuses_too_many_inputs():
    inputs = {f"INP-{m:04d}/{k}": {"state": 0, "pulses": 0} for m in range(11) for k in "1234"}

    rejected(changed("inputs", inputs), r"too many inputs: 44, limit 40", "inputs")


def test_it_finds_a_boolean_among_the_exact_zeros_of_an_idle_ct():
    samples = [0.0] * 150 + [False] + [0] * 49

    rejected(
        changed("currents.CTH-0001/A", samples, small_doc(200)),
        r"CTH-0001/A\[150\] is not a number but a boolean",
        "currents.CTH-0001/A",
    )


def test_it_reports_the_first_non_finite_sample_over_all_channels():
    doc = changed("currents.CTH-0001/B", [1.0, math.inf] + [1.0] * 6, changed("voltages.L2", [1.0] * 7 + [math.nan]))

    rejected(doc, r"voltages.L2\[7\] is not finite \(nan\)", "voltages.L2")


# ----------------------------------------------------------------------------------- binary


def reference_frame() -> SampleFrame:
    doc = reference_doc()
    doc["inputs"] = {"INP-0001/1": {"state": 1, "pulses": 2**40 + 7}, "INP-0001/2": {"state": 0, "pulses": 0}}
    return frame_from_dict(doc)


def test_it_encodes_the_worked_example_of_the_docs_byte_for_byte():
    frame = SampleFrame(
        version=1,
        powerbox="PB-1",
        seq=7,
        t=1764090000.0,
        fs_hz=6400.0,
        voltages={"L1": np.array([0.0, 230.0, -230.0])},
        currents={"CT-1/A": np.array([1.0, 0.5, 0.0])},
        inputs={"IN-1/1": InputReading(state=1, pulses=42)},
    )

    assert encode_binary(frame) == WORKED_EXAMPLE
    assert decode_binary(WORKED_EXAMPLE) == frame  # these values happen to quantise exactly


def test_it_round_trips_binary_within_half_a_count():
    frame = reference_frame()

    data = encode_binary(frame)
    decoded = decode_binary(data)

    assert len(data) == 38 + 8 + 3 * (1 + 2 + 16) + 28 * (1 + 10 + 16) + 2 * (1 + 10 + 9) + 2 * 31 * 6400
    assert (decoded.version, decoded.powerbox, decoded.seq, decoded.t, decoded.fs_hz) == (
        frame.version,
        frame.powerbox,
        frame.seq,
        frame.t,
        frame.fs_hz,
    )
    assert decoded.inputs == frame.inputs
    assert list(decoded.voltages) == list(frame.voltages) and list(decoded.currents) == list(frame.currents)
    for group in ("voltages", "currents"):
        for name, samples in getattr(frame, group).items():
            scale = (samples.max() - samples.min()) / 2 / 32767
            got = getattr(decoded, group)[name]
            assert got.dtype == np.float64 and not got.flags.writeable
            np.testing.assert_allclose(got, samples, rtol=0, atol=scale / 2 * (1 + 1e-9), err_msg=name)


def test_it_encodes_constant_and_silent_channels_exactly():
    frame = frame_from_dict(changed("currents", {"CTH-0001/A": [0.0] * 8, "CTH-0001/B": [3.25] * 8}))

    decoded = decode_binary(encode_binary(frame))

    np.testing.assert_array_equal(decoded.currents["CTH-0001/A"], np.zeros(8))
    np.testing.assert_array_equal(decoded.currents["CTH-0001/B"], np.full(8, 3.25))


def test_it_decodes_a_lone_voltage_binary_frame_from_any_buffer():
    frame = frame_from_dict(
        changed("inputs", DELETE, changed("currents", {}, changed("voltages", {"L2": [1.0, -1.0]})))
    )
    data = encode_binary(frame)

    for buffer in (data, bytearray(data), memoryview(data)):
        assert decode_binary(buffer) == frame


def test_it_refuses_a_binary_frame_cut_anywhere():
    data = encode_binary(frame_from_dict(small_doc(4)))

    for cut in range(len(data)):
        with pytest.raises(FrameError, match=rf"binary frame truncated: expected (at least )?\d+ bytes, got {cut}$"):
            decode_binary(data[:cut])


def test_it_says_how_long_the_samples_block_should_be():
    data = encode_binary(frame_from_dict(small_doc(4)))

    with pytest.raises(FrameError, match=rf"^binary frame truncated: expected {len(data)} bytes, got {len(data) - 3}$"):
        decode_binary(data[:-3])


def test_it_refuses_trailing_bytes():
    data = encode_binary(frame_from_dict(small_doc(4)))

    with pytest.raises(FrameError, match=r"binary frame has 2 trailing bytes"):
        decode_binary(data + b"\0\0")


@pytest.mark.parametrize("data", [b'{"v": 1}', b"IFB2" + bytes(60), b"X", b"\x00" * 100])
def test_it_refuses_a_buffer_that_is_not_a_binary_frame(data):
    with pytest.raises(FrameError, match=r"^not a binary frame: bad magic$") as caught:
        decode_binary(data)
    assert caught.value.field is None


def test_it_never_raises_anything_but_frame_error_on_garbage():
    rng = np.random.default_rng(20251125)
    valid = encode_binary(frame_from_dict(small_doc(4)))
    buffers = [rng.bytes(int(rng.integers(0, 300))) for _ in range(200)]
    buffers += [b"IFB1" + rng.bytes(int(rng.integers(0, 300))) for _ in range(200)]
    for _ in range(300):  # a valid frame with a few bytes garbled
        garbled = bytearray(valid)
        for position in rng.integers(0, len(valid), size=int(rng.integers(1, 4))):
            garbled[position] = int(rng.integers(0, 256))
        buffers.append(bytes(garbled))

    outcomes = {"ok": 0, "refused": 0}
    for data in buffers:
        try:
            decode_binary(data)
        except FrameError:
            outcomes["refused"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["refused"] > 400  # the garbled valid frames are sometimes still valid


def patched(data: bytes, offset: int, layout: str, *values: object) -> bytes:
    out = bytearray(data)
    struct.pack_into(layout, out, offset, *values)
    return bytes(out)


# Offsets in the header of docs/frames.md.
VERSION, FLAGS, N_VOLTAGES, N_SAMPLES, T_AT, FS_AT, POWERBOX = 4, 5, 6, 10, 22, 30, 38


@pytest.mark.parametrize(
    ("offset", "layout", "values", "match", "field"),
    [
        (VERSION, "<B", (2,), r"unsupported frame version 2; this server speaks 1", "v"),
        (FLAGS, "<B", (1,), r"unsupported binary frame flags 0x01; expected 0", "flags"),
        (N_VOLTAGES, "<B", (0,), r"voltages must hold at least one channel", "voltages"),
        (N_VOLTAGES, "<BB", (3, 29), r"too many channels: 32, limit 31", "currents"),
        (N_SAMPLES, "<I", (0,), r"voltages.L1 is empty", "voltages.L1"),
        (N_SAMPLES, "<I", (MAX_SAMPLES_PER_CHANNEL + 1,), r"voltages.L1 has 65537 samples, limit 65536", "voltages.L1"),
        (T_AT, "<d", (math.nan,), r"t must be finite, got nan", "t"),
        (FS_AT, "<d", (100.0,), r"fs must be between 1000 and 50000 Hz, got 100.0", "fs"),
        (POWERBOX, "<B", (0,), r"powerbox must be 1 to 64 characters long, got 0", "powerbox"),
        (POWERBOX + 1, "<c", (b" ",), r"powerbox ' B-0001' is not a serial", "powerbox"),
    ],
)
def test_it_validates_the_binary_header_like_json(offset, layout, values, match, field):
    data = encode_binary(frame_from_dict(small_doc(4)))

    with pytest.raises(FrameError, match=match) as caught:
        decode_binary(patched(data, offset, layout, *values))
    assert caught.value.field == field


def channel_table_offset(frame: SampleFrame) -> int:
    return POWERBOX + 1 + len(frame.powerbox.encode())


def test_it_validates_binary_channel_names_like_json():
    frame = frame_from_dict(small_doc(4))
    data = encode_binary(frame)
    l1_name = channel_table_offset(frame) + 1  # after the length byte

    with pytest.raises(FrameError, match=r"unknown voltage channel 'L4'") as caught:
        decode_binary(patched(data, l1_name, "<2s", b"L4"))
    assert caught.value.field == "voltages.L4"
    with pytest.raises(FrameError, match=r"duplicate channel 'L2'") as caught:
        decode_binary(patched(data, l1_name, "<2s", b"L2"))
    assert caught.value.field == "voltages.L2"
    with pytest.raises(FrameError, match=r"binary frame: the name of channel #0 is not UTF-8"):
        decode_binary(patched(data, l1_name, "<2s", b"\xff\xfe"))


@pytest.mark.parametrize(
    ("scale", "offset", "match"),
    [
        (math.nan, 0.0, r"voltages.L1 has scale nan and offset 0.0"),
        (0.0, 0.0, r"voltages.L1 has scale 0.0 and offset 0.0; the scale must be finite and positive"),
        (-1.0, 0.0, r"voltages.L1 has scale -1.0"),
        (1.0, math.inf, r"voltages.L1 has scale 1.0 and offset inf"),
    ],
)
def test_it_refuses_a_binary_channel_scaling_that_is_not_finite(scale, offset, match):
    frame = frame_from_dict(small_doc(4))
    data = encode_binary(frame)
    l1_scaling = channel_table_offset(frame) + 1 + 2

    with pytest.raises(FrameError, match=match) as caught:
        decode_binary(patched(data, l1_scaling, "<dd", scale, offset))
    assert caught.value.field == "voltages.L1"


def test_it_refuses_binary_samples_that_overflow_to_infinity():
    frame = frame_from_dict(small_doc(4))
    data = encode_binary(frame)
    l1_scaling = channel_table_offset(frame) + 1 + 2

    with pytest.raises(FrameError, match=r"voltages.L1\[\d\] is not finite \(-?inf\)"):
        decode_binary(patched(data, l1_scaling, "<d", 1e305))


def test_it_validates_binary_inputs_like_json():
    frame = frame_from_dict(small_doc(4))
    data = encode_binary(frame)
    state_at = len(data) - 2 * 5 * 4 - 9

    with pytest.raises(FrameError, match=r"inputs.INP-0001/1.state must be 0 or 1, got 7") as caught:
        decode_binary(patched(data, state_at, "<B", 7))
    assert caught.value.field == "inputs.INP-0001/1.state"


def test_it_refuses_an_oversized_binary_frame():
    with pytest.raises(FrameError, match=rf"frame too large: {MAX_FRAME_BYTES + 1} bytes, limit {MAX_FRAME_BYTES}"):
        decode_binary(b"IFB1" + bytes(MAX_FRAME_BYTES - 3))


def test_it_fits_the_largest_frame_in_binary():
    block = np.linspace(-1, 1, MAX_CHANNELS * MAX_SAMPLES_PER_CHANNEL).reshape(MAX_CHANNELS, -1)
    frame = SampleFrame(
        version=1,
        powerbox="PB-0001",
        seq=1,
        t=1764090000.0,
        fs_hz=50_000.0,
        voltages={f"L{k}": block[k - 1] for k in (1, 2, 3)},
        currents={
            f"CTH-{hub:04d}/{letter}": block[3 + 4 * (hub - 1) + i]
            for hub in range(1, 8)
            for i, letter in enumerate("ABCD")
        },
    )

    data = encode_binary(frame)

    assert len(data) <= MAX_FRAME_BYTES
    assert decode_binary(data).n_samples == MAX_SAMPLES_PER_CHANNEL


@pytest.mark.parametrize(
    ("voltages", "match"),
    [
        ({"L1": np.ones(3), "L2": np.ones(4)}, r"cannot encode: channels differ in length"),
        ({"L1": np.array([1.0, np.nan])}, r"cannot encode: samples must be finite"),
        ({"L1": np.array([])}, r"cannot encode: channels must be non-empty 1-D arrays"),
    ],
)
def test_it_refuses_to_encode_what_it_could_not_decode(voltages, match):
    frame = SampleFrame(1, "PB-0001", 1, 0.0, 6400.0, voltages, {})

    with pytest.raises(FrameError, match=match):
        encode_binary(frame)


def test_it_refuses_to_encode_a_seq_outside_its_field():
    frame = SampleFrame(1, "PB-0001", -1, 0.0, 6400.0, {"L1": np.ones(2)}, {})

    with pytest.raises(FrameError, match=r"cannot encode: "):
        encode_binary(frame)


# ------------------------------------------------------------------- value bounds and clock

# The server's clock in these tests: a minute after small_doc()'s t.
NOW = 1764090000.0 + 60
SEQ_AT = 14  # offset of the u64 seq in the binary header
# The u64 pulses of small_doc()'s one input, just before 5 channels x 4 int16 samples.
PULSES_AT = -(2 * 5 * 4 + 8)


def binary_doc(**fields: object) -> bytes:
    """small_doc(4) in binary, with header fields replaced after encoding (no checks on the way)."""
    data = encode_binary(frame_from_dict(small_doc(4), now=NOW))
    offsets = {"seq": (SEQ_AT, "<Q"), "t": (T_AT, "<d")}
    for name, value in fields.items():
        offset, layout = offsets[name]
        data = patched(data, offset, layout, value)
    return data


@pytest.mark.parametrize("seq", [2**53, 2**63, 2**64 - 1])
def test_it_refuses_seq_at_2_pow_53_naming_the_field(seq):
    error = rejected(changed("seq", seq), rf"seq must be a non-negative integer below 2\*\*53, got {seq}", "seq")
    assert error.status == 400

    with pytest.raises(FrameError, match=rf"seq must be a non-negative integer below 2\*\*53, got {seq}") as caught:
        decode_binary(binary_doc(seq=seq), now=NOW)
    assert caught.value.field == "seq"


@pytest.mark.parametrize("pulses", [2**53, 2**63, 2**64 - 1])
def test_it_refuses_pulses_the_database_cannot_store(pulses):
    field = "inputs.INP-0001/1.pulses"
    message = rf"{field} must be a non-negative integer below 2\*\*53, got {pulses}"
    rejected(changed(field, pulses), message, field)

    with pytest.raises(FrameError, match=message) as caught:
        decode_binary(patched(binary_doc(), PULSES_AT, "<Q", pulses), now=NOW)
    assert caught.value.field == field


@pytest.mark.parametrize("t", [EARLIEST_T - 0.001, 1.0, 0.0, -0.5])
def test_it_refuses_t_before_2020(t):
    message = rf"t {re.escape(repr(t))} is before 2020-01-01T00:00:00Z \(1577836800\); check the device's clock"
    with pytest.raises(FrameRefused, match=message) as caught:
        frame_from_dict(changed("t", t), now=NOW)
    assert (caught.value.field, caught.value.status) == ("t", 422)

    with pytest.raises(FrameRefused, match=message) as caught:
        decode_binary(binary_doc(t=t), now=NOW)
    assert (caught.value.field, caught.value.status) == ("t", 422)


@pytest.mark.parametrize("ahead_s", [MAX_CLOCK_AHEAD_S + 0.001, 3600.0, 1e15, 1e300])
def test_it_refuses_t_ahead_of_the_server_clock_beyond_the_tolerance(ahead_s):
    t = NOW + ahead_s
    message = rf"t {re.escape(repr(t))} is more than 300 s ahead of the server's clock \({NOW:.3f}\); check the device's clock"
    with pytest.raises(FrameRefused, match=message) as caught:
        frame_from_dict(changed("t", t), now=NOW)
    assert (caught.value.field, caught.value.status) == ("t", 422)

    with pytest.raises(FrameRefused, match=message) as caught:
        decode_binary(binary_doc(t=t), now=NOW)
    assert (caught.value.field, caught.value.status) == ("t", 422)


@pytest.mark.parametrize("t", [EARLIEST_T, NOW - 86_400 * 365, NOW, NOW + MAX_CLOCK_AHEAD_S])
def test_it_accepts_t_within_the_clock_tolerance(t):
    assert frame_from_dict(changed("t", t), now=NOW).t == t
    assert decode_binary(binary_doc(t=t), now=NOW).t == t
    assert parse_frames(orjson.dumps(changed("t", t)), now=NOW)[0].t == t


def test_it_takes_the_server_clock_from_time_by_default():
    ahead = time.time() + MAX_CLOCK_AHEAD_S + 3600

    with pytest.raises(FrameRefused, match=r"ahead of the server's clock"):
        frame_from_dict(changed("t", ahead))
    with pytest.raises(FrameRefused, match=r"ahead of the server's clock"):
        decode_binary(binary_doc(t=ahead))
    with pytest.raises(FrameRefused, match=r"ahead of the server's clock"):
        parse_frames(orjson.dumps(changed("t", ahead)))


def test_it_reports_a_malformed_frame_before_its_clock():
    doc = changed("voltages.L2", [1.0] * 7 + ["x"], changed("t", NOW + 3600))

    with pytest.raises(FrameError) as caught:
        frame_from_dict(doc, now=NOW)

    assert type(caught.value) is FrameError
    assert (caught.value.field, caught.value.status) == ("voltages.L2", 400)


def test_it_keeps_a_clock_refusal_a_clock_refusal_in_a_list():
    body = orjson.dumps([small_doc(), changed("t", NOW + 3600)])

    with pytest.raises(FrameRefused, match=r"^frame \[1\]: t .* ahead of the server's clock") as caught:
        parse_frames(body, now=NOW)

    assert (caught.value.field, caught.value.status) == ("[1].t", 422)


def test_it_refuses_a_t_too_large_for_a_float_naming_the_field():
    error = rejected(changed("t", 10**400), r"t is out of range for a float", "t")

    assert error.status == 400


# ----------------------------------------------------------------------------- boundaries


def test_it_does_not_import_django():
    probe = "import sys, metering.ingest.frames; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"

    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"

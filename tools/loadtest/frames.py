"""The load test's gateways: the demo house, one copy per location, and its frames pre-encoded.

Every frame a gateway sends holds the same samples: steady 50 Hz sine waves of known power on
each CT (:data:`CT_POWER_W`), so the energy the server must have counted is known exactly
(:func:`expected_wh`). Only ``seq`` and ``t`` change from frame to frame; they are patched
into a payload built once per gateway (binary: two header fields; JSON: fixed-width digits),
so the load generator spends no CPU on encoding.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[2]
DEMO_FILE = REPO / "devices" / "demo" / "demo_installation.json"
FS_HZ = 6400.0
MAINS_HZ = 50.0
V_RMS = 230.0
PHASE_SHIFT = {"L1": 0.0, "L2": -2 * math.pi / 3, "L3": 2 * math.pi / 3}
# Per CT input of the demo house (by the letter's position in its load), active power in W and
# power factor: all imports, so registers only grow.
CT_POWER_W = (900.0, 700.0, 500.0, 1200.0, 1500.0, 1400.0, 1300.0, 800.0, 300.0)
POWER_FACTOR = 0.95
# Binary header (docs/frames.md): seq (u64) at byte 14, t (f64) at byte 22.
BINARY_SEQ_T = struct.Struct("<Qd")
BINARY_SEQ_AT = 14
# A gateway's seq starts above SEQ_BASE, so that it always has 10 digits (JSON numbers have no
# leading zeros): the JSON payload's seq and t are patched in place with the same widths.
SEQ_BASE = 1_000_000_000
SEQ_PLACEHOLDER = SEQ_BASE
T_PLACEHOLDER = 1_700_000_000.0
SEQ_DIGITS = 10
T_CHARS = 14  # "%.3f" of a Unix time until 2286: 1764090000.000


def tag_of(index: int) -> str:
    """The tag added to every serial of location ``index`` (``5010000001-LT0007``, ``PB-DEMO-0001-LT0007``)."""
    return f"LT{index:04d}"


def serials_in(doc: object) -> set[str]:
    """Every ``serial`` in an installation document, at any depth."""
    if isinstance(doc, dict):
        found = {doc["serial"]} if isinstance(doc.get("serial"), str) else set()
        return found.union(*(serials_in(value) for value in doc.values()))
    if isinstance(doc, list):
        return set().union(*(serials_in(value) for value in doc))
    return set()


def installation(index: int) -> dict:
    """The demo house's installation document with serials and a name of its own: every serial
    (and every CT reference made of one) gets the location's tag."""
    text = DEMO_FILE.read_text(encoding="utf-8")
    for serial in sorted(serials_in(json.loads(text)), key=len, reverse=True):
        text = text.replace(f'"{serial}"', f'"{serial}-{tag_of(index)}"').replace(
            f'"{serial}/', f'"{serial}-{tag_of(index)}/'
        )
    doc = json.loads(text)
    doc["location"]["name"] = f"Load test {index:04d}"
    return doc


def ct_phases(doc: dict) -> dict[str, str]:
    """CT reference -> the phase its load says it measures."""
    return {ct["ct"]: ct["phase"] for load in doc["loads"] for ct in load["cts"]}


def ct_power(doc: dict) -> dict[str, float]:
    """CT reference -> the active power (W) its frames carry."""
    return {ref: CT_POWER_W[n % len(CT_POWER_W)] for n, ref in enumerate(ct_phases(doc))}


def frame_doc(doc: dict, samples: int, seq: int = 1, t: float = T_PLACEHOLDER) -> dict:
    """A JSON-able frame for the installation ``doc``: ``samples`` at 6,400 Hz on L1-L3 and every CT."""
    time_s = np.arange(samples) / FS_HZ
    omega = 2 * math.pi * MAINS_HZ
    voltages = {
        phase: (V_RMS * math.sqrt(2) * np.sin(omega * time_s + shift)).round(3).tolist()
        for phase, shift in PHASE_SHIFT.items()
    }
    lag = math.acos(POWER_FACTOR)
    powers = ct_power(doc)
    currents = {}
    for ref, phase in ct_phases(doc).items():
        i_rms = powers[ref] / (V_RMS * POWER_FACTOR)
        wave = i_rms * math.sqrt(2) * np.sin(omega * time_s + PHASE_SHIFT[phase] - lag)
        currents[ref] = wave.round(5).tolist()
    return {
        "v": 1,
        "powerbox": doc["powerbox"]["serial"],
        "seq": seq,
        "t": t,
        "fs": FS_HZ,
        "voltages": voltages,
        "currents": currents,
    }


def expected_wh(doc: dict, frames: int, samples: int) -> dict[str, float]:
    """CT reference -> the energy (Wh) ``frames`` frames of ``samples`` hold."""
    hours = frames * samples / FS_HZ / 3600
    return {ref: power * hours for ref, power in ct_power(doc).items()}


@dataclass
class BinaryPayload:
    """One gateway's binary frame; :meth:`make` patches seq and t into it."""

    body: bytearray

    def make(self, seq: int, t: float) -> bytes:
        BINARY_SEQ_T.pack_into(self.body, BINARY_SEQ_AT, seq, t)
        return bytes(self.body)


@dataclass
class JsonPayload:
    """One gateway's JSON frame (or MQTT envelope); :meth:`make` patches seq and t into it."""

    body: bytearray
    seq_at: int
    t_at: int

    @classmethod
    def of(cls, document: dict) -> JsonPayload:
        body = bytearray(orjson.dumps(document))
        seq_key, t_key = b'"seq":%d' % SEQ_PLACEHOLDER, b'"t":%r' % T_PLACEHOLDER
        seq_at, t_at = body.index(seq_key) + len(b'"seq":'), body.index(t_key) + len(b'"t":')
        # Widen the placeholders once, so every patch has the same width.
        body[t_at : t_at + len(t_key) - len(b'"t":')] = b"%.3f" % T_PLACEHOLDER
        return cls(body, seq_at, t_at)

    def make(self, seq: int, t: float) -> bytes:
        seq_text, t_text = b"%d" % seq, b"%.3f" % t
        if len(seq_text) != SEQ_DIGITS or len(t_text) != T_CHARS:
            raise ValueError(f"seq {seq} or t {t} does not fit the payload's fixed widths")
        self.body[self.seq_at : self.seq_at + SEQ_DIGITS] = seq_text
        self.body[self.t_at : self.t_at + T_CHARS] = t_text
        return bytes(self.body)


def binary_payload(doc: dict, samples: int) -> BinaryPayload:
    from metering.ingest.frames import encode_binary, frame_from_dict

    frame = frame_from_dict(frame_doc(doc, samples, seq=1, t=T_PLACEHOLDER), now=T_PLACEHOLDER)
    return BinaryPayload(bytearray(encode_binary(frame)))


def json_payload(doc: dict, samples: int) -> JsonPayload:
    return JsonPayload.of(frame_doc(doc, samples, seq=SEQ_PLACEHOLDER))


def mqtt_payload(doc: dict, samples: int, token: str) -> JsonPayload:
    return JsonPayload.of({"token": token, "frame": frame_doc(doc, samples, seq=SEQ_PLACEHOLDER)})

"""End-to-end ingest benchmark: ``python -m tools.bench_ingest [--seconds S]``.

Starts a real daphne server on 127.0.0.1 with its own SQLite database (or PostgreSQL/Redis when
``--services`` and DATABASE_URL/REDIS_URL are set), installs a location with the reference
Power Box (3 voltages + 28 CTs on 7 CT Hubs) and streams the reference frame (6,400 Hz, 1 s)
at it, each with the next ``seq`` and ``t``:

- HTTP ``POST /api/v1/ingest/frames`` with JSON bodies, two keep-alive clients;
- WebSocket ``/ws/ingest/`` with compact binary frames, a window of 8 frames in flight.

Baselines in the same run, same bytes, same server: HTTP with a wrong token (the server
receives and buffers the body, then refuses it — transport and Django only) and the frame
pipeline in this process without the network, split into decoding, computing and storing.
Loopback only, bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
T0 = 1_764_090_000.0
HUBS = 7
FS_HZ = 6400


def reference_installation() -> dict:
    hubs = [{"serial": f"CTH-B{k}", "inputs": dict.fromkeys("ABCD", "AC-CT-100A")} for k in range(1, HUBS + 1)]
    refs = [f"CTH-B{k}/{letter}" for k in range(1, HUBS + 1) for letter in "ABCD"]
    phases = ("L1", "L2", "L3")
    loads = [
        {"name": "Grid", "kind": "grid", "cts": [{"ct": refs[i], "phase": phases[i]} for i in range(3)]},
        {"name": "Solar", "kind": "solar", "cts": [{"ct": refs[3 + i], "phase": phases[i]} for i in range(3)]},
    ]
    for n, ref in enumerate(refs[6:], start=1):
        loads.append({"name": f"Circuit {n}", "kind": "circuit", "cts": [{"ct": ref, "phase": phases[n % 3]}]})
    return {
        "location": {"name": "Bench", "timezone": "Europe/Brussels", "topology": "3P+N", "frequency": 50},
        "gateway": {"model": "genius", "serial": "GW-BENCH", "connectivity": "ethernet"},
        "powerbox": {"serial": "PB-BENCH"},
        "ct_hubs": hubs,
        "loads": loads,
    }


def reference_frame(seq: int = 1, t: float = T0) -> dict:
    rng = np.random.default_rng(7)
    n = FS_HZ
    time_s = np.arange(n) / FS_HZ
    w = 2 * np.pi * 50.0
    shifts = {"L1": 0.0, "L2": -2 * np.pi / 3, "L3": 2 * np.pi / 3}
    voltages = {
        p: (325 * np.sin(w * time_s + s) + 6 * np.sin(3 * (w * time_s + s))).round(2).tolist()
        for p, s in shifts.items()
    }
    installation = reference_installation()
    currents = {}
    for load in installation["loads"]:
        for ct in load["cts"]:
            s = shifts[ct["phase"]]
            amp, lag = rng.uniform(0.5, 30), rng.uniform(-0.3, 0.9)
            wave = amp * np.sin(w * time_s + s - lag) + 0.2 * amp * np.sin(5 * (w * time_s + s - lag))
            currents[ct["ct"]] = wave.round(4).tolist()
    return {"v": 1, "powerbox": "PB-BENCH", "seq": seq, "t": t, "fs": FS_HZ, "voltages": voltages, "currents": currents}


SEQ0 = 1_000_000_000


class JsonFrames:
    """The reference frame as JSON bytes; frame ``k`` has seq SEQ0 + k and t T0 + k (patched in place)."""

    def __init__(self):
        import orjson

        self.body = bytearray(orjson.dumps(reference_frame(seq=1_000_000_000, t=T0)))
        self.seq_at = self.body.index(b'"seq":1000000000') + len(b'"seq":')
        self.t_at = self.body.index(b'"t":1764090000.0') + len(b'"t":')

    def make(self, k: int) -> bytes:
        self.body[self.seq_at : self.seq_at + 10] = b"%010d" % (SEQ0 + k)
        self.body[self.t_at : self.t_at + 12] = b"%012.1f" % (T0 + k)
        return bytes(self.body)


class BinaryFrames:
    def __init__(self):
        from metering.ingest.frames import _HEADER, encode_binary, frame_from_dict

        self.body = bytearray(encode_binary(frame_from_dict(reference_frame())))
        # Header: magic, v, flags, n_volt, n_curr, n_inputs, n, seq (u64), t (f64), fs
        self.seq_at = struct.calcsize("<4sBBBBHI")
        self.header = _HEADER

    def make(self, k: int) -> bytes:
        struct.pack_into("<Qd", self.body, self.seq_at, SEQ0 + k, T0 + k)
        return bytes(self.body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The benchmarks run production settings in one server process over plain HTTP on loopback: no
# redirect to HTTPS, cookies that travel without TLS, and no ingest stream even with Redis (the
# server meters the frames itself; there are no run_ingest workers to answer).
PLAIN_HTTP = {
    "SECURE_SSL_REDIRECT": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "SECURE_HSTS_SECONDS": "0",
    "INGEST_STREAM_URL": "",
}


def setup_django(var_dir: str, services: bool) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.update({"VAR_DIR": var_dir, "SECRET_KEY": "bench", "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1,localhost"})
    os.environ.update(PLAIN_HTTP)
    if not services:
        for name in ("DATABASE_URL", "REDIS_URL", "MQTT_URL"):
            os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def install() -> tuple[int, str]:
    from devices.installation import import_installation
    from devices.models import Location

    Location.objects.filter(name="Bench").delete()
    result = import_installation(reference_installation(), rotate_token=True)
    return result.location.pk, result.gateway_token


def start_server(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "config.server", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("daphne did not start: " + server.stderr.read().decode()[-2000:])


def http_rate(
    port: int, token: str, frames: JsonFrames, seconds: float, start_seq: int, clients: int = 2
) -> tuple[float, int, int]:
    """Frames per second over HTTP with ``clients`` keep-alive connections; (rate, ok, failed)."""
    lock = threading.Lock()
    counters = {"seq": start_seq, "ok": 0, "failed": 0}
    deadline = time.monotonic() + seconds

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline:
            with lock:
                counters["seq"] += 1
                body = frames.make(counters["seq"])
            conn.request("POST", "/api/v1/ingest/frames", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            with lock:
                counters["ok" if response.status in (200, 401) else "failed"] += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return counters["ok"] / elapsed, counters["ok"], counters["failed"]


async def ws_rate(
    port: int, token: str, frames: BinaryFrames, seconds: float, start_seq: int, window: int = 8
) -> tuple[float, int, int]:
    import orjson
    import websockets

    ok = failed = 0
    seq = start_seq
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/ingest/",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
        compression=None,
    ) as socket_:
        in_flight = 0
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline or in_flight:
            while in_flight < window and time.monotonic() < deadline:
                seq += 1
                await socket_.send(frames.make(seq))
                in_flight += 1
            reply = orjson.loads(await socket_.recv())
            in_flight -= 1
            if reply.get("type") == "ack" and reply.get("status") in ("ok", "gap"):
                ok += 1
            else:
                failed += 1
        elapsed = time.monotonic() - started
    return ok / elapsed, ok, failed


def in_process_breakdown(token: str, repeats: int = 30) -> dict[str, float]:
    """Milliseconds per frame for each stage, without the network."""
    from devices.models import Gateway
    from metering.core import compute_frame
    from metering.ingest.frames import decode_binary, parse_frames
    from metering.ingest.process import ingest_frames
    from metering.installed import installed
    from metering.models import PowerBoxState

    gateway = Gateway.for_token(token)
    setup = installed(gateway.location_id)
    json_frames, binary_frames = JsonFrames(), BinaryFrames()
    state = PowerBoxState.objects.filter(powerbox_id=setup.powerbox_id).first()
    seq = (state.last_seq - SEQ0 if state and state.last_seq else 0) + 10
    timings = {"decode JSON": [], "decode binary": [], "compute": [], "store (ingest minus compute)": []}
    for k in range(repeats):
        body, binary = json_frames.make(seq + k), binary_frames.make(seq + k)
        t = time.perf_counter()
        parse_frames(body)
        timings["decode JSON"].append(time.perf_counter() - t)
        t = time.perf_counter()
        frame = decode_binary(binary)
        timings["decode binary"].append(time.perf_counter() - t)
        t = time.perf_counter()
        compute_frame(frame.voltages, frame.currents, frame.fs_hz, setup.meter)
        compute_s = time.perf_counter() - t
        timings["compute"].append(compute_s)
        t = time.perf_counter()
        ingest_frames(gateway, [frame])
        timings["store (ingest minus compute)"].append(time.perf_counter() - t - compute_s)
    return {name: 1000 * float(np.median(values)) for name, values in timings.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each measured stream")
    parser.add_argument("--services", action="store_true", help="use DATABASE_URL / REDIS_URL from the environment")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="infinity-bench-") as var_dir:
        setup_django(var_dir, args.services)
        from django.conf import settings

        location_id, token = install()
        print(
            f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
            f"channel layer: {settings.CHANNEL_LAYERS['default']['BACKEND'].rsplit('.', 1)[-1]}"
        )
        print(f"reference frame: 3 voltages + {HUBS * 4} CTs, {FS_HZ} Hz, 1 s")
        json_frames, binary_frames = JsonFrames(), BinaryFrames()
        print(f"  JSON {len(json_frames.body) / 1e6:.2f} MB, binary {len(binary_frames.body) / 1e6:.2f} MB")

        stages = in_process_breakdown(token)
        print("in-process, per frame (median):")
        for name, ms in stages.items():
            print(f"  {name:<30} {ms:7.2f} ms")
        json_pipeline = stages["decode JSON"] + stages["compute"] + stages["store (ingest minus compute)"]
        binary_pipeline = stages["decode binary"] + stages["compute"] + stages["store (ingest minus compute)"]
        print(
            f"  => pipeline alone: JSON {1000 / json_pipeline:6.0f} frames/s, binary {1000 / binary_pipeline:6.0f} frames/s"
        )

        port = free_port()
        server = start_server(port)
        try:
            base, _, _ = http_rate(port, "wrong-token", json_frames, args.seconds / 2, 0)
            print(f"HTTP baseline (same JSON bodies, refused token):   {base:7.1f} requests/s")
            rate, ok, failed = http_rate(port, token, json_frames, args.seconds, 100)
            print(
                f"HTTP JSON ingest end to end:                        {rate:7.1f} frames/s ({ok} stored, {failed} failed; target >= 30)"
            )
            rate, ok, failed = asyncio.run(ws_rate(port, token, binary_frames, args.seconds, 100_000))
            print(
                f"WebSocket binary ingest end to end:                 {rate:7.1f} frames/s ({ok} stored, {failed} failed; target >= 300)"
            )
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()

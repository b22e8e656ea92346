"""Benchmark of the metering core: ``python -m tools.bench_core``.

Builds the reference frame of a fully equipped Power Box (3 voltages and 28 CTs, 7 CT Hubs,
fs = 6,400 Hz, 1 s, 50 Hz mains with harmonics, noise and sensor offsets) and reports,
single-threaded, for float64 and float32 frames:

- ``compute_frame``: frames per second per core, chained with the previous frame's carry as
  in production, and without a carry;
- the memory roofline: the time numpy needs to read the frame's bytes once (``sum`` of an
  array of the same size and dtype), measured in the same run, once with the array hot in
  the caches and once read from beyond the 2nd-level cache (16 frame-sized arrays in turn),
  and the ratios to both. The target (>= 2,000 frames/s and within 6x the roofline) is judged
  against the beyond-L2 one: a frame arrives in memory from the network, not hot in a cache;
- the same for two sources of samples: separate arrays, one per channel (what a caller that
  builds its own arrays hands over; the core copies the currents into one block), and the
  rows of one block as :func:`metering.ingest.frames.decode_binary` returns them (used in place,
  through the core's pointer check), and that block itself to ``compute_block`` (what ingest
  hands over);
- the part of a frame that streams all its bytes (the currents' one copy when separate,
  their products with the basis rows, their squares), and ``to_dict``.

The machine is shared (2 cores): every figure is CPU time of this thread, the median of
several rounds, each round the best mean of blocks of calls, and the rounds interleave the
frame and the rooflines.
"""

from __future__ import annotations

import os

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NVPL_NUM_THREADS")
for _name in _THREAD_VARS:  # before numpy is imported: one core
    os.environ.setdefault(_name, "1")

import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from metering.core import Carry, CtChannel, FrameResult, MeterConfig, compute_block, compute_frame  # noqa: E402
from metering.core.frame import _fast_blocks, _products  # noqa: E402
from metering.core.synth import Frame, distorted, sample_frame, star_voltages  # noqa: E402
from metering.ingest.frames import SampleFrame, decode_binary, encode_binary  # noqa: E402

FS_HZ = 6400.0
F_HZ = 49.98
N_SAMPLES = 6400
N_HUBS = 7
TARGET_FRAMES_PER_S = 2000.0
TARGET_RATIO = 6.0
SOURCES = ("arrays", "decoded", "block")
"""``arrays``: one array per channel, to :func:`compute_frame`; ``decoded``: the rows of one
block as :func:`decode_binary` gives them, to :func:`compute_frame`; ``block``: that block
itself, to :func:`compute_block` (no per-row checks; what ingest does)."""


def reference_config() -> MeterConfig:
    """28 CTs on 7 CT Hubs: grid, solar, battery (3 phases each) and 19 circuits."""
    cts = [f"CTH-{hub:04d}/{letter}" for hub in range(1, N_HUBS + 1) for letter in "ABCD"]
    channels = []
    for k, ct in enumerate(cts):
        phase = f"L{k % 3 + 1}"
        if k < 3:
            channels.append(CtChannel(ct, "Grid", "grid", phase))
        elif k < 6:
            channels.append(CtChannel(ct, "Solar", "solar", phase))
        elif k < 9:
            channels.append(CtChannel(ct, "Battery", "battery", phase))
        else:
            channels.append(CtChannel(ct, f"Circuit {k - 8}", "circuit", phase))
    return MeterConfig("3P+N", 50.0, tuple(channels))


def reference_frames(config: MeterConfig, count: int = 2, dtype: type = np.float64) -> list[Frame]:
    """``count`` consecutive 1 s frames of the reference installation, one array per channel."""
    voltage_waves = star_voltages(230.0, thd=0.03, dc=0.5)
    rng = np.random.default_rng(7)
    current_waves = {}
    for k, channel in enumerate(config.channels):
        v_phase = voltage_waves[channel.phase].fundamental[1]
        amplitude = float(rng.uniform(0.5, 40.0)) * math.sqrt(2.0)
        lag = float(rng.uniform(-0.5, 1.2))
        current_waves[channel.ct] = distorted(
            amplitude, v_phase - lag, thd=float(rng.uniform(0.05, 0.5)), seed=k, dc=0.02
        )
    frames = []
    for index in range(count):
        frame = sample_frame(
            voltage_waves,
            current_waves,
            FS_HZ,
            F_HZ,
            N_SAMPLES,
            noise=0.001,
            seed=index,
            t0_s=index * N_SAMPLES / FS_HZ,
        )
        frame.voltages = {k: v.astype(dtype) for k, v in frame.voltages.items()}
        frame.currents = {k: c.astype(dtype) for k, c in frame.currents.items()}
        frames.append(frame)
    return frames


def decoded(frame: Frame, seq: int, dtype: type = np.float64) -> Frame:
    """The frame through :func:`encode_binary` and :func:`decode_binary`: rows of one block.

    The decoder gives float64; for float32 the decoded block is converted as a whole, which is
    what a decoder producing float32 would hand over.
    """
    sample = SampleFrame(1, "PB-BENCH", seq, 1.7e9 + seq, FS_HZ, frame.voltages, frame.currents)
    out = decode_binary(encode_binary(sample))
    if dtype == np.float64:
        return Frame(frame.fs_hz, frame.f_hz, out.voltages, out.currents)
    rows = dict(zip([*out.voltages, *out.currents], np.array([*out.voltages.values(), *out.currents.values()], dtype)))
    return Frame(frame.fs_hz, frame.f_hz, {k: rows[k] for k in out.voltages}, {k: rows[k] for k in out.currents})


def best_time(run: Callable[[], object], budget_s: float, per_block: int = 10) -> float:
    """CPU seconds per call: the fastest mean over blocks of ``per_block`` calls within ``budget_s``.

    The CPU time of this thread (``time.thread_time``), not the wall time: per-core throughput,
    without the time the other processes on the 2 cores take it away; the minimum over blocks
    discards most of the blocks whose caches another process disturbed.
    """
    run()
    best = math.inf
    deadline = time.perf_counter() + budget_s
    while True:
        start = time.thread_time()
        for _ in range(per_block):
            run()
        best = min(best, (time.thread_time() - start) / per_block)
        if time.perf_counter() >= deadline:
            return best


_POOLS: dict[tuple[str, int], list[np.ndarray]] = {}


def measure(
    dtype: type = np.float64, source: str = "arrays", rounds: int = 5, budget_s: float = 0.1
) -> dict[str, float]:
    """Seconds per frame and per roofline read, medians over ``rounds`` interleaved rounds.

    Returns ``frame_s`` (chained with a carry), ``fresh_s`` (no carry), ``hot_s`` and
    ``cold_s`` (the rooflines: one ``sum`` over an array of the frame's size and dtype, hot in
    the caches, and read from beyond L2), ``stream_s`` (the currents' copy if separate, their
    products and squares), ``ratio_hot`` and ``ratio_cold`` (``frame_s`` over each roofline),
    ``frames_per_s``, and ``frame_min_s`` / ``frame_max_s`` over the rounds.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    config = reference_config()
    frames = reference_frames(config, 2, dtype)
    if source != "arrays":
        frames = [decoded(frame, k, dtype) for k, frame in enumerate(frames)]
    first, second = frames
    carry = compute_frame(first.voltages, first.currents, FS_HZ, config).carry
    if source == "block":  # the decoded rows' block, as frames could hand it over
        keys, ids = tuple(second.voltages), tuple(second.currents)
        block = second.voltages[keys[0]].base
        nv = len(keys)

        def compute(previous: Carry | None = None) -> FrameResult:
            return compute_block(block[:nv], keys, block[nv:], ids, FS_HZ, config, previous)

    else:

        def compute(previous: Carry | None = None) -> FrameResult:
            return compute_frame(second.voltages, second.currents, FS_HZ, config, previous)

    def chained() -> FrameResult:
        return compute(carry)

    def fresh() -> FrameResult:
        return compute()

    n_rows = len(second.voltages) + len(config.channels)
    hot = np.ones((n_rows, N_SAMPLES), dtype=dtype)
    # The same bytes, but each read comes from beyond the 2nd-level cache: 16 frame-sized
    # arrays read in turn (25 MB for float64).
    pool = _POOLS.setdefault((np.dtype(dtype).name, n_rows), [np.ones_like(hot) for _ in range(16)])
    turn = [0]

    def cold() -> None:
        turn[0] = (turn[0] + 1) % len(pool)
        pool[turn[0]].sum()

    rows = [second.currents[channel.ct] for channel in config.channels]
    _, in_place = _fast_blocks(list(second.voltages.values()), rows)
    basis = np.ones((6, N_SAMPLES), dtype=dtype)

    def stream() -> None:  # what streams all the currents' bytes, as compute_frame does it
        _products(np.array(rows) if isinstance(in_place, list) else in_place, basis)

    timings: dict[str, list[float]] = {name: [] for name in ("frame_s", "fresh_s", "hot_s", "cold_s", "stream_s")}
    for _ in range(rounds):
        timings["frame_s"].append(best_time(chained, 2 * budget_s))
        timings["cold_s"].append(best_time(cold, budget_s / 2, 20))
        timings["fresh_s"].append(best_time(fresh, budget_s))
        timings["hot_s"].append(best_time(hot.sum, budget_s / 2, 20))
        timings["stream_s"].append(best_time(stream, budget_s / 2))
    out = {name: statistics.median(values) for name, values in timings.items()}
    out["frame_min_s"], out["frame_max_s"] = min(timings["frame_s"]), max(timings["frame_s"])
    out["ratio_hot"] = out["frame_s"] / out["hot_s"]
    out["ratio_cold"] = out["frame_s"] / out["cold_s"]
    out["frames_per_s"] = 1.0 / out["frame_s"]
    out["frame_bytes"] = float(hot.nbytes)
    return out


def blas_kernel() -> str:
    """The BLAS library and kernel numpy runs (threadpoolctl, when installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS kernel: unknown (threadpoolctl not installed)"
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    return "; ".join(
        f"{info.get('internal_api')} {info.get('version')} kernel {info.get('architecture')}" for info in blas
    )


def report(name: str, source: str, m: dict[str, float]) -> None:
    label = {
        "arrays": "separate arrays -> compute_frame   ",
        "decoded": "decode_binary rows -> compute_frame",
        "block": "decode_binary block -> compute_block",
    }[source]
    met = m["frames_per_s"] >= TARGET_FRAMES_PER_S and m["ratio_cold"] <= TARGET_RATIO
    print(
        f"[{name}] {label}: {m['frames_per_s']:5.0f} frames/s, {m['frame_s'] * 1e3:.3f} ms/frame with carry "
        f"({m['frame_min_s'] * 1e3:.3f}..{m['frame_max_s'] * 1e3:.3f}), {m['fresh_s'] * 1e3:.3f} without"
    )
    print(
        f"[{name}] {label}: {m['ratio_cold']:.1f}x roofline beyond L2, {m['ratio_hot']:.1f}x cache-hot "
        f"(target {TARGET_FRAMES_PER_S:.0f}/s and {TARGET_RATIO:g}x beyond L2: {'met' if met else 'NOT met'}); streaming part "
        f"{m['stream_s'] * 1e3:.3f} ms ({m['stream_s'] / m['cold_s']:.1f}x beyond L2)"
    )


def main() -> None:
    started = time.perf_counter()
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}; {blas_kernel()}")
    print("threads: " + ", ".join(f"{name}={os.environ.get(name)}" for name in _THREAD_VARS))
    blas_env = ", ".join(
        f"{name}={os.environ.get(name, '(unset)')}" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    )
    print(f"{blas_env} (a forced core type may pick slower kernels than this CPU allows)")
    print(
        f"frame: 3 voltages + {len(reference_config().channels)} CTs x {N_SAMPLES} samples at {FS_HZ:g} Hz; "
        "CPU time, medians of 5 interleaved rounds; target >= 2000 frames/s and <= 6x the roofline beyond L2"
    )
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        results = {source: measure(dtype, source) for source in SOURCES}
        m = results["arrays"]
        print(
            f"[{name}] roofline, read {m['frame_bytes'] / 1e6:.2f} MB once: {m['hot_s'] * 1e3:.3f} ms cache-hot sum(), "
            f"{m['cold_s'] * 1e3:.3f} ms beyond L2"
        )
        for source, measured in results.items():
            report(name, source, measured)
    config = reference_config()
    frame = reference_frames(config, 1)[0]
    t_dict = statistics.median(
        best_time(lambda: compute_frame(frame.voltages, frame.currents, FS_HZ, config).to_dict(), 0.2) for _ in range(3)
    )
    print(f"[float64] compute_frame + to_dict (JSON-ready objects): {t_dict * 1e3:.3f} ms/frame")
    print(f"bench took {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

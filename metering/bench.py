"""Benchmark of the metering core: ``python -m metering.bench``.

Builds the reference frame of a fully equipped Power Box (3 voltages and 28 CTs, 7 CT Hubs,
fs = 6,400 Hz, 1 s, 50 Hz mains with harmonics, noise and sensor offsets) as the float64
arrays ingest hands over, and reports, single-threaded:

- ``compute_frame``: frames per second per core, chained with the previous frame's carry as
  in production, and without a carry;
- the memory roofline: the time numpy needs to read the frame's bytes once (``sum`` of an
  array of the same size and dtype), measured in the same run, once with the array hot in
  the caches and once read from beyond the 2nd-level cache, and the ratios;
- the part of a frame that streams all its bytes: the one conversion of the 28 current
  arrays into a block, the products with the basis rows and the sums of squares;
- the same for float32 frames (the core keeps float32 inputs in float32);
- ``to_dict`` (building the per-CT and per-load objects for JSON), which is not part of the
  computation.
"""

from __future__ import annotations

import os

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NVPL_NUM_THREADS")
for _name in _THREAD_VARS:  # before numpy is imported: one core
    os.environ.setdefault(_name, "1")

import itertools  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from metering.core import CtChannel, FrameResult, MeterConfig, compute_frame  # noqa: E402
from metering.core.frame import _products  # noqa: E402
from metering.core.synth import Frame, distorted, sample_frame, star_voltages  # noqa: E402

FS_HZ = 6400.0
F_HZ = 49.98
N_SAMPLES = 6400
N_HUBS = 7


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
    """``count`` consecutive 1 s frames of the reference installation."""
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


def best_time(run: Callable[[], object], budget_s: float = 1.5, per_block: int = 10) -> float:
    """Seconds per call: the fastest mean over blocks of ``per_block`` calls within ``budget_s``.

    The minimum over blocks discards the blocks another process interrupted.
    """
    run()
    best = math.inf
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(per_block):
            run()
        best = min(best, (time.perf_counter() - start) / per_block)
    return best


def bench_dtype(config: MeterConfig, dtype: type) -> None:
    frames = reference_frames(config, 2, dtype)
    first = compute_frame(frames[0].voltages, frames[0].currents, FS_HZ, config)
    second = frames[1]

    def chained() -> FrameResult:
        return compute_frame(second.voltages, second.currents, FS_HZ, config, first.carry)

    def fresh() -> FrameResult:
        return compute_frame(second.voltages, second.currents, FS_HZ, config)

    n_rows = len(frames[0].voltages) + len(config.channels)
    hot = np.ones((n_rows, N_SAMPLES), dtype=dtype)
    # The same bytes, but each read comes from beyond the 2nd-level cache: 16 frame-sized arrays.
    pool = [np.ones((n_rows, N_SAMPLES), dtype=dtype) for _ in range(16)]
    turn = itertools.cycle(pool)

    rows = [second.currents[channel.ct] for channel in config.channels]
    basis = np.ones((6, N_SAMPLES), dtype=dtype)

    def floor() -> None:  # the currents' single conversion, their products and squares
        block = np.asarray(rows, dtype=dtype)
        _products(block, basis)
        np.vecdot(block, block)

    t_frame = best_time(chained, 3.0)
    t_floor = best_time(floor, 1.0)
    t_fresh = best_time(fresh, 1.5)
    t_hot = best_time(hot.sum, 1.0, 50)
    t_cold = best_time(lambda: next(turn).sum(), 1.0, 50)
    name = np.dtype(dtype).name
    print(f"[{name}] frame: 3 voltages + {len(config.channels)} CTs x {N_SAMPLES} samples at {FS_HZ:g} Hz")
    print(f"[{name}] compute_frame: {1 / t_frame:.0f} frames/s ({t_frame * 1e3:.3f} ms/frame), with carry")
    print(f"[{name}] compute_frame: {1 / t_fresh:.0f} frames/s ({t_fresh * 1e3:.3f} ms/frame), without carry")
    print(f"[{name}] roofline (read {hot.nbytes / 1e6:.2f} MB once): {t_hot * 1e3:.3f} ms, cache-hot sum()")
    print(f"[{name}] roofline (read {hot.nbytes / 1e6:.2f} MB once): {t_cold * 1e3:.3f} ms, from beyond L2")
    print(f"[{name}] ratio: {t_frame / t_hot:.1f}x roofline (cache-hot), {t_frame / t_cold:.1f}x (beyond L2)")
    print(
        f"[{name}] of which converting the currents once + their products + their squares: "
        f"{t_floor * 1e3:.3f} ms ({t_floor / t_hot:.1f}x cache-hot roofline)"
    )
    if dtype is np.float64:
        t_dict = best_time(lambda: chained().to_dict(), 1.0)
        print(f"[{name}] compute_frame + to_dict: {1 / t_dict:.0f} frames/s ({t_dict * 1e3:.3f} ms/frame)")


def main() -> None:
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}")
    print("threads: " + ", ".join(f"{name}={os.environ.get(name)}" for name in _THREAD_VARS))
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if coretype:
        print(f"note: OPENBLAS_CORETYPE={coretype} is set; OpenBLAS may use slower kernels than this CPU allows")
    config = reference_config()
    bench_dtype(config, np.float64)
    bench_dtype(config, np.float32)


if __name__ == "__main__":
    main()

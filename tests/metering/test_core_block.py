"""Frames whose channels are rows of one block: used in place, same results as copies.

:mod:`metering.ingest.frames` decodes a frame into one ``(channels, samples)`` block and hands out its
rows. The core uses those rows as a view of the block when they are the configuration's
channels in its order, and copies them otherwise; :func:`compute_block` takes the blocks
themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from metering.core import CtChannel, MeterConfig, compute_block, compute_frame
from metering.core.frame import _fast_blocks
from metering.core.synth import distorted, sample_frame, star_voltages
from metering.ingest.frames import SampleFrame, decode_binary, encode_binary

FS = 6400.0
CTS = ("CTH-0001/A", "CTH-0001/B", "CTH-0001/C", "CTH-0001/D")
CONFIG = MeterConfig(
    "3P+N",
    50,
    (
        CtChannel(CTS[0], "Grid", "grid", "L1"),
        CtChannel(CTS[1], "Grid", "grid", "L2"),
        CtChannel(CTS[2], "Solar", "solar", "L3", reversed=True),
        CtChannel(CTS[3], "Oven", "appliance", "L1"),
    ),
)


def signals(n: int = 6400, extra: tuple[str, ...] = ()):
    voltages = star_voltages(230.0, thd=0.03, dc=0.4)
    waves = {
        ct: distorted(3.0 + 4 * k, voltages[f"L{k % 3 + 1}"].fundamental[1] - 0.3 * k, thd=0.3, seed=k, dc=0.05)
        for k, ct in enumerate(CTS + extra)
    }
    return sample_frame(voltages, waves, FS, 49.9, n, noise=0.001, seed=3)


def as_block(voltages: dict, currents: dict) -> tuple[dict, dict, np.ndarray]:
    """The channels as rows of one block, voltages first (as metering.ingest.frames decodes them)."""
    block = np.array([*voltages.values(), *currents.values()])
    rows = dict(zip([*voltages, *currents], block))
    return {k: rows[k] for k in voltages}, {k: rows[k] for k in currents}, block


def assert_same(a, b, rtol: float = 1e-12) -> None:
    for field in ("p_w", "q_var", "s_va", "i_a", "pf", "energy_import_wh", "energy_export_wh"):
        np.testing.assert_allclose(getattr(a.ct, field), getattr(b.ct, field), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.load.p_w, b.load.p_w, rtol=rtol)
    assert a.frequency_hz == pytest.approx(b.frequency_hz, rel=1e-14)
    assert (a.n_cycles, a.energy_s, a.carry.n_samples) == (b.n_cycles, b.energy_s, b.carry.n_samples)


def test_it_uses_consecutive_rows_of_a_block_in_place():
    frame = signals()
    voltages, currents, block = as_block(frame.voltages, frame.currents)
    _, i_block = _fast_blocks(list(voltages.values()), list(currents.values()))
    assert np.shares_memory(i_block, block)
    np.testing.assert_array_equal(i_block, block[3:])
    assert_same(
        compute_frame(voltages, currents, FS, CONFIG), compute_frame(frame.voltages, frame.currents, FS, CONFIG)
    )


def test_it_copies_rows_in_another_order_or_with_other_cts_between():
    frame = signals(extra=("CTH-0002/A",))
    shuffled = {ct: frame.currents[ct] for ct in (CTS[1], CTS[0], "CTH-0002/A", CTS[3], CTS[2])}
    voltages, currents, block = as_block(frame.voltages, shuffled)
    _, i_source = _fast_blocks(list(voltages.values()), [currents[ct] for ct in CTS])
    assert isinstance(i_source, list)  # not consecutive: copied once, later
    separate = {ct: frame.currents[ct].copy() for ct in CTS}
    assert_same(compute_frame(voltages, currents, FS, CONFIG), compute_frame(frame.voltages, separate, FS, CONFIG))


@pytest.mark.parametrize("where", ["before", "after"])
def test_it_ignores_cts_of_the_frame_outside_the_configuration(where):
    frame = signals(extra=("CTH-0009/A", "CTH-0009/B"))
    names = ["CTH-0009/A", "CTH-0009/B", *CTS] if where == "before" else [*CTS, "CTH-0009/A", "CTH-0009/B"]
    voltages, currents, block = as_block(frame.voltages, {ct: frame.currents[ct] for ct in names})
    _, i_block = _fast_blocks(list(voltages.values()), [currents[ct] for ct in CTS])
    assert np.shares_memory(i_block, block)  # the configured CTs are consecutive: still a view
    separate = {ct: frame.currents[ct] for ct in CTS}
    assert_same(compute_frame(voltages, currents, FS, CONFIG), compute_frame(frame.voltages, separate, FS, CONFIG))


def test_it_copies_rows_of_one_array_that_are_not_its_consecutive_rows():
    frame = signals()
    block = np.array([*frame.voltages.values(), *frame.currents.values()])
    flat = block.ravel()
    n = block.shape[1]
    # Same base, but the third current starts 7 samples later: no view may span these.
    rows = [flat[k * n : (k + 1) * n] for k in range(3, 5)] + [flat[5 * n + 7 : 6 * n + 7], flat[6 * n : 7 * n]]
    _, i_source = _fast_blocks(list(frame.voltages.values()), rows)
    assert isinstance(i_source, list)
    # One row apart, but each straddling two rows of the base.
    rows = [flat[k * n + 7 : (k + 1) * n + 7] for k in range(2, 6)]
    _, i_source = _fast_blocks(list(frame.voltages.values()), rows)
    assert isinstance(i_source, list)
    result = compute_frame(frame.voltages, dict(zip(CTS, rows)), FS, CONFIG)
    separate = compute_frame(frame.voltages, {ct: row.copy() for ct, row in zip(CTS, rows)}, FS, CONFIG)
    np.testing.assert_array_equal(result.ct.p_w, separate.ct.p_w)
    strided = block[:, ::2]
    _, i_source = _fast_blocks(list(strided[:3]), list(strided[3:]))
    assert isinstance(i_source, list)


def test_it_meters_a_decoded_binary_frame_in_place():
    frame = signals()
    sample = SampleFrame(1, "PB-TEST", 1, 1.7e9, FS, frame.voltages, frame.currents)
    decoded = decode_binary(encode_binary(sample))
    _, i_block = _fast_blocks(list(decoded.voltages.values()), [decoded.currents[ct] for ct in CTS])
    assert isinstance(i_block, np.ndarray) and i_block.base is decoded.currents[CTS[0]].base
    # Decoding quantises to 16 bits: the same values to about 1e-4 of S.
    got = compute_frame(decoded.voltages, decoded.currents, FS, CONFIG)
    want = compute_frame(frame.voltages, frame.currents, FS, CONFIG)
    np.testing.assert_allclose(got.ct.p_w, want.ct.p_w, rtol=0, atol=1e-4 * want.ct.s_va.max())
    np.testing.assert_array_equal(
        got.ct.p_w,
        compute_frame(decoded.voltages, {k: v.copy() for k, v in decoded.currents.items()}, FS, CONFIG).ct.p_w,
    )


def test_it_names_a_bad_sample_of_a_block_frame():
    frame = signals()
    voltages, currents, block = as_block(frame.voltages, frame.currents)
    block[5, 4000] = np.nan
    with pytest.raises(ValueError, match=r"current CTH-0001/C contains NaN or infinite values"):
        compute_frame(voltages, currents, FS, CONFIG)
    block[5, 4000] = 1.0
    block[1, 6399] = np.inf  # the last sample: in the carry, not in the window
    with pytest.raises(ValueError, match=r"voltage L2 contains NaN or infinite values"):
        compute_frame(voltages, currents, FS, CONFIG)


def test_it_gives_from_blocks_what_it_gives_from_mappings():
    frame = signals(extra=("CTH-0002/A",))
    ids = (*CTS, "CTH-0002/A")
    v_block = np.array(list(frame.voltages.values()))
    i_block = np.array([frame.currents[ct] for ct in ids])

    def part(columns: slice) -> tuple[dict, dict]:
        return {k: v[columns] for k, v in frame.voltages.items()}, {ct: c[columns] for ct, c in frame.currents.items()}

    first = compute_block(v_block[:, :3000], ("L1", "L2", "L3"), i_block[:, :3000], ids, FS, CONFIG)
    again = compute_frame(*part(slice(0, 3000)), FS, CONFIG)
    assert_same(first, again)
    second = compute_block(v_block[:, 3000:], ("L1", "L2", "L3"), i_block[:, 3000:], ids, FS, CONFIG, first.carry)
    assert_same(second, compute_frame(*part(slice(3000, None)), FS, CONFIG, again.carry))


def test_it_takes_block_rows_by_name_in_any_order():
    frame = signals()
    ids = (CTS[2], CTS[0], CTS[3], CTS[1])
    result = compute_block(
        np.array([frame.voltages[k] for k in ("L3", "L1", "L2")]),
        ("L3", "L1", "L2"),
        np.array([frame.currents[ct] for ct in ids]),
        ids,
        FS,
        CONFIG,
    )
    assert_same(result, compute_frame(frame.voltages, frame.currents, FS, CONFIG))


def test_it_names_what_is_wrong_with_blocks():
    frame = signals()
    v_block = np.array(list(frame.voltages.values()))
    i_block = np.array([frame.currents[ct] for ct in CTS])
    with pytest.raises(ValueError, match=r"^current block has 4 rows for 3 names$"):
        compute_block(v_block, ("L1", "L2", "L3"), i_block, CTS[:3], FS, CONFIG)
    with pytest.raises(ValueError, match=r"no currents for CT CTH-0001/D \(load 'Oven'\) in this frame"):
        compute_block(v_block, ("L1", "L2", "L3"), i_block[:3], CTS[:3], FS, CONFIG)
    with pytest.raises(ValueError, match=r"current CTH-0001/B has 6399 samples; voltage L1 has 6400"):
        compute_block(v_block, ("L1", "L2", "L3"), [*i_block[:1], i_block[1, :-1], *i_block[2:]], CTS, FS, CONFIG)
    bad = i_block.copy()
    bad[3, 17] = np.nan
    with pytest.raises(ValueError, match=r"current CTH-0001/D contains NaN or infinite values"):
        compute_block(v_block, ("L1", "L2", "L3"), bad, CTS, FS, CONFIG)


def test_it_counts_energy_once_when_frames_are_shorter_than_the_carry():
    # After a carry of over a cycle, a frame of 40 samples: the buffer's last edge lies in the
    # carry, so every sample of that frame is carried on.
    frame = signals(n=5000)
    whole = compute_frame(frame.voltages, frame.currents, FS, CONFIG)
    rng = np.random.default_rng(1)
    results, carry, start, shorter = [], None, 0, 0
    while start < 5000:
        length = 40 if carry is not None and carry.n_samples > 140 else int(rng.integers(200, 400))
        part = slice(start, min(start + length, 5000))
        result = compute_frame(
            {k: v[part] for k, v in frame.voltages.items()},
            {k: c[part] for k, c in frame.currents.items()},
            FS,
            CONFIG,
            carry,
        )
        shorter += result.carry.n_samples > part.stop - part.start
        results.append(result)
        carry, start = result.carry, part.stop
    assert shorter > 0
    assert sum(r.energy_s for r in results) == pytest.approx(whole.energy_s, abs=1e-12)
    net = sum(r.ct.energy_import_wh - r.ct.energy_export_wh for r in results)
    # Each frame removes the product of the DC offsets it measures over its own window.
    np.testing.assert_allclose(net, whole.ct.energy_import_wh - whole.ct.energy_export_wh, rtol=1e-4)


def test_it_keeps_a_float32_frame_after_a_float64_carry_in_float64():
    frame = signals()
    first = compute_frame(
        {k: v[:3000] for k, v in frame.voltages.items()}, {k: c[:3000] for k, c in frame.currents.items()}, FS, CONFIG
    )
    second = compute_frame(
        {k: v[3000:].astype(np.float32) for k, v in frame.voltages.items()},
        {k: c[3000:].astype(np.float32) for k, c in frame.currents.items()},
        FS,
        CONFIG,
        first.carry,
    )
    assert second.carry.currents.dtype == np.float64
    exact = compute_frame(
        {k: v[3000:] for k, v in frame.voltages.items()},
        {k: c[3000:] for k, c in frame.currents.items()},
        FS,
        CONFIG,
        first.carry,
    )
    np.testing.assert_allclose(second.ct.p_w, exact.ct.p_w, rtol=0, atol=1e-5 * exact.ct.s_va.max())
    assert math.isclose(second.frequency_hz, exact.frequency_hz, abs_tol=1e-4)

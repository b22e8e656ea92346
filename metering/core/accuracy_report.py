"""Accuracy of :func:`metering.core.compute_frame` against analytic signals.

``python -m metering.core.accuracy_report`` runs every :func:`scenarios` case and prints, per
quantity, the worst error seen and the scenario it came from. The tests
(``tests/metering/test_core_accuracy.py``) run the same cases against :data:`TOLERANCES`.

Errors: P and Q1 relative to the true apparent power S (``|P - P_true| / S``), V and I
relative to their true RMS, PF and frequency absolute. Truth for a sum of harmonics with
peak amplitudes ``V_h``, ``I_h`` and phases ``phi``: ``P = sum V_h I_h cos(phi_vh - phi_ih) / 2``,
``X_rms = sqrt(sum X_h^2 / 2)``, ``Q1 = V_1 I_1 sin(phi_v1 - phi_i1) / 2`` (see
:mod:`metering.core.synth`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from metering.core.config import CtChannel, MeterConfig
from metering.core.frame import compute_frame
from metering.core.results import FrameResult
from metering.core.synth import Wave, active_power, distorted, fundamental_reactive_power, sample_frame

TOLERANCES: dict[str, float] = {
    "p/s": 1e-3,
    "q/s": 2e-3,
    "v_rms": 5e-4,
    "i_rms": 5e-4,
    "pf": 2e-3,
    "frequency_hz": 1e-2,
}
"""Targets: P within 0.1 % of S, Q1 within 0.2 % of S, RMS within 0.05 %, PF within 0.002,
frequency within 0.01 Hz."""

RANGE_OVER_PEAK = 1.25
"""A channel's measuring range as a multiple of its signal's peak, for DC offsets in % of range."""


@dataclass(frozen=True)
class Scenario:
    """A frame of analytic signals for one topology, one CT per valid phase.

    Attributes
    ----------
    name : str
    topology : str
    f_hz, fs_hz, duration_s : float
        Mains frequency, sample rate and frame length (any length, not whole cycles).
    v_rms : float
        Phase-to-neutral RMS of the fundamental (line-to-line in delta ``3P``).
    v_thd, i_thd : float
        Total harmonic distortion of voltages and currents (harmonics 3 to 25).
    i_rms : tuple of float
        Fundamental RMS current of each CT.
    angle_rad : tuple of float
        Lag of each CT's fundamental current behind its reference voltage (> 0 inductive,
        beyond pi/2: export).
    dc : float
        DC offset of every channel as a fraction of its range (:data:`RANGE_OVER_PEAK` x peak).
    i_range_a : float, optional
        Peak of the current range, when the currents are small against their CTs' range.
    noise : float
        Gaussian noise, standard deviation as a fraction of each channel's peak.
    seed : int
    """

    name: str
    topology: str = "3P+N"
    f_hz: float = 50.0
    fs_hz: float = 6400.0
    duration_s: float = 1.0
    v_rms: float = 230.0
    v_thd: float = 0.0
    i_thd: float = 0.0
    i_rms: tuple[float, ...] = (10.0, 4.0, 25.0)
    angle_rad: tuple[float, ...] = (0.6, -0.4, 2.7)
    dc: float = 0.0
    noise: float = 0.0
    seed: int = 0
    i_range_a: float | None = None

    def build(self) -> Case:
        """Sample the scenario; see :class:`Case`."""
        phases = {"1P": ("L1",), "2P+N": ("L1", "L2")}.get(self.topology, ("L1", "L2", "L3"))
        peak = self.v_rms * math.sqrt(2.0)
        v_dc = self.dc * RANGE_OVER_PEAK * peak * (1.0 + self.v_thd)
        base = distorted(peak, thd=self.v_thd, seed=self.seed)
        if self.topology == "1P":
            measured = {"L1": base}
        elif self.topology == "2P+N":
            measured = {"L1": base, "L2": base.shifted(math.pi)}
        elif self.topology == "3P":
            # Line-to-line v_rms: phase voltages of v_rms / sqrt(3) around a virtual star point.
            star = [base.shifted(2 * math.pi * j / 3).scaled(1 / math.sqrt(3)) for j in range(3)]
            star = {"L1": star[0], "L2": star[1], "L3": star[2]}
            measured = {"L1": star["L1"].minus(star["L3"]), "L2": star["L2"].minus(star["L3"])}
        else:
            measured = {f"L{j + 1}": base.shifted(2 * math.pi * j / 3) for j in range(3)}
        measured = {k: Wave(w.harmonics, v_dc) for k, w in measured.items()}
        references = {k: w for k, w in measured.items()}
        if self.topology == "3P":
            references["L3"] = measured["L1"].minus(measured["L2"])
        currents: dict[str, Wave] = {}
        channels = []
        for j, phase in enumerate(phases):
            ct = f"CT-{j + 1}"
            ref = references[phase]
            amplitude = self.i_rms[j % len(self.i_rms)] * math.sqrt(2.0)
            angle = self.angle_rad[j % len(self.angle_rad)]
            wave = distorted(amplitude, ref.fundamental[1] - angle, thd=self.i_thd, seed=self.seed + 10 + j)
            i_range = self.i_range_a or RANGE_OVER_PEAK * amplitude * (1.0 + self.i_thd)
            i_dc = self.dc * i_range
            currents[ct] = Wave(wave.harmonics, i_dc)
            channels.append(CtChannel(ct, f"Load {j + 1}", "consumption", phase))
        config = MeterConfig(self.topology, 50.0 if self.f_hz < 55 else 60.0, tuple(channels))
        n = int(round(self.duration_s * self.fs_hz))
        frame = sample_frame(measured, currents, self.fs_hz, self.f_hz, n, noise=self.noise, seed=self.seed + 1)
        truth = {}
        for channel in channels:
            ref, cur = references[channel.phase], currents[channel.ct]
            truth[channel.ct] = CtTruth(
                v_rms=ref.rms,
                i_rms=cur.rms,
                p_w=active_power(ref, cur),
                q_var=fundamental_reactive_power(ref, cur),
                v_ln_v=ref.rms if self.topology != "3P" else None,
                v_ll_v=_line_to_line(self.topology, channel.phase, measured, references),
            )
        return Case(self, config, frame.voltages, frame.currents, truth)


def _line_to_line(topology: str, phase: str, measured: dict[str, Wave], references: dict[str, Wave]) -> float | None:
    if topology == "1P":
        return None
    if topology == "3P":
        return references[phase].rms
    if topology == "2P+N":
        return measured["L1"].minus(measured["L2"]).rms
    other = {"L1": "L2", "L2": "L3", "L3": "L1"}[phase]
    return measured[phase].minus(measured[other]).rms


@dataclass(frozen=True)
class CtTruth:
    """Analytic values of one CT."""

    v_rms: float
    i_rms: float
    p_w: float
    q_var: float
    v_ln_v: float | None
    v_ll_v: float | None

    @property
    def s_va(self) -> float:
        return self.v_rms * self.i_rms

    @property
    def pf(self) -> float:
        return self.p_w / self.s_va


@dataclass
class Case:
    """A sampled scenario: what to pass to :func:`compute_frame` and the truth per CT."""

    scenario: Scenario
    config: MeterConfig
    voltages: dict
    currents: dict
    truth: dict[str, CtTruth] = field(default_factory=dict)

    def run(self) -> FrameResult:
        return compute_frame(self.voltages, self.currents, self.scenario.fs_hz, self.config)

    def errors(self, result: FrameResult | None = None) -> dict[str, float]:
        """Worst error per quantity over the case's CTs (see the module docstring)."""
        result = result or self.run()
        worst = {"frequency_hz": abs(result.frequency_hz - self.scenario.f_hz)}
        for values in result.cts:
            truth = self.truth[values.ct]
            s = truth.s_va
            v = values.v_ll_v if self.scenario.topology == "3P" else values.v_ln_v
            errors = {
                "p/s": abs(values.p_w - truth.p_w) / s,
                "q/s": abs(values.q_var - truth.q_var) / s,
                "v_rms": abs(v / truth.v_rms - 1.0),
                "i_rms": abs(values.i_a / truth.i_rms - 1.0),
                "pf": abs(values.pf - truth.pf),
            }
            if truth.v_ll_v is not None:
                errors["v_rms"] = max(errors["v_rms"], abs(values.v_ll_v / truth.v_ll_v - 1.0))
            for key, error in errors.items():
                worst[key] = max(worst.get(key, 0.0), error)
        return worst


def scenarios() -> list[Scenario]:
    """The accuracy cases: 45-65 Hz, harmonics to the 25th (current THD 50 %), DC offsets of
    2 % of range, 0.1 % noise, frames that are not whole cycles, every topology."""
    hard = {"v_thd": 0.04, "i_thd": 0.5, "dc": 0.02, "noise": 0.001}
    cases = []
    for k, f in enumerate((45.0, 50.0, 55.5, 60.0, 65.0)):
        cases.append(Scenario(f"clean {f:g} Hz", f_hz=f, seed=k))
        cases.append(Scenario(f"distorted {f:g} Hz", f_hz=f, seed=k, **hard))
    cases += [
        Scenario("47.3 Hz, 1.0 s at 6400 Hz (not whole cycles)", f_hz=47.3, seed=7, **hard),
        Scenario("49.9 Hz, 0.25 s frame", f_hz=49.9, duration_s=0.25, seed=8, **hard),
        Scenario("1P 230 V", topology="1P", f_hz=50.02, seed=9, **hard),
        Scenario("3P+N-208 at 60 Hz", topology="3P+N-208", f_hz=59.97, v_rms=120.0, seed=10, **hard),
        Scenario("2P+N 120/240 V at 60 Hz", topology="2P+N", f_hz=60.03, v_rms=120.0, seed=11, **hard),
        Scenario("3P delta 230 V", topology="3P", f_hz=50.01, seed=12, **hard),
        Scenario("3P delta 230 V at 65 Hz", topology="3P", f_hz=65.0, seed=13, **hard),
        Scenario(
            "0.25 A on a 100 A CT, DC 2 % of its range",
            i_rms=(0.25, 0.6, 1.0),
            i_range_a=177.0,
            seed=14,
            **hard,
        ),
        Scenario("fs 12.8 kHz", f_hz=51.3, fs_hz=12800.0, seed=15, **hard),
        Scenario("fs 4 kHz", f_hz=46.1, fs_hz=4000.0, seed=16, **hard),
        Scenario("fs 1 kHz, no harmonics", f_hz=50.0, fs_hz=1000.0, seed=17, dc=0.02, noise=0.001),
    ]
    return cases


def worst_errors(cases: list[Scenario] | None = None) -> dict[str, tuple[float, str]]:
    """Worst error per quantity over the scenarios, with the scenario's name."""
    worst: dict[str, tuple[float, str]] = {}
    for scenario in cases or scenarios():
        for key, error in scenario.build().errors().items():
            if key not in worst or error > worst[key][0]:
                worst[key] = (error, scenario.name)
    return worst


def energy_errors(fs_hz: float = 6400.0) -> dict[str, float]:
    """Energy bookkeeping, relative errors.

    ``split_vs_whole``: a 3.9 s signal (harmonics, 0.1 % noise) metered as one frame and as
    10 chained frames of odd lengths. ``constant_p``: 12 chained 1 s frames of a constant
    power (voltage starting on a zero crossing) against ``P t``, ``t`` the consumed time.
    """
    lengths = (2203, 3001, 1777, 2999, 2311, 4097, 1901, 2777, 1513, 2381)
    voltages = {f"L{k + 1}": distorted(325.0, -2 * math.pi * k / 3, thd=0.04, seed=k) for k in range(3)}
    currents = {f"CT-{k + 1}": distorted(14.0, -2 * math.pi * k / 3 - 0.4 * k, thd=0.5, seed=5 + k) for k in range(3)}
    config = MeterConfig("3P+N", 50.0, tuple(CtChannel(f"CT-{k}", "Grid", "grid", f"L{k}") for k in (1, 2, 3)))
    frame = sample_frame(voltages, currents, fs_hz, 49.7, sum(lengths), noise=0.001, seed=3)
    whole = compute_frame(frame.voltages, frame.currents, fs_hz, config)
    split, carry, start = 0.0, None, 0
    for length in lengths:
        part = slice(start, start + length)
        result = compute_frame(
            {k: x[part] for k, x in frame.voltages.items()},
            {k: x[part] for k, x in frame.currents.items()},
            fs_hz,
            config,
            carry,
        )
        split += float((result.ct.energy_import_wh - result.ct.energy_export_wh).sum())
        carry, start = result.carry, start + length
    reference = float((whole.ct.energy_import_wh - whole.ct.energy_export_wh).sum())

    v = Wave({1: (325.0, -math.pi / 2)})
    i = Wave({1: (14.0, -math.pi / 2 - 0.5)})
    single = MeterConfig("1P", 50.0, (CtChannel("CT-1", "House", "grid", "L1"),))
    n = int(fs_hz)
    frame = sample_frame({"L1": v}, {"CT-1": i}, fs_hz, 50.0, 12 * n)
    energy_wh, seconds, carry = 0.0, 0.0, None
    for k in range(12):
        part = slice(k * n, (k + 1) * n)
        result = compute_frame(
            {"L1": frame.voltages["L1"][part]}, {"CT-1": frame.currents["CT-1"][part]}, fs_hz, single, carry
        )
        energy_wh += float(result.ct.energy_import_wh[0])
        seconds += result.energy_s
        carry = result.carry
    return {
        "split_vs_whole": abs(split / reference - 1.0),
        "constant_p": abs(energy_wh / (active_power(v, i) * seconds / 3600.0) - 1.0),
    }


def main() -> None:
    worst = worst_errors()
    print(f"{len(scenarios())} scenarios; worst error per quantity (tolerance):")
    for key, (error, name) in worst.items():
        unit = " Hz" if key == "frequency_hz" else ""
        relative = "" if key in ("pf", "frequency_hz") else f" = {error * 100:.5f} %"
        print(f"  {key:13s} {error:.3e}{unit}{relative}  (tolerance {TOLERANCES[key]:g}{unit})  [{name}]")
    energy = energy_errors()
    print("energy, relative:")
    print(f"  10 chained frames vs one frame    {energy['split_vs_whole']:.3e}  (test tolerance 1e-9)")
    print(f"  12 s of constant P vs P t / 3600  {energy['constant_p']:.3e}  (test tolerance 1e-5)")


if __name__ == "__main__":
    main()

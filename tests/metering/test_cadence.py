"""Periodic work per location at a phase of its own (metering.ingest.cadence)."""

import numpy as np

from metering.ingest import cadence


def test_two_hundred_locations_are_spread_over_the_period():
    every = 3.0
    phases = np.array([cadence.phase_s(pk, every) for pk in range(1, 201)])
    assert ((phases >= 0) & (phases < every)).all()
    per_half_second = np.histogram(phases, bins=6, range=(0, every))[0]
    assert per_half_second.min() >= 30 and per_half_second.max() <= 37  # 200 / 6 = 33 each


def test_work_is_due_once_per_period_of_each_location():
    every = 5.0
    begins = every - cadence.phase_s(7, every)
    first = cadence.period(7, every, begins)
    assert cadence.period(7, every, begins + 4.9) == first
    assert cadence.period(7, every, begins + 5.0) != first
    assert cadence.period(7, every, begins - 0.1) != first


def test_without_a_period_every_call_is_due():
    assert cadence.period(7, 0.0, 1.0) != cadence.period(7, 0.0, 1.0)

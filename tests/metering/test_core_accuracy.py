"""Accuracy against analytic signals: every scenario of ``metering.core.accuracy_report``.

The scenarios cover 45-65 Hz, frames that are not whole cycles, harmonics to the 25th with a
current THD of 50 %, DC offsets of 2 % of range on voltage and current, 0.1 % Gaussian noise
(fixed seeds) and every topology. ``python -m metering.core.accuracy_report`` prints the worst
error per quantity.
"""

from __future__ import annotations

import pytest

from metering.core.accuracy_report import TOLERANCES, scenarios


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_it_meets_the_accuracy_targets(scenario):
    errors = scenario.build().errors()
    for quantity, tolerance in TOLERANCES.items():
        assert errors[quantity] <= tolerance, f"{quantity}: {errors[quantity]:.3g} > {tolerance:g}"

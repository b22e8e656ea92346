"""Rounding and units of the numbers on the cards."""

from __future__ import annotations

import pytest

from dashboard.templatetags import dashboard_format as fmt


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.4, "0"),
        (-0.4, "0"),
        (15.2, "15"),
        (-768.4, "−768"),
        (9999.4, "9999"),
        (10000.0, "10.00 kW"),
        (-12345.0, "−12.35 kW"),
        (None, "—"),
    ],
)
def test_it_shows_watts_as_integers_and_kilowatts_from_10_kw(value, expected):
    assert fmt.power(value) == expected


def test_it_adds_the_unit_when_asked():
    assert fmt.power(1234.4, "unit") == "1234 W"
    assert fmt.power(23456.0, "unit") == "23.46 kW"
    assert fmt.reactive(133.0, "unit") == "133 var"
    assert fmt.reactive(15000.0) == "15.00 kvar"


@pytest.mark.parametrize(("value", "expected"), [(0.2, "0.20"), (0.944, "0.94"), (-1.0, "−1.00"), (None, "—")])
def test_it_shows_power_factor_with_two_decimals(value, expected):
    assert fmt.pf(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(0.322, "0.322"), (9.9994, "9.999"), (10.04, "10.0"), (123.45, "123.5")]
)
def test_it_shows_current_with_three_decimals_below_10_a(value, expected):
    assert fmt.amps(value) == expected


def test_it_shows_volts_with_one_decimal_and_a_dash_when_missing():
    assert fmt.volts(240.44) == "240.4"
    assert fmt.volts(None) == "—"
    assert fmt.hertz(49.996) == "50.00"


def test_it_shows_energy_and_shares():
    assert fmt.energy(850.2) == "850 Wh"
    assert fmt.energy(12345.0) == "12.35 kWh"
    assert fmt.energy(123456.0) == "123.5 kWh"
    assert fmt.percent(0.425) == "42 %"
    assert fmt.percent(None) == "—"


def test_it_writes_units_and_durations_like_people_do():
    assert fmt.unit("m3") == "m³"
    assert fmt.unit("l") == "l"
    assert fmt.duration(42.7) == "42 s"
    assert fmt.duration(600) == "10 min"
    assert fmt.duration(3 * 3600 + 5) == "3 h"
    assert fmt.duration(3 * 86400) == "3 d"

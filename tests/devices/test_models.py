"""clean_with_rules(): the models' own checks and the installation rules, for code that edits rows directly."""

from __future__ import annotations

import pytest
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from devices.installation import clean_with_rules, import_installation
from devices.models import CtInput, CtModule, Gateway, Load, LoadCt, Location
from tests.devices.conftest import base_doc

pytestmark = pytest.mark.django_db


@pytest.fixture
def location() -> Location:
    return import_installation(base_doc()).location


def rule_errors(raised: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str | None, str]]:
    """(field, message) of each installation-rule error."""
    return [
        (error.params["field"], error.message % error.params)
        for error in raised.value.error_dict[NON_FIELD_ERRORS]
        if error.code == "installation_rule"
    ]


def test_it_accepts_valid_rows(location):
    for obj in (location, location.gateway, location.powerbox, *Load.objects.all(), *LoadCt.objects.all()):
        clean_with_rules(obj)
    clean_with_rules(Location(name="Empty plot", timezone="Europe/Brussels", topology="1P"))


def test_it_refuses_a_load_ct_on_a_phase_the_topology_lacks(location):
    Location.objects.filter(pk=location.pk).update(topology="1P")
    LoadCt.objects.filter(ct_input__letter__in="BC").delete()
    load_ct = LoadCt(load=Load.objects.get(name="Heat pump"), ct_input=CtInput.objects.get(letter="C"), phase="L3")

    with pytest.raises(ValidationError) as raised:
        clean_with_rules(load_ct)

    assert rule_errors(raised) == [
        ("phase", "Phase L3 does not exist in a 1P installation (single phase 1×230 V): use L1.")
    ]


def test_it_refuses_wifi_settings_the_gateway_cannot_use(location):
    gateway = location.gateway
    gateway.connectivity = "wifi"
    gateway.wifi_ssid = "Home%Net"
    gateway.wifi_password = "x" * 21

    with pytest.raises(ValidationError) as raised:
        clean_with_rules(gateway)

    assert rule_errors(raised) == [
        (
            "wifi_password",
            "The Wi-Fi password has 21 characters; the gateway takes a WPA2 key of at most 20 characters "
            "(manual, Addendum 2).",
        )
    ]


def test_it_refuses_an_eighth_ct_module(location):
    for i in range(2, 8):
        CtModule.objects.create(powerbox=location.powerbox, serial=f"CTH-000{i}", position=i)

    with pytest.raises(ValidationError) as raised:
        clean_with_rules(CtModule(powerbox=location.powerbox, serial="CTH-0008", position=8))

    assert rule_errors(raised) == [
        (None, "A Power Box takes at most 7 CT Hubs or Solid Core 3-Phase CTs on bus A; this installation has 8.")
    ]


def test_it_blames_an_edit_only_for_what_it_breaks(location):
    LoadCt.objects.filter(ct_input__letter="D").update(phase="L1")
    Location.objects.filter(pk=location.pk).update(topology="2P+N")  # the grid's L3 CT is now wrong

    clean_with_rules(Load.objects.get(name="Heat pump"))  # an unrelated edit is still possible

    gateway = Gateway.objects.get()
    gateway.model = "wifi-connect"
    with pytest.raises(ValidationError) as raised:
        clean_with_rules(gateway)
    assert [field for field, _message in rule_errors(raised)] == ["connectivity", None, None]

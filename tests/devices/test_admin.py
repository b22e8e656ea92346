"""Django admin: pages, the installation rules on its forms, and the token and export actions."""

from __future__ import annotations

import html
import io
import json
import re
import zipfile

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from devices.installation import export_installation, import_installation
from devices.models import CtInput, CtModule, Event, Gateway, Load, LoadCt, Location, hash_token
from tests.devices.conftest import base_doc

pytestmark = pytest.mark.django_db


@pytest.fixture
def location() -> Location:
    return import_installation(base_doc()).location


def single_phase(location: Location) -> Location:
    """Make ``location`` a 1P house: the grid on CTH-0001/A only, the heat pump on D, both L1."""
    LoadCt.objects.filter(ct_input__letter__in="BC").delete()
    Location.objects.filter(pk=location.pk).update(topology="1P")
    return Location.objects.get(pk=location.pk)


def form_data(response) -> dict:
    """The POST data of an admin change form as the browser would send it unchanged."""
    data = {}

    def add(form) -> None:
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            data[form.add_prefix(name)] = "on" if value is True else value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        for form in formset.forms:
            add(form)
    return data


def add_inline_row(data: dict, prefix: str, **values) -> None:
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = str(index + 1)
    for name, value in values.items():
        data[f"{prefix}-{index}-{name}"] = value


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def admin_url(model, action: str = "changelist", *args) -> str:
    return reverse(f"admin:devices_{model._meta.model_name}_{action}", args=args)


# --- access ------------------------------------------------------------------------------------


def test_it_sends_a_stranger_to_the_admin_login(client, stranger, location):
    client.force_login(stranger)

    for url in (reverse("admin:index"), admin_url(Location), admin_url(Location, "change", location.pk)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_it_sends_an_anonymous_visitor_to_the_admin_login(client, location):
    response = client.get(admin_url(Location, "change", location.pk))

    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


# --- pages -------------------------------------------------------------------------------------


def test_it_renders_every_changelist_and_change_page_for_staff(client, staff, location):
    client.force_login(staff)
    load = Load.objects.get(name="Grid")
    hub = CtModule.objects.get()
    pages = [
        admin_url(Location),
        admin_url(Location, "change", location.pk),
        admin_url(Location, "add"),
        admin_url(Load),
        admin_url(Load, "change", load.pk),
        admin_url(CtModule),
        admin_url(CtModule, "change", hub.pk),
        admin_url(CtModule, "add"),
        admin_url(Gateway),
        admin_url(Gateway, "change", location.gateway.pk),
        reverse("admin:devices_inputmodule_changelist"),
        reverse("admin:devices_outputmodule_changelist"),
        reverse("admin:devices_powerbox_changelist"),
        admin_url(Event),
    ]

    for url in pages:
        assert client.get(url).status_code == 200, url


def test_it_shows_the_installation_check_on_the_location_page(admin_client, location):
    LoadCt.objects.filter(ct_input__letter="D").update(reversed=True)

    text = page_text(admin_client.get(admin_url(Location, "change", location.pk)))

    assert "CT CTH-0001/D of load 'Heat pump' is marked reversed" in text


def test_it_never_shows_the_token_hash(admin_client, location):
    token_hash = location.gateway.token_hash

    for url in (admin_url(Location, "change", location.pk), admin_url(Gateway, "change", location.gateway.pk)):
        assert token_hash not in admin_client.get(url).content.decode()


def test_it_finds_a_location_by_gateway_serial(admin_client, location):
    import_installation({**base_doc(), "location": {**base_doc()["location"], "id": location.pk, "name": "Farm"}})

    response = admin_client.get(admin_url(Location), {"q": "GW-0001"})

    assert [loc.name for loc in response.context["cl"].result_list] == ["Farm"]


def test_it_filters_locations_by_topology(admin_client, location):
    response = admin_client.get(admin_url(Location), {"topology__exact": "1P"})

    assert list(response.context["cl"].result_list) == []


def test_it_keeps_events_read_only(admin_client, location):
    event = Event.objects.first()

    assert admin_client.get(admin_url(Event, "add")).status_code == 403
    response = admin_client.post(admin_url(Event, "change", event.pk), {"message": "edited"})
    assert response.status_code == 403
    assert Event.objects.get(pk=event.pk).message != "edited"
    assert (
        admin_client.get(admin_url(Event), {"q": "created from an installation file"}).context["cl"].result_count == 1
    )


# --- the rules on the forms ----------------------------------------------------------------------


def test_it_refuses_a_load_ct_on_l3_in_a_single_phase_location(admin_client, location):
    single_phase(location)
    grid = Load.objects.get(name="Grid")
    url = admin_url(Load, "change", grid.pk)
    data = form_data(admin_client.get(url))
    add_inline_row(data, "cts", ct_input=CtInput.objects.get(letter="C").pk, phase="L3", position="1")

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "Phase L3 does not exist in a 1P installation (single phase 1×230 V): use L1." in page_text(response)
    assert grid.cts.count() == 1


def test_it_shows_the_rule_next_to_the_field(admin_client, location):
    single_phase(location)
    grid = Load.objects.get(name="Grid")
    url = admin_url(Load, "change", grid.pk)
    data = form_data(admin_client.get(url))
    add_inline_row(data, "cts", ct_input=CtInput.objects.get(letter="C").pk, phase="L3", position="1")

    response = admin_client.post(url, data)

    [formset] = [inline.formset for inline in response.context["inline_admin_formsets"]]
    assert formset.forms[1].errors["phase"] == [
        "Phase L3 does not exist in a 1P installation (single phase 1×230 V): use L1."
    ]


def test_it_refuses_two_new_cts_of_a_load_on_one_phase(admin_client, location):
    single_phase(location)
    Location.objects.filter(pk=location.pk).update(topology="3P+N")
    heat_pump = Load.objects.get(name="Heat pump")
    url = admin_url(Load, "change", heat_pump.pk)
    data = form_data(admin_client.get(url))
    add_inline_row(data, "cts", ct_input=CtInput.objects.get(letter="B").pk, phase="L2", position="1")
    add_inline_row(data, "cts", ct_input=CtInput.objects.get(letter="C").pk, phase="L2", position="2")

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "Load 'Heat pump' has two CTs on phase L2; each CT of a load measures a different phase." in page_text(
        response
    )
    assert heat_pump.cts.count() == 1


def test_it_refuses_a_ct_input_of_another_load(admin_client, location):
    heat_pump = Load.objects.get(name="Heat pump")
    url = admin_url(Load, "change", heat_pump.pk)
    data = form_data(admin_client.get(url))
    add_inline_row(data, "cts", ct_input=CtInput.objects.get(letter="A").pk, phase="L2", position="1")

    response = admin_client.post(url, data)

    assert "CT input CTH-0001/A is used by two loads, 'Grid' and 'Heat pump'; a CT measures one load only." in (
        page_text(response)
    )


def test_it_refuses_an_eighth_ct_module(admin_client, location):
    powerbox = location.powerbox
    for i in range(2, 8):
        CtModule.objects.create(powerbox=powerbox, serial=f"CTH-000{i}", position=i)
    url = admin_url(CtModule, "add")
    data = form_data(admin_client.get(url))
    data.update(powerbox=powerbox.pk, kind="hub", serial="CTH-0008", position="8")

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert (
        "A Power Box takes at most 7 CT Hubs or Solid Core 3-Phase CTs on bus A; this installation has 8."
        in page_text(response)
    )
    assert not CtModule.objects.filter(serial="CTH-0008").exists()


def test_it_refuses_input_d_on_a_solid_core_ct(admin_client, location):
    url = admin_url(CtModule, "add")
    data = form_data(admin_client.get(url))
    data.update(powerbox=location.powerbox.pk, kind="solid-core", serial="SC-0001", position="2")
    add_inline_row(data, "inputs", letter="D", ct_type="AC-CT-S-50A")

    response = admin_client.post(url, data)

    assert "A Solid Core 3-Phase CT has inputs A, B and C; there is no input 'D'." in page_text(response)
    assert not CtModule.objects.filter(serial="SC-0001").exists()


def test_it_refuses_a_wifi_ssid_with_a_bad_character(admin_client, location):
    url = admin_url(Location, "change", location.pk)
    data = form_data(admin_client.get(url))
    data.update({"gateway-0-connectivity": "wifi", "gateway-0-wifi_ssid": "My Home", "gateway-0-wifi_password": "pw"})

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "The SSID contains a character the gateway does not accept: ' ' (space)." in page_text(response)
    assert Gateway.objects.get().connectivity == "ethernet"


def test_it_refuses_a_topology_that_breaks_the_phase_mapping(admin_client, location):
    url = admin_url(Location, "change", location.pk)
    data = form_data(admin_client.get(url))
    data["topology"] = "2P+N"

    response = admin_client.post(url, data)

    assert "Phase L3 does not exist in a 2P+N installation (split phase 2×120 V, Americas): use L1 or L2." in (
        page_text(response)
    )
    assert Location.objects.get().topology == "3P+N"


def test_it_refuses_a_gateway_of_another_location_with_the_factory_reset_advice(admin_client, location):
    other = base_doc()
    other["location"]["name"] = "Old house"
    other["gateway"]["serial"] = "GW-OLD"
    other["powerbox"]["serial"] = "PB-OLD"
    other.update(ct_hubs=[], input_modules=[], output_modules=[], loads=[])
    old = import_installation(other).location
    url = admin_url(Gateway, "change", location.gateway.pk)
    data = form_data(admin_client.get(url))
    data["serial"] = "GW-OLD"

    response = admin_client.post(url, data)

    assert (
        f"Gateway GW-OLD is installed at location 'Old house' (id {old.pk}). A gateway belongs to one location at a "
        "time: remove it there and factory-reset it before installing it here." in page_text(response)
    )


def test_it_saves_a_change_that_keeps_the_rules(admin_client, location):
    heat_pump = Load.objects.get(name="Heat pump")
    url = admin_url(Load, "change", heat_pump.pk)
    data = form_data(admin_client.get(url))
    data["name"] = "Heat pump (outdoor unit)"
    data["cts-0-phase"] = "L3"

    response = admin_client.post(url, data)

    assert response.status_code == 302
    heat_pump.refresh_from_db()
    assert heat_pump.name == "Heat pump (outdoor unit)"
    assert heat_pump.cts.get().phase == "L3"


def test_it_adds_a_location_with_its_gateway_and_shows_the_new_token(admin_client):
    url = admin_url(Location, "add")
    data = form_data(admin_client.get(url))
    data.update(name="New house", timezone="Europe/Brussels", topology="1P", frequency_hz="50")
    add_inline_row(data, "gateway", model="connect", serial="GW-NEW", connectivity="ethernet")
    add_inline_row(data, "powerbox", serial="PB-NEW")

    response = admin_client.post(url, data, follow=True)

    gateway = Gateway.objects.get(serial="GW-NEW")
    [token] = re.findall(r"New ingest token for gateway GW-NEW \(New house\): (\S+) —", page_text(response))
    assert gateway.token_hash == hash_token(token)


# --- actions -------------------------------------------------------------------------------------


def test_it_exports_the_installation_file_of_a_location(admin_client, location):
    response = admin_client.post(
        admin_url(Location), {"action": "export_installations", "_selected_action": [location.pk]}
    )

    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == f'attachment; filename="installation-{location.pk}-demo-house.json"'
    assert json.loads(response.content) == export_installation(location)


def test_it_exports_several_locations_as_a_zip_of_files(admin_client, location):
    other = base_doc()
    other["location"]["name"] = "Second house"
    other["gateway"]["serial"] = "GW-0002"
    other["powerbox"]["serial"] = "PB-0002"
    other.update(ct_hubs=[], input_modules=[], output_modules=[], loads=[])
    second = import_installation(other).location

    response = admin_client.post(
        admin_url(Location), {"action": "export_installations", "_selected_action": [location.pk, second.pk]}
    )

    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == [
        f"installation-{location.pk}-demo-house.json",
        f"installation-{second.pk}-second-house.json",
    ]
    assert json.loads(archive.read(f"installation-{second.pk}-second-house.json")) == export_installation(second)


def test_it_rotates_a_gateway_token_and_shows_it_once(admin_client, location):
    old_hash = location.gateway.token_hash

    response = admin_client.post(
        admin_url(Location), {"action": "rotate_gateway_tokens", "_selected_action": [location.pk]}
    )

    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    [token] = re.findall(r"^New ingest token for gateway GW-0001 \(Demo house\): (\S+) — copy it now", message)
    gateway = Gateway.objects.get()
    assert gateway.token_hash == hash_token(token) != old_hash
    assert Gateway.for_token(token) == gateway
    assert Event.objects.filter(location=location, message__startswith="A new ingest token was issued").exists()

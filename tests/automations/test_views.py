"""The automations pages: who may see and change them, templates, validation errors, no JavaScript."""

from __future__ import annotations

import pytest
from django.contrib import admin

from devices.models import DigitalInput, Load, Relay
from metering.automations.models import Automation, AutomationState
from tests.factories import make_location

pytestmark = pytest.mark.django_db


@pytest.fixture
def house(owner, viewer, installer):
    location, _ = make_location(members={owner: "owner", viewer: "viewer", installer: "installer"})
    return location


def boiler(location) -> Relay:
    return Relay.objects.get(module__location=location, name="Boiler")


def make_automation(location, **changes) -> Automation:
    fields = {
        "location": location,
        "name": "Boiler on solar surplus",
        "quantity": "grid_export",
        "threshold": 1500.0,
        "release": 200.0,
        "duration_s": 300,
        "relay": boiler(location),
        "revert": True,
    } | changes
    return Automation.objects.create(**fields)


def valid_post(location, **changes) -> dict:
    data = {
        "name": "Boiler on solar surplus",
        "enabled": "on",
        "quantity": "grid_export",
        "direction": "above",
        "threshold": "1500",
        "release": "200",
        "duration_s": "300",
        "hours_from": "",
        "hours_until": "",
        "relay": str(boiler(location).pk),
        "action": "on",
        "on_minutes": "",
        "revert": "on",
        "min_on_minutes": "10",
        "min_off_minutes": "10",
        "manual_window_minutes": "60",
    }
    data.update({key: str(value) for key, value in changes.items()})
    return data


def urls(location, automation) -> dict[str, str]:
    base = f"/locations/{location.pk}/automations/"
    return {
        "list": base,
        "new": base + "new/",
        "edit": f"{base}{automation.pk}/",
        "toggle": f"{base}{automation.pk}/toggle/",
        "delete": f"{base}{automation.pk}/delete/",
    }


def test_it_redirects_anonymous_users_to_sign_in(client, house):
    automation = make_automation(house)
    for name, url in urls(house, automation).items():
        response = client.post(url, {"enabled": "0"}) if name in ("toggle", "delete") else client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next=")


def test_it_refuses_strangers_with_404_and_changes_nothing(client, house, stranger):
    automation = make_automation(house)
    client.force_login(stranger)
    for name, url in urls(house, automation).items():
        assert client.get(url).status_code == (405 if name == "toggle" else 404), url
        posted = client.post(url, valid_post(house, name="Taken over", enabled=""))
        assert posted.status_code == (405 if name == "list" else 404), url
    automation.refresh_from_db()
    assert (automation.name, automation.enabled) == ("Boiler on solar surplus", True)
    assert Automation.objects.count() == 1


def test_it_answers_404_for_an_automation_of_another_location(client, house, owner):
    other, _ = make_location(name="Other house", serial_prefix="O")
    foreign = make_automation(other)
    client.force_login(owner)
    for name, url in urls(house, foreign).items():
        if name in ("list", "new"):
            continue
        assert client.get(url).status_code in (404, 405), url
        assert client.post(url, {"enabled": "0"}).status_code == 404, url
    assert Automation.objects.get().enabled


def test_viewers_see_the_automations_but_may_not_change_them(client, house, viewer):
    automation = make_automation(house)
    client.force_login(viewer)
    page = client.get(f"/locations/{house.pk}/automations/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "When grid export is above 1,500 W (until below 200 W) for 300 s, switch Boiler on" in html
    assert "/toggle/" not in html and "?template=" not in html
    links = urls(house, automation)
    assert client.get(links["new"]).status_code == 403
    assert client.get(links["edit"]).status_code == 403
    assert client.post(links["edit"], valid_post(house, name="Changed")).status_code == 403
    assert client.post(links["toggle"], {"enabled": "0"}).status_code == 403
    assert client.post(links["delete"]).status_code == 403
    automation.refresh_from_db()
    assert automation.name == "Boiler on solar surplus" and automation.enabled


@pytest.mark.parametrize("persona", ["owner", "installer", "staff"])
def test_owners_installers_and_support_create_from_a_template(client, house, persona, request):
    client.force_login(request.getfixturevalue(persona))
    form = client.get(f"/locations/{house.pk}/automations/new/?template=self-consumption")
    assert form.status_code == 200
    html = form.content.decode()
    assert 'name="threshold" value="1500.0"' in html
    assert f'<option value="{boiler(house).pk}" selected>Boiler' in html
    assert '<input type="hidden" name="template" value="self-consumption">' in html

    response = client.post(
        f"/locations/{house.pk}/automations/new/", valid_post(house, template="self-consumption", duration_s=5)
    )
    assert response.status_code == 302
    assert response["Location"] == f"/locations/{house.pk}/automations/"
    automation = Automation.objects.get()
    assert (automation.template, automation.duration_s, automation.relay, automation.location) == (
        "self-consumption",
        5,
        boiler(house),
        house,
    )
    assert AutomationState.objects.filter(pk=automation.pk, active=False).exists()


@pytest.mark.parametrize("slug", ["self-consumption", "ev-surplus", "ev-off-peak", "overload"])
def test_every_template_prefills_a_form_that_saves_as_it_is(client, house, owner, slug):
    from metering.automations.forms import AutomationForm
    from metering.automations.presets import PRESETS

    shown = AutomationForm(initial=PRESETS[slug].initial(house), location=house)
    data = {}  # what a browser posts back: every field as the form shows it
    for field in shown:
        value = field.value()
        if value is True:
            data[field.name] = "on"
        elif value is not None and value is not False:
            data[field.name] = value
    form = AutomationForm(data, location=house)
    assert form.is_valid(), form.errors
    client.force_login(owner)
    assert client.get(f"/locations/{house.pk}/automations/new/?template={slug}").status_code == 200


def test_it_answers_404_for_an_unknown_template(client, house, owner):
    client.force_login(owner)
    assert client.get(f"/locations/{house.pk}/automations/new/?template=sauna").status_code == 404


ERRORS = [
    ({"release": "1600"}, "release", "For 'above', the release must be at or below the threshold (1500 W)."),
    ({"direction": "below", "release": "100"}, "release", "For 'below', the release must be at or above"),
    ({"threshold": "2000000"}, "threshold", "Give a value from 0 to 1,000,000 W."),
    ({"threshold": "nan"}, "threshold", "Enter a number."),
    ({"quantity": "grid_current", "threshold": "20000", "release": ""}, "threshold", "from 0 to 10,000 A"),
    ({"duration_s": "-1"}, "duration_s", "greater than or equal to 0"),
    ({"duration_s": "90000"}, "duration_s", "less than or equal to 86400"),
    ({"quantity": "load_power"}, "load", "Choose the load whose power is watched."),
    ({"quantity": "input_state"}, "input", "Choose the input that is watched."),
    ({"quantity": "clock"}, "hours_from", "The clock alone needs the hours"),
    ({"hours_from": "22:00"}, "hours_until", "Give both hours, or neither."),
    ({"hours_from": "22:00", "hours_until": "22:00"}, "hours_until", "'Until' must differ"),
    ({"action": "off", "on_minutes": "15"}, "on_minutes", "A timed switch is only for switching on."),
    ({"on_minutes": "7"}, "on_minutes", "Select a valid choice."),
    ({"manual_window_minutes": "5000"}, "manual_window_minutes", "less than or equal to 1440"),
    ({"min_on_minutes": "abc"}, "min_on_minutes", "Enter a whole number."),
    ({"name": "   "}, "name", "This field is required."),
]


@pytest.mark.parametrize(("changes", "field", "message"), ERRORS)
def test_it_refuses_bad_input_with_a_clear_message_and_stores_nothing(client, house, owner, changes, field, message):
    client.force_login(owner)
    response = client.post(f"/locations/{house.pk}/automations/new/", valid_post(house, **changes))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert any(message in error for error in errors[field]), errors[field]
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Automation.objects.exists()


def test_it_refuses_a_relay_load_or_input_of_another_location(client, house, owner):
    other, _ = make_location(name="Other house", serial_prefix="O")
    client.force_login(owner)
    foreign = {
        "relay": Relay.objects.get(module__location=other, name="Boiler").pk,
        "load": Load.objects.get(location=other, name="Heat pump").pk,
        "input": DigitalInput.objects.get(module__location=other, name="Gas").pk,
    }
    for field, pk in foreign.items():
        quantity = {"relay": "grid_export", "load": "load_power", "input": "input_rate"}[field]
        response = client.post(
            f"/locations/{house.pk}/automations/new/", valid_post(house, quantity=quantity, **{field: pk})
        )
        assert response.status_code == 400
        assert "Select a valid choice." in response.context["form"].errors[field][0]
    assert not Automation.objects.exists()


def test_it_refuses_the_rate_of_a_status_input_and_a_second_automation_of_the_same_name(client, house, owner):
    client.force_login(owner)
    door = DigitalInput.objects.get(module__location=house, name="Front door")
    response = client.post(
        f"/locations/{house.pk}/automations/new/", valid_post(house, quantity="input_rate", input=door.pk, release="")
    )
    assert "Only a pulse-counting input has a rate" in response.context["form"].errors["input"][0]
    make_automation(house)
    response = client.post(f"/locations/{house.pk}/automations/new/", valid_post(house))
    assert response.context["form"].errors["name"] == ["Another automation of this location has this name."]
    assert Automation.objects.count() == 1


def test_it_edits_an_automation_and_starts_its_state_afresh(client, house, installer):
    automation = make_automation(house)
    AutomationState.objects.filter(pk=automation.pk).update(active=True, since=123.0)
    client.force_login(installer)
    page = client.get(f"/locations/{house.pk}/automations/{automation.pk}/")
    assert page.status_code == 200 and 'value="Boiler on solar surplus"' in page.content.decode()
    response = client.post(f"/locations/{house.pk}/automations/{automation.pk}/", valid_post(house, threshold=2500))
    assert response.status_code == 302
    automation.refresh_from_db()
    assert automation.threshold == 2500.0
    state = AutomationState.objects.get(pk=automation.pk)
    assert (state.active, state.since) == (False, None)


def test_it_enables_and_disables_without_javascript_and_with_htmx(client, house, owner):
    automation = make_automation(house)
    client.force_login(owner)
    toggle = f"/locations/{house.pk}/automations/{automation.pk}/toggle/"
    response = client.post(toggle, {"enabled": "0"})
    assert response.status_code == 302 and response["Location"] == f"/locations/{house.pk}/automations/"
    automation.refresh_from_db()
    assert not automation.enabled
    response = client.post(toggle, {"enabled": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith(f'<li id="automation-{automation.pk}"') and ">Disable</button>" in html
    automation.refresh_from_db()
    assert automation.enabled
    assert client.post(toggle, {"enabled": "maybe"}).status_code == 400


def test_it_asks_before_deleting_and_deletes_with_its_state(client, house, owner):
    automation = make_automation(house)
    client.force_login(owner)
    url = f"/locations/{house.pk}/automations/{automation.pk}/delete/"
    page = client.get(url)
    assert page.status_code == 200 and "It stops at once" in page.content.decode()
    assert Automation.objects.exists()
    assert client.post(url).status_code == 302
    assert not Automation.objects.exists() and not AutomationState.objects.exists()


def test_the_page_works_without_javascript_and_names_units(client, house, owner):
    make_automation(house, quantity="grid_current", threshold=25, release=20, duration_s=10, action="off", revert=False)
    client.force_login(owner)
    html = client.get(f"/locations/{house.pk}/automations/").content.decode()
    assert (
        "When grid current on the busiest phase is above 25 A (until below 20 A) for 10 s, switch Boiler off." in html
    )
    assert 'method="post"' in html  # the toggle is a form, htmx only enhances it
    form = client.get(f"/locations/{house.pk}/automations/new/").content.decode()
    for label in ("For (s)", "Minimum on time (min)", "Manual switch window (min)", "W, A, or the input"):
        assert label in form
    assert '<label for="id_threshold">' in form


def test_the_location_page_links_to_the_automations(client, house, viewer):
    client.force_login(viewer)
    html = client.get(f"/locations/{house.pk}/").content.decode()
    assert f'href="/locations/{house.pk}/automations/"' in html


def test_automations_are_not_in_the_admin():
    assert Automation not in admin.site._registry and AutomationState not in admin.site._registry


def test_support_staff_who_are_no_member_are_named_in_an_event_for_each_change(client, house, staff, owner):
    from devices.models import Event

    client.force_login(staff)
    links = urls(house, make_automation(house, name="Pool pump"))
    assert client.post(links["new"], valid_post(house, name="Boiler")).status_code == 302
    assert client.post(links["edit"], valid_post(house, name="Pool pump at noon")).status_code == 302
    assert client.post(links["toggle"], {"enabled": "0"}).status_code == 302
    assert client.post(links["delete"]).status_code == 302
    events = Event.objects.filter(location=house, kind=Event.CONFIGURATION).order_by("time", "pk")
    assert [event.message for event in events] == [
        "Automation “Boiler” created by staff (support staff, not a member).",
        "Automation “Pool pump at noon” changed by staff (support staff, not a member).",
        "Automation “Pool pump at noon” disabled by staff (support staff, not a member).",
        "Automation “Pool pump at noon” deleted by staff (support staff, not a member).",
    ]
    assert all(event.data["by"] == "staff" and event.data["support"] for event in events)
    # A member's changes are theirs to make: no such event.
    client.force_login(owner)
    assert client.post(urls(house, Automation.objects.get())["toggle"], {"enabled": "0"}).status_code == 302
    assert events.count() == 4

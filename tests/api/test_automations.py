"""Automations over the API: validated as on the page (nothing stored when refused), changed by
owners, installers and support staff, listed to every member, hidden from anyone else."""

from __future__ import annotations

import pytest

from metering.automations.models import Automation
from tests.api.conftest import bearer, token_for

pytestmark = pytest.mark.django_db


def base(location) -> str:
    return f"/api/v1/locations/{location.pk}/automations"


def boiler(location):
    return location.output_modules.get().relays.get(number="1")


def surplus(location, **changes) -> dict:
    return {
        "name": "Boiler on surplus",
        "quantity": "grid_export",
        "threshold": 1500,
        "release": 200,
        "duration_s": 300,
        "relay": boiler(location).pk,
        "action": "on",
        "revert": True,
        **changes,
    }


def write(client, method: str, url: str, token: str, body: dict | None = None):
    return getattr(client, method)(url, body, content_type="application/json", **bearer(token))


def test_the_owner_creates_reads_changes_and_deletes_an_automation(client, house, owner_token):
    location, _ = house
    created = write(client, "post", base(location), owner_token, surplus(location))
    assert created.status_code == 201, created.content
    automation = created.json()
    assert automation["enabled"] is True
    assert automation["sentence"].startswith("When grid export is above 1,500 W")
    stored = Automation.objects.get(pk=automation["id"])
    assert (stored.location, stored.relay, stored.threshold, stored.release) == (location, boiler(location), 1500, 200)

    url = f"{base(location)}/{automation['id']}"
    assert client.get(url, **bearer(owner_token)).json()["name"] == "Boiler on surplus"
    assert [a["id"] for a in client.get(base(location), **bearer(owner_token)).json()] == [automation["id"]]

    changed = write(client, "patch", url, owner_token, {"enabled": False, "threshold": 2000})
    assert changed.status_code == 200, changed.content
    stored.refresh_from_db()
    assert (stored.enabled, stored.threshold, stored.name) == (False, 2000, "Boiler on surplus")

    assert write(client, "delete", url, owner_token).status_code == 204
    assert not Automation.objects.exists()
    assert client.get(url, **bearer(owner_token)).status_code == 404


def test_it_creates_one_from_a_ready_made_template(client, house, owner_token):
    location, _ = house
    response = write(client, "post", base(location), owner_token, {"template": "overload", "threshold": 32})
    assert response.status_code == 201, response.content
    automation = response.json()
    assert (automation["template"], automation["name"], automation["quantity"]) == (
        "overload",
        "Overload protection",
        "grid_current",
    )
    assert (automation["threshold"], automation["action"], automation["may_override_manual"]) == (32, "off", True)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"threshold": 5_000_000}, "threshold", "Give a value from 0 to 1,000,000 W"),
        ({"release": 1800}, "release", "at or below the threshold"),
        ({"quantity": "load_power"}, "load", "Choose the load"),
        ({"on_minutes": 7}, "on_minutes", "Select a valid choice"),
        ({"action": "off", "on_minutes": 15}, "on_minutes", "only for switching on"),
        ({"duration_s": 100_000}, "duration_s", "less than or equal to 86400"),
        ({"name": ""}, "name", "required"),
        ({"quantity": "wind"}, "quantity", "quantity"),
    ],
)
def test_it_refuses_what_the_page_refuses_and_stores_nothing(client, house, owner_token, changes, field, message):
    location, _ = house
    response = write(client, "post", base(location), owner_token, surplus(location, **changes))
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert message in response.json()["error"]
    assert not Automation.objects.exists()


def test_it_refuses_another_locations_relay_and_a_name_taken(client, house, neighbour, owner_token):
    location, _ = house
    other, _ = neighbour
    foreign = write(client, "post", base(location), owner_token, surplus(location, relay=boiler(other).pk))
    assert (foreign.status_code, foreign.json()["field"]) == (400, "relay")
    assert write(client, "post", base(location), owner_token, surplus(location)).status_code == 201
    taken = write(client, "post", base(location), owner_token, surplus(location))
    assert (taken.status_code, taken.json()["field"]) == (400, "name")
    assert Automation.objects.count() == 1


def test_a_refused_change_leaves_the_automation_as_it_was(client, house, owner_token):
    location, _ = house
    automation = write(client, "post", base(location), owner_token, surplus(location)).json()
    url = f"{base(location)}/{automation['id']}"
    response = write(client, "patch", url, owner_token, {"threshold": -5, "enabled": False})
    assert response.status_code == 400
    stored = Automation.objects.get()
    assert (stored.threshold, stored.enabled) == (1500, True)


def test_the_installer_changes_them_and_the_viewer_only_reads(client, house, installer, viewer, owner_token):
    location, _ = house
    installer_token, viewer_token = token_for(installer), token_for(viewer)
    assert write(client, "post", base(location), installer_token, surplus(location)).status_code == 201
    automation = Automation.objects.get()
    url = f"{base(location)}/{automation.pk}"
    assert client.get(base(location), **bearer(viewer_token)).status_code == 200
    for method, body in (("post", surplus(location, name="Other")), ("patch", {"enabled": False}), ("delete", None)):
        target = base(location) if method == "post" else url
        refused = write(client, method, target, viewer_token, body)
        assert refused.status_code == 403, method
        assert "owner or the installer" in refused.json()["error"]
    assert list(Automation.objects.values_list("name", "enabled")) == [("Boiler on surplus", True)]


def test_it_hides_another_users_automations(client, house, neighbour, stranger, owner_token):
    location, _ = house
    other, _ = neighbour
    theirs = write(client, "post", base(other), token_for(stranger), surplus(other)).json()
    assert client.get(base(other), **bearer(owner_token)).status_code == 404
    assert client.get(f"{base(other)}/{theirs['id']}", **bearer(owner_token)).status_code == 404
    # Nor through the owner's own location.
    assert client.get(f"{base(location)}/{theirs['id']}", **bearer(owner_token)).status_code == 404
    assert write(client, "delete", f"{base(location)}/{theirs['id']}", owner_token).status_code == 404
    assert write(client, "patch", f"{base(other)}/{theirs['id']}", owner_token, {"enabled": False}).status_code == 404
    assert Automation.objects.get(pk=theirs["id"]).enabled is True


def test_support_staff_who_are_no_member_are_named_in_an_event_for_each_change(client, house, staff):
    from devices.models import Event

    location, _ = house
    token = token_for(staff)
    created = write(client, "post", base(location), token, surplus(location))
    assert created.status_code == 201
    url = f"{base(location)}/{created.json()['id']}"
    assert write(client, "patch", url, token, {"enabled": False}).status_code == 200
    assert write(client, "delete", url, token).status_code == 204
    events = Event.objects.filter(location=location, kind=Event.CONFIGURATION).order_by("time", "pk")
    assert [event.message for event in events] == [
        "Automation “Boiler on surplus” created by staff (support staff, not a member).",
        "Automation “Boiler on surplus” changed by staff (support staff, not a member).",
        "Automation “Boiler on surplus” deleted by staff (support staff, not a member).",
    ]

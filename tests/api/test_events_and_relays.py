"""Events (paginated, newest first) and relays, switched through the dashboard's command path."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from devices.models import Event
from metering.models import RelayCommand
from tests.api.conftest import bearer, token_for

pytestmark = pytest.mark.django_db


def events_url(location) -> str:
    return f"/api/v1/locations/{location.pk}/events"


def make_events(location, count: int) -> None:
    now = timezone.now()
    for n in range(count):
        kind = Event.DATA_GAP if n % 2 else Event.GATEWAY_ONLINE
        Event.objects.create(
            location=location, kind=kind, message=f"event {n}", time=now - timedelta(minutes=count - n)
        )


def test_it_pages_events_newest_first(api, house):
    location, _ = house
    make_events(location, 5)
    first = api.get(events_url(location), page_size=2).json()
    assert (first["count"], first["page"], first["pages"], first["page_size"]) == (5, 1, 3, 2)
    assert [e["message"] for e in first["items"]] == ["event 4", "event 3"]
    last = api.get(events_url(location), page_size=2, page=3).json()
    assert [e["message"] for e in last["items"]] == ["event 0"]
    gaps = api.get(events_url(location), kind=Event.DATA_GAP).json()
    assert [e["message"] for e in gaps["items"]] == ["event 3", "event 1"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 4, "page_size": 2}, "page"),
        ({"page": 0}, "page"),
        ({"page_size": 500}, "page_size"),
        ({"kind": "nope"}, "kind"),
    ],
)
def test_it_refuses_bad_paging_with_400(api, house, params, field):
    location, _ = house
    make_events(location, 5)
    response = api.get(events_url(location), **params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_it_hides_another_users_events(api, neighbour):
    other, _ = neighbour
    make_events(other, 1)
    assert api.get(events_url(other)).status_code == 404


def relay_of(location, number: str = "1"):
    return location.output_modules.get().relays.get(number=number)


def switch_url(location, relay) -> str:
    return f"/api/v1/locations/{location.pk}/relays/{relay.pk}/commands"


def test_it_switches_a_relay_through_the_command_path_and_logs_the_event_on_acknowledgement(client, api, house):
    location, gateway_token = house
    boiler = relay_of(location)
    response = api.post(switch_url(location, boiler), {"on": True, "minutes": 15})
    assert response.status_code == 202
    command = response.json()
    assert (command["relay"], command["on"], command["status"], command["requested_by"]) == (
        "OUT-T/1",
        True,
        "pending",
        "owner",
    )
    stored = RelayCommand.objects.get(pk=command["id"])
    assert stored.until is not None
    # The device carries it out and says so, as for a click on the dashboard.
    ack = {"type": "ack", "command": str(stored.pk), "relay": "OUT-T/1", "on": True}
    acked = client.post(
        "/api/v1/ingest/acks", orjson.dumps(ack), content_type="application/json", **bearer(gateway_token)
    )
    assert acked.status_code == 200
    event = Event.objects.get(location=location, kind=Event.RELAY)
    assert event.message.startswith("Boiler switched on until") and "(by owner)" in event.message
    relays = api.get(f"/api/v1/locations/{location.pk}/relays").json()
    assert relays[0]["is_on"] is True and relays[0]["off_at"] is not None
    commands = api.get(f"/api/v1/locations/{location.pk}/relay-commands").json()
    assert [(c["id"], c["status"]) for c in commands["items"]] == [(stored.pk, "done")]


def test_it_lists_relay_commands_newest_first(api, house):
    location, _ = house
    for on in (True, False, True):
        assert api.post(switch_url(location, relay_of(location, "2")), {"on": on}).status_code == 202
    items = api.get(f"/api/v1/locations/{location.pk}/relay-commands").json()["items"]
    assert [c["on"] for c in items] == [True, False, True]
    assert items[0]["id"] > items[1]["id"] > items[2]["id"]


@pytest.mark.parametrize("role", ["viewer", "installer"])
def test_only_the_owner_switches_relays(client, house, role, request):
    location, _ = house
    token = token_for(request.getfixturevalue(role))
    response = client.post(
        switch_url(location, relay_of(location)), {"on": True}, content_type="application/json", **bearer(token)
    )
    assert response.status_code == 403
    assert "owner" in response.json()["error"]
    assert not RelayCommand.objects.exists()


def test_support_staff_switch_and_are_named_in_an_event(client, house, staff):
    location, _ = house
    token = token_for(staff)
    response = client.post(
        switch_url(location, relay_of(location)), {"on": False}, content_type="application/json", **bearer(token)
    )
    assert response.status_code == 202
    assert "support staff" in Event.objects.get(location=location, kind=Event.RELAY).message


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"on": False, "minutes": 15}, "minutes", "only for switching on"),
        ({"on": True, "minutes": 7}, "minutes", "5, 15, 30, 60"),
        ({"on": "maybe"}, "on", "on:"),
        ({}, "on", "on:"),
    ],
)
def test_it_refuses_a_bad_switch_with_400(api, house, body, field, message):
    location, _ = house
    response = api.post(switch_url(location, relay_of(location)), body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert message in response.json()["error"]
    assert not RelayCommand.objects.exists()


def test_it_never_switches_another_locations_relay(api, house, neighbour):
    location, _ = house
    other, _ = neighbour
    assert api.post(switch_url(other, relay_of(other)), {"on": True}).status_code == 404
    # Nor one of another location through this one's URL.
    assert api.post(switch_url(location, relay_of(other)), {"on": True}).status_code == 404
    assert not RelayCommand.objects.exists()

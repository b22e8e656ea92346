"""Locations and their live values: members see theirs, anyone else gets 404."""

from __future__ import annotations

import pytest

from metering import live
from tests.api.conftest import bearer, token_for
from tests.dashboard.conftest import ingest
from tests.factories import star_frame

pytestmark = pytest.mark.django_db


def test_it_lists_the_users_locations_with_their_role(api, house, neighbour, client, viewer):
    location, _ = house
    assert api.get("/api/v1/locations").json() == [
        {
            "id": location.pk,
            "name": "Test house",
            "address": "Street 1",
            "timezone": "Europe/Brussels",
            "topology": "3P+N",
            "frequency_hz": 50,
            "role": "owner",
        }
    ]
    as_viewer = client.get("/api/v1/locations", **bearer(token_for(viewer))).json()
    assert [(row["id"], row["role"]) for row in as_viewer] == [(location.pk, "viewer")]


def test_it_details_a_location(api, house):
    location, _ = house
    detail = api.get(f"/api/v1/locations/{location.pk}").json()
    assert detail["gateway"]["serial"] == "GW-T"
    assert [load["name"] for load in detail["loads"]] == ["Grid", "Heat pump"]
    assert [i["ref"] for i in detail["inputs"]] == ["INP-T/1", "INP-T/2"]
    assert [(r["ref"], r["name"], r["is_on"]) for r in detail["relays"]] == [
        ("OUT-T/1", "Boiler", False),
        ("OUT-T/2", "Pump", False),
    ]
    assert detail["may_switch_relays"] is True


def test_it_hides_another_users_location(api, neighbour, house):
    other, _ = neighbour
    for path in (
        "",
        "/live",
        "/events",
        "/relays",
        "/relay-commands",
        "/history?level=day&from=2026-01-01&to=2026-01-02",
    ):
        response = api.get(f"/api/v1/locations/{other.pk}{path}")
        assert response.status_code == 404, path
        assert response.json() == {"error": "not found", "field": None}
    assert api.get("/api/v1/locations/999999").status_code == 404


def test_it_serves_the_live_values_exactly_as_stored(client, api, house):
    location, gateway_token = house
    ingest(client, gateway_token, star_frame())
    served = api.get(f"/api/v1/locations/{location.pk}/live")
    assert served.status_code == 200
    assert served["Content-Type"] == "application/json"
    assert served.json() == live.latest(location.pk)
    assert {"location", "t", "topology", "frequency", "loads", "inputs", "checks"} <= set(served.json())


def test_it_serves_empty_live_values_before_the_first_frame(api, house):
    location, _ = house
    assert api.get(f"/api/v1/locations/{location.pk}/live").json() == {
        "location": location.pk,
        "t": None,
        "topology": "3P+N",
        "frequency": None,
        "loads": [],
        "inputs": [],
        "checks": [],
    }


def test_a_session_reads_the_live_values_as_before(client, house, owner, stranger):
    location, _ = house
    url = f"/api/v1/locations/{location.pk}/live"
    client.force_login(owner)
    assert client.get(url).status_code == 200
    client.force_login(stranger)
    assert client.get(url).status_code == 404

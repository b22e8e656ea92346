"""Who may call the API: a user's token or session on every endpoint; no credentials, a bad or
revoked token: 401; a gateway token only for its location's live values."""

from __future__ import annotations

import pytest
from django.test import Client

from dashboard.models import ApiToken
from tests.api.conftest import bearer, token_for

pytestmark = pytest.mark.django_db


def user_endpoints(location_id: int, relay_id: int) -> list[tuple[str, str]]:
    """Every operation of the API a user calls (method, url), with valid parameters."""
    base = f"/api/v1/locations/{location_id}"
    history = "?level=day&from=2026-01-01&to=2026-01-08"
    return [
        ("get", "/api/v1/locations"),
        ("get", base),
        ("get", f"{base}/live"),
        ("get", f"{base}/history{history}"),
        ("get", f"{base}/history.csv{history}"),
        ("get", f"{base}/events"),
        ("get", f"{base}/relays"),
        ("get", f"{base}/relay-commands"),
        ("post", f"{base}/relays/{relay_id}/commands"),
        ("get", f"{base}/automations"),
    ]


def call(client, method: str, url: str, **headers):
    if method == "post":
        return client.post(url, {"on": True}, content_type="application/json", **headers)
    return client.get(url, **headers)


def first_relay(location):
    return location.output_modules.get().relays.get(number="1")


def test_it_refuses_every_endpoint_without_credentials(client, house):
    location, _ = house
    for method, url in user_endpoints(location.pk, first_relay(location).pk):
        response = call(client, method, url)
        assert response.status_code == 401, url
        assert response.json()["field"] == "Authorization", url
        assert response["WWW-Authenticate"] == 'Bearer realm="api"', url


def test_it_refuses_every_endpoint_with_a_revoked_token(client, house, owner):
    location, _ = house
    token = token_for(owner)
    ApiToken.objects.filter(user=owner).delete()
    for method, url in user_endpoints(location.pk, first_relay(location).pk):
        assert call(client, method, url, **bearer(token)).status_code == 401, url


def test_it_answers_every_endpoint_to_the_owners_token(client, house, owner):
    location, _ = house
    token = token_for(owner)
    for method, url in user_endpoints(location.pk, first_relay(location).pk):
        assert call(client, method, url, **bearer(token)).status_code in (200, 202), url


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Bearer idk_not-a-token", "Basic b3duZXI6cHc="])
def test_it_refuses_a_malformed_or_unknown_authorization_header(client, house, header):
    response = client.get("/api/v1/locations", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]


def test_a_bad_token_is_refused_even_beside_a_valid_session(client, house, owner):
    client.force_login(owner)
    assert client.get("/api/v1/locations").status_code == 200
    assert client.get("/api/v1/locations", **bearer("idk_revoked")).status_code == 401


def test_a_gateway_token_reads_only_its_own_live_values(client, house, neighbour):
    location, gateway_token = house
    other, _ = neighbour
    assert client.get(f"/api/v1/locations/{location.pk}/live", **bearer(gateway_token)).status_code == 200
    assert client.get(f"/api/v1/locations/{other.pk}/live", **bearer(gateway_token)).status_code == 404
    for url in ("/api/v1/locations", f"/api/v1/locations/{location.pk}", f"/api/v1/locations/{location.pk}/events"):
        assert client.get(url, **bearer(gateway_token)).status_code == 401, url


def test_a_session_switches_a_relay_only_with_the_csrf_token(house, owner):
    location, _ = house
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    browser.get("/account/api-tokens/")  # sets the csrftoken cookie
    url = f"/api/v1/locations/{location.pk}/relays/{first_relay(location).pk}/commands"
    refused = browser.post(url, {"on": True}, content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]
    csrf = browser.cookies["csrftoken"].value
    assert browser.post(url, {"on": True}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf).status_code == 202


def test_a_token_needs_no_csrf_token(house, owner):
    location, _ = house
    token = token_for(owner)
    browser = Client(enforce_csrf_checks=True)
    url = f"/api/v1/locations/{location.pk}/relays/{first_relay(location).pk}/commands"
    assert browser.post(url, {"on": True}, content_type="application/json", **bearer(token)).status_code == 202

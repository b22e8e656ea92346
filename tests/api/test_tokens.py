"""API tokens: created and revoked on a page by their user, hashed at rest, bounded."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from dashboard.models import MAX_TOKENS_PER_USER, NAME_MAX_LENGTH, TOKEN_PREFIX, ApiToken
from devices.models import hash_token
from tests.api.conftest import bearer, token_for

pytestmark = pytest.mark.django_db

PAGE = "/account/api-tokens/"
LOCATIONS = "/api/v1/locations"


def shown_token(content: bytes) -> str:
    match = re.search(rb'id="new-token-value"[^>]*value="([^"]+)"', content)
    assert match, "the page shows no new token"
    return match.group(1).decode()


def test_it_shows_a_new_token_once_and_stores_only_its_hash(client, owner):
    client.force_login(owner)
    response = client.post(PAGE, {"name": "Home Assistant"})
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    token = shown_token(response.content)
    assert token.startswith(TOKEN_PREFIX)
    row = ApiToken.objects.get(user=owner)
    assert (row.name, row.token_hash) == ("Home Assistant", hash_token(token))
    assert token not in str(list(ApiToken.objects.values()))
    again = client.get(PAGE)
    assert again.status_code == 200
    assert token.encode() not in again.content
    assert b"Home Assistant" in again.content
    assert client.get(LOCATIONS, **bearer(token)).status_code == 200


def test_every_page_links_to_the_tokens_page_for_a_signed_in_user(client, owner):
    client.force_login(owner)
    assert f'href="{PAGE}"'.encode() in client.get("/").content


def test_it_lists_only_the_users_own_tokens(client, owner, stranger):
    token_for(stranger, "stranger's script")
    token_for(owner, "owner's script")
    client.force_login(owner)
    page = client.get(PAGE).content
    assert b"owner&#x27;s script" in page
    assert b"stranger" not in page


def test_a_revoked_token_is_refused_at_once(client, owner):
    token = token_for(owner)
    assert client.get(LOCATIONS, **bearer(token)).status_code == 200
    client.force_login(owner)
    row = ApiToken.objects.get(user=owner)
    response = client.post(f"{PAGE}{row.pk}/revoke/")
    assert response.status_code == 302
    assert not ApiToken.objects.filter(pk=row.pk).exists()
    client.logout()
    refused = client.get(LOCATIONS, **bearer(token))
    assert refused.status_code == 401
    assert refused.json() == {"error": "unknown or revoked API token", "field": "Authorization"}


def test_it_never_revokes_another_users_token(client, owner, stranger):
    token = token_for(owner)
    client.force_login(stranger)
    row = ApiToken.objects.get(user=owner)
    assert client.post(f"{PAGE}{row.pk}/revoke/").status_code == 404
    assert client.get(LOCATIONS, **bearer(token)).status_code == 200


def test_it_needs_a_signed_in_user(client):
    assert client.get(PAGE).status_code == 302
    assert client.post(PAGE, {"name": "x"}).status_code == 302
    assert not ApiToken.objects.exists()


def test_it_needs_the_csrf_token_to_create_or_revoke(owner):
    token_for(owner)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    assert browser.post(PAGE, {"name": "forged"}).status_code == 403
    row = ApiToken.objects.get(user=owner)
    assert browser.post(f"{PAGE}{row.pk}/revoke/").status_code == 403
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["script"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "This field is required."), ("   ", "This field is required."), ("x" * (NAME_MAX_LENGTH + 1), "at most 80")],
)
def test_it_refuses_an_empty_or_too_long_name(client, owner, name, message):
    client.force_login(owner)
    response = client.post(PAGE, {"name": name})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert b'aria-invalid="true"' in response.content
    assert not ApiToken.objects.exists()


def test_it_caps_the_tokens_of_a_user(client, owner):
    for n in range(MAX_TOKENS_PER_USER):
        token_for(owner, f"token {n}")
    with pytest.raises(ValidationError, match="revoke one"):
        ApiToken.issue(owner, "one too many")
    client.force_login(owner)
    assert b"Revoke one to create another" in client.get(PAGE).content
    response = client.post(PAGE, {"name": "one too many"})
    assert response.status_code == 400
    assert ApiToken.objects.filter(user=owner).count() == MAX_TOKENS_PER_USER


def test_it_records_when_a_token_was_last_used(client, owner):
    token = token_for(owner)
    row = ApiToken.objects.get(user=owner)
    assert row.last_used_at is None
    client.get(LOCATIONS, **bearer(token))
    row.refresh_from_db()
    first_use = row.last_used_at
    assert first_use is not None
    client.get(LOCATIONS, **bearer(token))  # within a minute: no write
    row.refresh_from_db()
    assert row.last_used_at == first_use
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
    client.get(LOCATIONS, **bearer(token))
    row.refresh_from_db()
    assert row.last_used_at > first_use


def test_the_token_of_a_deactivated_user_is_refused(client, owner):
    token = token_for(owner)
    owner.is_active = False
    owner.save()
    assert client.get(LOCATIONS, **bearer(token)).status_code == 401

"""The API's test cast: a house whose owner, viewer and installer are members, a neighbour's
house the stranger owns, and API tokens for them."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from dashboard.models import ApiToken
from tests.factories import make_location


@pytest.fixture(autouse=True)
def fresh_cache():
    """Live values live in the cache: start every test without any."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def house(owner, viewer, installer):
    """(location, gateway token) of a star house with two relays, a gas meter and a door contact."""
    return make_location(members={owner: "owner", viewer: "viewer", installer: "installer"})


@pytest.fixture
def neighbour(stranger):
    """(location, gateway token) of a house the stranger owns and nobody else may see."""
    return make_location(name="Neighbour", serial_prefix="N", members={stranger: "owner"})


def token_for(user, name: str = "script") -> str:
    return ApiToken.issue(user, name)[1]


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def owner_token(owner) -> str:
    return token_for(owner)


@pytest.fixture
def api(client, owner_token):
    """GET/POST as the owner with an API token, no session."""

    class Api:
        def get(self, url: str, **params):
            return client.get(url, params, **bearer(owner_token))

        def post(self, url: str, body: dict):
            return client.post(url, body, content_type="application/json", **bearer(owner_token))

    return Api()

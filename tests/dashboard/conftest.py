"""The dashboard's test house: an owner, a viewer and an installer are members; a stranger is not."""

from __future__ import annotations

import orjson
import pytest
from django.core.cache import cache

from dashboard import broadcast
from tests.factories import make_location, star_frame

INGEST_URL = "/api/v1/ingest/frames"


@pytest.fixture(autouse=True)
def fresh_state():
    """Live values live in the cache and coalescing in the process: start every test empty."""
    cache.clear()
    broadcast.reset()
    yield
    cache.clear()
    broadcast.reset()


@pytest.fixture
def house(owner, viewer, installer):
    """(location, gateway token) of a star house with two relays, a gas meter and a door contact."""
    return make_location(members={owner: "owner", viewer: "viewer", installer: "installer"})


def ingest(client, token: str, frame: dict | list):
    response = client.post(
        INGEST_URL, data=orjson.dumps(frame), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    return response.json()


__all__ = ["ingest", "star_frame"]

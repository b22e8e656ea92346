"""Live values and pushes shared through real Redis, as between several server processes."""

from __future__ import annotations

import orjson
import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from django.core.cache import caches

from tests.factories import make_location, star_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


@pytest.fixture
def redis_settings(settings, redis_url):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url, "KEY_PREFIX": "t"}
    }
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url], "prefix": "t"}}
    }
    caches["default"].clear()
    channel_layers.backends.clear()
    yield redis_url
    caches["default"].clear()
    channel_layers.backends.clear()


def test_it_keeps_live_values_in_redis_where_another_process_reads_them(client, owner, redis_settings):
    location, token = make_location(members={owner: "owner"})
    response = client.post(
        "/api/v1/ingest/frames",
        orjson.dumps(star_frame()),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200

    # Another process: a plain Redis client sees the key ...
    raw = redis.Redis.from_url(redis_settings)
    assert raw.exists(f"t:1:live:{location.pk}")
    # ... and a fresh cache connection (as in another worker) serves the same values.
    caches["default"].close()
    client.force_login(owner)
    live = client.get(f"/api/v1/locations/{location.pk}/live").json()
    assert live["loads"][0]["p"] == pytest.approx(1750, rel=2e-3)


def test_it_sends_relay_commands_to_a_device_socket_through_the_redis_layer(redis_settings, owner):
    from channels.testing import WebsocketCommunicator

    from config.asgi import application
    from metering.relays import request_relay

    location, token = make_location()
    relay = location.output_modules.get().relays.get(number="1")

    async def run():
        device = WebsocketCommunicator(
            application, "/ws/ingest/", headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        connected, _ = await device.connect(timeout=10)
        assert connected
        from asgiref.sync import sync_to_async

        await sync_to_async(request_relay)(relay, True, None, owner)
        message = orjson.loads(await device.receive_from(timeout=10))
        await device.disconnect()
        return message

    message = async_to_sync(run)()
    assert message["type"] == "command" and message["relay"] == "OUT-T/1"

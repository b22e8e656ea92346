"""The browser WebSocket /ws/locations/<id>/ through the real router: who may connect, what arrives."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.pubsub import RedisPubSubChannelLayer

from config.asgi import application
from dashboard import broadcast
from devices.models import Relay
from metering.models import RelayCommand
from tests.dashboard.conftest import ingest
from tests.dashboard.sockets import browser_socket, try_connect
from tests.factories import star_frame

pytestmark = pytest.mark.django_db(transaction=True)


def socket(client, location_id: int, user=None, origin: bytes = b"http://testserver") -> WebsocketCommunicator:
    """A browser's socket: signed in as ``user`` (its own session) or anonymous."""
    return browser_socket(f"/ws/locations/{location_id}/", user, origin)


def test_it_refuses_anonymous_and_stranger_sockets(client, house, stranger):
    location, _ = house
    assert try_connect(socket(client, location.pk)) is False
    assert try_connect(socket(client, location.pk, stranger)) is False
    assert try_connect(socket(client, 999_999, stranger)) is False


@pytest.mark.parametrize("persona", ["owner", "viewer", "installer", "staff"])
def test_it_accepts_members_and_staff(client, house, persona, request):
    location, _ = house
    assert try_connect(socket(client, location.pk, request.getfixturevalue(persona))) is True


def test_it_refuses_a_socket_from_another_origin(client, house, owner):
    location, _ = house
    assert try_connect(socket(client, location.pk, owner, origin=b"http://evil.example")) is False


def test_it_pushes_the_live_cards_after_a_frame_is_ingested(client, house, owner):
    location, token = house
    communicator = socket(client, location.pk, owner)

    async def run():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            await sync_to_async(ingest)(
                client,
                token,
                star_frame(
                    t=time.time() - 1, loads_w={"A": (1234.0, 0.0), "B": (0.0, 0.0), "C": (0.0, 0.0), "D": (0.0, 0.0)}
                ),
            )
            first = await communicator.receive_from(timeout=5)
            second = await communicator.receive_from(timeout=5)  # the events card (the first check of this process)
            return first, second
        finally:
            await communicator.disconnect()

    first, second = async_to_sync(run)()
    assert first.lstrip().startswith('<section id="card-live-values"')
    assert '<section id="card-inputs"' in first
    assert '<td class="num p">1234</td>' in first or '<td class="num p">1233</td>' in first
    assert second.lstrip().startswith('<div id="events-live"')


def test_it_sends_what_the_broadcast_rendered_to_every_member(client, house, owner, viewer):
    location, _ = house
    owner_socket = socket(client, location.pk, owner)
    viewer_socket = socket(client, location.pk, viewer)

    async def run():
        await owner_socket.connect(timeout=5)
        await viewer_socket.connect(timeout=5)
        try:
            await sync_to_async(broadcast.send)(location.pk, '<section id="card-live-values">hello</section>')
            return await owner_socket.receive_from(timeout=5), await viewer_socket.receive_from(timeout=5)
        finally:
            await owner_socket.disconnect()
            await viewer_socket.disconnect()

    assert async_to_sync(run)() == ('<section id="card-live-values">hello</section>',) * 2


def test_it_forwards_cards_without_a_trip_to_the_database_thread(client, house, owner, monkeypatch):
    location, _ = house
    communicator = socket(client, location.pk, owner)
    trips = []

    async def close_old_connections():
        trips.append(1)

    monkeypatch.setattr("channels.consumer.aclose_old_connections", close_old_connections)

    async def run():
        await communicator.connect(timeout=5)
        try:
            before = len(trips)  # connecting went through Channels' dispatch
            await sync_to_async(broadcast.send)(location.pk, '<section id="card-live-values">hello</section>')
            return before, await communicator.receive_from(timeout=5)
        finally:
            await communicator.disconnect()

    before, received = async_to_sync(run)()
    assert before == 1
    assert received == '<section id="card-live-values">hello</section>'
    assert len(trips) == 2  # the disconnect, not the card


def test_it_pushes_relay_states_and_events_when_the_device_acknowledges(client, house, owner):
    location, token = house
    relay = Relay.objects.get(module__location=location, number="1")
    communicator = socket(client, location.pk, owner)

    def switch_and_acknowledge():
        client.force_login(owner)
        client.post(f"/locations/{location.pk}/relays/{relay.pk}/", {"command": "on"})
        command = RelayCommand.objects.get()
        ack = {"type": "ack", "command": str(command.pk), "relay": relay.ref, "on": True}
        client.post(
            "/api/v1/ingest/acks", data=ack, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )

    async def run():
        await communicator.connect(timeout=5)
        try:
            await sync_to_async(switch_and_acknowledge)()
            return [await communicator.receive_from(timeout=5) for _ in range(4)]
        finally:
            await communicator.disconnect()

    # The request: the "switching" state and the events (the first look of this process);
    # the acknowledgement: the new state and the new event.
    pending, first_events, *acknowledgement = async_to_sync(run)()
    assert pending.lstrip().startswith(f'<div id="relay-state-{relay.pk}"') and "Switching on…" in pending
    assert first_events.lstrip().startswith('<div id="events-live"')
    acknowledged = next(m for m in acknowledgement if m.lstrip().startswith(f'<div id="relay-state-{relay.pk}"'))
    events = next(m for m in acknowledgement if m.lstrip().startswith('<div id="events-live"'))
    assert 'class="relay-state is-on"' in acknowledged and "Switching" not in acknowledged
    assert "Boiler switched on (by owner)" in events


def test_it_pushes_an_event_as_soon_as_it_is_recorded(client, house, owner):
    from devices.models import Event

    location, _ = house
    communicator = socket(client, location.pk, owner)
    broadcast.push_events(location.pk, at_once=True)  # what this process already showed

    async def run():
        await communicator.connect(timeout=5)
        try:
            await sync_to_async(Event.objects.create)(
                location=location, kind=Event.GATEWAY_OFFLINE, message="Gateway GW-T stopped sending data"
            )
            return await communicator.receive_from(timeout=5)
        finally:
            await communicator.disconnect()

    html = async_to_sync(run)()
    assert html.lstrip().startswith('<div id="events-live"') and "Gateway GW-T stopped sending data" in html


async def group_size(layer, group: str) -> int:
    """Members of a group in this process, for the in-memory layer and channels_redis's pub/sub layer."""
    if isinstance(layer, RedisPubSubChannelLayer):  # memberships live in the loop's own layer
        loop_layer = layer._get_layer()
        return len(loop_layer.groups.get(loop_layer._get_group_channel_name(group), ()))
    return len(layer.groups.get(group, {}))


def test_it_leaves_the_group_on_disconnect(client, house, owner):
    location, _ = house
    communicator = socket(client, location.pk, owner)
    layer = get_channel_layer()
    group = broadcast.group_name(location.pk)

    async def run():
        await communicator.connect(timeout=5)
        members = await group_size(layer, group)
        await communicator.disconnect()
        return members, await group_size(layer, group)

    assert async_to_sync(run)() == (1, 0)


def opened_from(location_id: int, user, origin: bytes, host: bytes | None) -> WebsocketCommunicator:
    """A socket with the Host header a browser sends (``host``) and the Origin of its page."""
    communicator = browser_socket(f"/ws/locations/{location_id}/", user, origin)
    if host is not None:
        communicator.scope["headers"].append((b"host", host))
    return communicator


# (Origin, Host): sockets from the page's own origin are accepted, any other scheme, host or port refused.
SAME_ORIGIN = [
    (b"http://localhost:8000", b"localhost:8000"),
    (b"http://testserver", b"testserver"),
    (b"http://testserver", b"testserver:80"),
    (b"http://testserver", None),  # no Host header (test clients only): the default port
]
OTHER_ORIGINS = [
    (b"http://localhost:9999", None),  # an allowed host name on another port
    (b"http://testserver:9999", None),
    (b"http://localhost:9999", b"localhost:8000"),  # another port than the page's
    (b"https://localhost:8000", b"localhost:8000"),  # another scheme than the socket's
    (b"http://evil.example:8000", b"localhost:8000"),
    (b"null", b"localhost:8000"),
    (b"http://evil.example", b"evil.example"),  # a host name not in ALLOWED_HOSTS
]


def test_it_checks_the_scheme_host_and_port_of_the_origin(client, house, owner):
    location, _ = house
    accepted = {(o, h): try_connect(opened_from(location.pk, owner, o, h)) for o, h in SAME_ORIGIN + OTHER_ORIGINS}
    assert accepted == {**dict.fromkeys(SAME_ORIGIN, True), **dict.fromkeys(OTHER_ORIGINS, False)}


def test_it_accepts_a_secure_origin_behind_a_proxy_and_the_trusted_origins(client, house, owner, settings):
    location, _ = house
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    behind_proxy = opened_from(location.pk, owner, b"https://localhost", b"localhost")
    behind_proxy.scope["headers"].append((b"x-forwarded-proto", b"https"))
    assert try_connect(behind_proxy) is True
    assert try_connect(opened_from(location.pk, owner, b"https://localhost", b"localhost")) is False
    assert try_connect(opened_from(location.pk, owner, b"https://app.example.com", b"localhost")) is True
    assert try_connect(opened_from(location.pk, owner, b"http://app.example.com", b"localhost")) is False


@pytest.mark.parametrize("path", ["/ws/nothing/", "/ws/locations/1/unknown/", "/"])
def test_it_closes_a_socket_at_an_unknown_path_with_4404(client, owner, path):
    communicator = browser_socket(path, owner)

    async def run():
        connected, _ = await communicator.connect(timeout=5)
        try:
            return connected, await communicator.receive_output(timeout=5)
        finally:
            await communicator.disconnect()

    connected, closed = async_to_sync(run)()
    assert connected
    assert closed == {"type": "websocket.close", "code": 4404}
    # Without an Origin (a device with a wrong path): refused at the handshake, no error either.
    assert try_connect(WebsocketCommunicator(application, path)) is False

"""Frames over the device WebSocket: JSON text and compact binary, one reply per frame."""

from __future__ import annotations

import orjson
import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from devices.models import Event
from metering.ingest.frames import encode_binary, frame_from_dict
from metering.models import PowerBoxState, RelayCommand
from tests.factories import make_location, star_frame

pytestmark = pytest.mark.django_db(transaction=True)


def connect(token: str | None) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return WebsocketCommunicator(application, "/ws/ingest/", headers=headers)


async def receive(communicator) -> dict:
    return orjson.loads(await communicator.receive_from(timeout=10))


def db(fn, *args, **kwargs):
    from asgiref.sync import sync_to_async

    return sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)


@pytest.fixture
def house():
    return make_location()


def test_it_refuses_a_socket_without_a_valid_token(house):
    from asgiref.sync import async_to_sync

    async def attempt(token):
        communicator = connect(token)
        connected, code = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected, code

    assert async_to_sync(attempt)(None) == (False, 4401)
    assert async_to_sync(attempt)("wrong") == (False, 4401)


def test_it_acknowledges_json_and_binary_frames(house):
    from asgiref.sync import async_to_sync

    _, token = house

    async def run():
        communicator = connect(token)
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        await communicator.send_to(text_data=orjson.dumps(star_frame(seq=1, t=1_764_090_000.0)).decode())
        first = await receive(communicator)
        binary = encode_binary(frame_from_dict(star_frame(seq=2, t=1_764_090_001.0)))
        await communicator.send_to(bytes_data=binary)
        second = await receive(communicator)
        await communicator.send_to(bytes_data=binary)
        third = await receive(communicator)
        await communicator.disconnect()
        return first, second, third

    first, second, third = async_to_sync(run)()
    assert first == {"type": "ack", "seq": 1, "status": "ok"}
    assert second == {"type": "ack", "seq": 2, "status": "ok"}
    assert third == {"type": "ack", "seq": 2, "status": "duplicate"}
    state = PowerBoxState.objects.get()
    assert state.frames == 2
    assert state.registers["load"]["Grid"][0] > 1.9 * 1750 / 3600


def test_it_answers_a_bad_frame_with_an_error_and_keeps_the_socket(house):
    from asgiref.sync import async_to_sync

    _, token = house

    async def run():
        communicator = connect(token)
        await communicator.connect(timeout=10)
        await communicator.send_to(bytes_data=b"IFB1garbage")
        error = await receive(communicator)
        await communicator.send_to(text_data="{not json")
        malformed = await receive(communicator)
        await communicator.send_to(text_data=orjson.dumps(star_frame(seq=1)).decode())
        ok = await receive(communicator)
        await communicator.disconnect()
        return error, malformed, ok

    error, malformed, ok = async_to_sync(run)()
    assert error["type"] == "error" and "binary frame truncated" in error["error"]
    assert malformed["type"] == "error" and malformed["error"].startswith("malformed JSON")
    assert ok["status"] == "ok"
    assert Event.objects.filter(kind=Event.INVALID_FRAME).count() == 2


@pytest.mark.parametrize("where", ["token check", "invalid frame's Event", "acknowledgement"])
def test_it_answers_503_and_keeps_the_socket_while_the_database_is_out_of_reach(house, monkeypatch, where):
    """As over HTTP and MQTT: a PostgreSQL restart is a 503 the device sends again, not a closed socket."""
    from asgiref.sync import async_to_sync
    from django.db import OperationalError

    from metering.ingest import gateway as gateways
    from metering.ingest import ws

    def unreachable(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")

    _, token = house
    message = {"text_data": orjson.dumps(star_frame(seq=1)).decode()}
    if where == "token check":
        monkeypatch.setattr(ws, "token_is_current", unreachable)
    elif where == "invalid frame's Event":
        monkeypatch.setattr(gateways, "record_invalid_frame", unreachable)
        message = {"text_data": "{not json"}
    else:
        monkeypatch.setattr(gateways.relays, "acknowledge", unreachable)
        message = {"text_data": orjson.dumps({"type": "ack", "command": 1, "relay": "R1", "on": True}).decode()}

    async def run():
        communicator = connect(token)
        await communicator.connect(timeout=10)
        await communicator.send_to(**message)
        refused = await receive(communicator)
        monkeypatch.undo()
        await communicator.send_to(text_data=orjson.dumps(star_frame(seq=1)).decode())
        ok = await receive(communicator)
        await communicator.disconnect()
        return refused, ok

    refused, ok = async_to_sync(run)()
    assert refused["type"] == "error" and refused["status"] == 503
    assert refused["error"].startswith("ingest is unavailable for a moment")
    assert ok == {"type": "ack", "seq": 1, "status": "ok"}
    assert not Event.objects.filter(kind=Event.INVALID_FRAME).exists()


def test_it_forwards_relay_commands_and_applies_the_devices_acknowledgement(house, owner):
    from asgiref.sync import async_to_sync

    from metering.relays import request_relay

    location, token = house
    relay = location.output_modules.get().relays.get(number="1")

    async def run():
        communicator = connect(token)
        await communicator.connect(timeout=10)
        await db(request_relay, relay, True, 15, owner)
        command = await receive(communicator)
        await communicator.send_to(
            text_data=orjson.dumps(
                {"type": "ack", "command": command["id"], "relay": command["relay"], "on": True}
            ).decode()
        )
        reply = await receive(communicator)
        await communicator.disconnect()
        return command, reply

    command, reply = async_to_sync(run)()
    assert command["type"] == "command" and command["relay"] == "OUT-T/1" and command["on"] is True
    assert command["until"] is not None
    assert reply == {"type": "ack", "relay": "OUT-T/1", "on": True}
    relay.refresh_from_db()
    assert relay.is_on and relay.off_at is not None
    assert RelayCommand.objects.get().status == RelayCommand.DONE
    event = Event.objects.get(kind=Event.RELAY)
    assert event.message.startswith("Boiler switched on until") and "(by owner)" in event.message


def test_it_names_the_index_of_the_bad_frame_in_a_json_list(house):
    from asgiref.sync import async_to_sync

    _, token = house
    bad = {**star_frame(seq=2), "seq": -1}

    async def run():
        communicator = connect(token)
        await communicator.connect(timeout=10)
        await communicator.send_to(text_data=orjson.dumps([star_frame(seq=1), bad]).decode())
        reply = await receive(communicator)
        await communicator.disconnect()
        return reply

    reply = async_to_sync(run)()
    assert (reply["type"], reply["field"], reply["status"]) == ("error", "[1].seq", 400)
    assert reply["error"].startswith("frame [1]: seq must be")
    assert not PowerBoxState.objects.filter(frames__gt=0).exists()

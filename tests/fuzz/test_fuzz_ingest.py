"""Hostile frames over HTTP and the ingest WebSocket: always a 4xx or an error reply, never a 500,
and a refused request changes nothing in the database.

Each example starts from the same empty state: over HTTP it runs in a savepoint rolled back
afterwards, over the WebSocket (whose tests need real transactions) the ingest tables are
emptied first. See ``strategies.py`` for what is sent.
"""

from __future__ import annotations

import math
import time

import orjson
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from config.asgi import application
from devices.models import Event, Gateway
from metering.models import InputCount, LoadEnergy, LocationEnergy, PowerBoxState, RelayCommand
from tests.fuzz.conftest import budget, changes, forget_ingest_state, stored_state
from tests.fuzz.strategies import (
    HOSTILE,
    SEQ_LIMIT,
    Case,
    binary_case,
    binary_frame,
    dumps,
    frame_doc,
    hostile,
    json_case,
)

pytestmark = pytest.mark.fuzz

URL = "/api/v1/ingest/frames"
ACK_URL = "/api/v1/ingest/acks"
TOKENS = st.sampled_from(("T", "T", "T", "T", "T", "T", "O", None, "wrong"))


def post(url: str, body: bytes, token: str | None) -> tuple[int, bytes]:
    """POST through Django; an exception a view raises (a 500 in production) is a failure."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    try:
        response = Client().post(url, data=body, content_type="application/json", **headers)
    except Exception as exc:  # noqa: BLE001 - any exception is the finding
        pytest.fail(f"the server raised {type(exc).__name__}: {exc!s:.500} (a 500 in production)")
    return response.status_code, response.content


def assert_refusal_explained(status: int, content: bytes) -> None:
    assert 400 <= status < 500, f"status {status}: {content[:500]!r}"
    body = orjson.loads(content)
    assert isinstance(body.get("error"), str) and body["error"].strip(), f"no error message in {content[:500]!r}"


def token_of(houses, who: str | None) -> str | None:
    return houses[who][1] if who in houses else who


def unusable_numbers(node, path: str = "") -> list[str]:
    """Where a JSON document holds a null or non-finite number instead of a figure."""
    if isinstance(node, dict):
        return [found for key, value in node.items() for found in unusable_numbers(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [found for i, value in enumerate(node) for found in unusable_numbers(value, f"{path}[{i}]")]
    if node is None or (isinstance(node, float) and not math.isfinite(node)):
        return [f"{path} = {node}"]
    return []


def assert_ingest_goes_on(houses) -> None:
    """After an accepted frame the registers hold figures, and the next frame is accepted too."""
    state = PowerBoxState.objects.filter(powerbox__serial="PB-T").first()
    if state is None:  # every frame was a duplicate of nothing stored, or the batch stored none
        return
    assert not unusable_numbers(state.registers), f"the registers hold {unusable_numbers(state.registers)}"
    history = [*LocationEnergy.objects.values(), *LoadEnergy.objects.values()]
    assert all(math.isfinite(x) for row in history for x in row.values() if isinstance(x, float)), history
    seq, t = state.last_seq + 1, state.last_end_t
    if seq >= SEQ_LIMIT or t > time.time() + 200:
        return
    status, content = post(URL, dumps(frame_doc(seq, t)), houses["T"][1])
    assert status == 200, f"the next frame (seq {seq}, t {t}) after an accepted one: {status} {content[:300]!r}"


def check_http(houses, url: str, case: Case, who: str | None) -> None:
    forget_ingest_state()
    with transaction.atomic():
        before = stored_state()
        status, content = post(url, case.body, token_of(houses, who))
        must_refuse = case.must_refuse or (url == URL and who != "T")  # the frames are the T house's
        event(f"HTTP {status}")
        if status == 200:
            assert not must_refuse, f"accepted what must be refused: {content[:300]!r}"
            if url == URL:
                assert_ingest_goes_on(houses)
        else:
            assert_refusal_explained(status, content)
            after = stored_state()
            assert after == before, f"a refused request ({status}: {content[:300]!r}) changed {changes(before, after)}"
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_it_accepts_the_unbroken_frames_the_fuzzing_starts_from(houses):
    """The strategies break valid frames: the same frames unbroken are accepted."""
    token = houses["T"][1]
    status, content = post(URL, dumps(frame_doc()), token)
    assert status == 200, content
    status, content = post(
        URL, dumps([frame_doc(2, frame_doc()["t"] + 0.05), frame_doc(3, frame_doc()["t"] + 0.1)]), token
    )
    assert status == 200, content
    assert PowerBoxState.objects.get(powerbox__serial="PB-T").frames == 3


@pytest.mark.django_db
@settings(max_examples=budget(300))
@given(case=json_case, who=TOKENS)
@example(case=Case(b"[NaN]", "NaN literal", True), who="T")
@example(case=Case(dumps({**frame_doc(), "seq": 2**53}), "seq 2**53", True), who="T")
def test_it_answers_every_hostile_json_body_with_a_4xx_and_changes_nothing(houses, case, who):
    check_http(houses, URL, case, who)


@pytest.mark.django_db
@settings(max_examples=budget(60))
@given(
    ack=st.fixed_dictionaries(
        {"type": st.sampled_from(("ack", "command", None))},
        optional={"command": hostile, "relay": st.sampled_from(("OUT-T/1", "OUT-T/9", "OUT-O/1", "x", *HOSTILE)),
                  "on": hostile},
    ),
    who=TOKENS,
)  # fmt: skip
def test_it_answers_every_hostile_relay_acknowledgement_with_a_4xx_and_changes_nothing(houses, ack, who):
    # A gateway may acknowledge its own location's relays only.
    own_relay = who in houses and ack.get("relay") == f"OUT-{who}/1" and isinstance(ack.get("on"), bool)
    check_http(houses, ACK_URL, Case(dumps(ack), "acknowledgement", None if own_relay else True), who)


# --- MQTT: the worker's handling of one message, without a broker

TOPICS = (
    "infinity/GW-T/frames", "infinity/GW-T/frames", "infinity/GW-T/frames", "infinity/GW-T/acks",
    "infinity/GW-O/frames", "infinity/GW-ZZ/frames", "infinity//frames", "infinity/GW-T/frames/x", "x/GW-T/frames", "",
)  # fmt: skip


def mqtt_envelope(case: Case, token: str | None, shape: str) -> tuple[bytes, bool | None]:
    """The case's frames in an MQTT message ``{"token": ..., "frames": [...]}`` (or ``"frame"``),
    and whether it must be refused. The body goes in as text (it may be nested deeper than
    orjson writes)."""
    try:
        doc = orjson.loads(case.body)
    except orjson.JSONDecodeError:
        return case.body, True  # not JSON at all: sent as it is
    head = b"{" if token is None else b'{"token":' + orjson.dumps(token) + b","
    if shape == "frames":
        frames = case.body if isinstance(doc, list) else b"[" + case.body + b"]"
        return head + b'"frames":' + frames + b"}", case.must_refuse
    if shape == "frame":
        return head + b'"frame":' + case.body + b"}", case.must_refuse
    if isinstance(doc, dict):  # the body itself with a token: an envelope only if it holds frames
        inline = head + case.body.lstrip()[1:] if doc else head.rstrip(b",") + b"}"
        return inline, None if {"frame", "frames"} & set(doc) else True
    return case.body, True


@pytest.mark.django_db
@settings(max_examples=budget(150))
@given(case=json_case, topic=st.sampled_from(TOPICS), who=TOKENS, shape=st.sampled_from(("frames", "frame", "inline")))
def test_it_answers_every_hostile_mqtt_message_with_an_error_reply_and_changes_nothing(houses, case, topic, who, shape):
    from metering.ingest.mqtt import handle_message

    payload, must_refuse = mqtt_envelope(case, token_of(houses, who), shape)
    forget_ingest_state()
    with transaction.atomic():
        before = stored_state()
        try:
            reply = handle_message(topic, payload)
        except Exception as exc:  # noqa: BLE001 - any exception is the finding
            pytest.fail(f"handle_message raised {type(exc).__name__}: {exc!s:.500}")
        event(f"MQTT {reply.get('type')}")
        if reply.get("type") == "error":
            assert isinstance(reply.get("error"), str) and reply["error"].strip(), reply
            after = stored_state()
            assert after == before, f"a refused message ({reply['error']!r}) changed {changes(before, after)}"
        else:
            assert reply.get("type") == "ack", reply
            wrong_gateway = who != "T" or topic.split("/")[1:2] != ["GW-T"]
            assert not (must_refuse or wrong_gateway), f"accepted: {reply}"
        transaction.set_rollback(True)


# --- the ingest WebSocket


def connect(token: str | None) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return WebsocketCommunicator(application, "/ws/ingest/", headers=headers)


def empty_ingest_tables() -> None:
    for model in (PowerBoxState, LocationEnergy, LoadEnergy, InputCount, RelayCommand, Event):
        model.objects.all().delete()
    Gateway.objects.update(last_seen_at=None)
    forget_ingest_state()


async def replies_to(communicator: WebsocketCommunicator, message: dict, frames: int) -> list[dict]:
    """The replies to one message: one error, or one acknowledgement per frame.

    A close is returned as ``{"close": code}``; an exception in the consumer is raised here.
    """
    await communicator.send_input({"type": "websocket.receive", **message})
    replies = []
    while len(replies) < frames:
        output = await communicator.receive_output(timeout=20)
        if output["type"] == "websocket.close":
            replies.append({"close": output.get("code")})
            break
        assert output["type"] == "websocket.send", output
        reply = orjson.loads(output["text"])
        replies.append(reply)
        if reply.get("type") == "error":
            break
    return replies


def check_socket_replies(replies: list[dict], case: Case, before: dict, after: dict) -> None:
    last = replies[-1]
    if "close" in last:
        code = last["close"]
        assert code in (1008, 1009) or 4000 <= code < 5000, f"socket closed with {code} after {case!r}"
        return
    if last.get("type") == "error":
        assert isinstance(last.get("error"), str) and last["error"].strip(), f"error reply without a message: {last}"
        assert "field" in last, last
        assert after == before, f"a refused message ({last['error']!r}) changed {changes(before, after)}"
        return
    assert all(reply.get("type") == "ack" for reply in replies), replies
    assert not case.must_refuse, f"acknowledged what must be refused: {replies}"


def check_socket(houses, messages: list[tuple[dict, int, Case]]) -> None:
    empty_ingest_tables()
    snapshot = sync_to_async(stored_state, thread_sensitive=True)

    seen = []

    async def run():
        communicator = connect(houses["T"][1])
        connected, code = await communicator.connect(timeout=20)
        assert connected, code
        try:
            for message, frames, case in messages:
                before = await snapshot()
                replies = await replies_to(communicator, message, frames)
                seen.append(replies[-1].get("type") or f"close {replies[-1].get('close')}")
                check_socket_replies(replies, case, before, await snapshot())
                if "close" in replies[-1]:
                    return
        finally:
            await communicator.disconnect()

    async_to_sync(run)()
    for outcome in seen:  # hypothesis records events in the test's own thread only
        event(f"socket {outcome}")


def text_message(case: Case) -> tuple[dict, int, Case]:
    try:
        doc = orjson.loads(case.body)
        frames = len(doc) if isinstance(doc, list) and doc else 1
    except orjson.JSONDecodeError:
        frames = 1
    return {"text": case.body.decode("utf-8", "surrogateescape")}, frames, case


@pytest.mark.django_db(transaction=True)
@settings(max_examples=budget(80))
@given(cases=st.lists(json_case, min_size=1, max_size=3))
def test_it_answers_every_hostile_json_message_on_the_socket_with_an_error_and_changes_nothing(houses, cases):
    check_socket(houses, [text_message(case) for case in cases])


@pytest.mark.django_db(transaction=True)
@settings(max_examples=budget(150))
@given(cases=st.lists(binary_case(), min_size=1, max_size=3))
@example(cases=[Case(binary_frame()[:-1], "one byte short", True)])
def test_it_answers_every_hostile_binary_message_on_the_socket_with_an_error_and_changes_nothing(houses, cases):
    check_socket(houses, [({"bytes": case.body}, 1, case) for case in cases])

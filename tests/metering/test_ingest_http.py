"""Frames over HTTP: token auth, strict validation, exactly-once registers, live values."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from django.core.cache import cache

from devices.models import Event
from metering.models import InputCount, LoadEnergy, LocationEnergy, PowerBoxState
from tests.factories import T0, make_location, star_frame

URL = "/api/v1/ingest/frames"
pytestmark = pytest.mark.django_db


def ONE_CYCLE_WH(power_w: float) -> float:
    return power_w * 0.021 / 3600  # one 50 Hz cycle and a sample


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def house(owner):
    return make_location(members={owner: "owner"})


def post(client, body, token):
    data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(URL, data=data, content_type="application/json", **headers)


def stored_state() -> dict:
    """Everything ingest may write, except the invalid-frame events it records on purpose."""
    return {
        "states": list(PowerBoxState.objects.values()),
        "events": list(Event.objects.exclude(kind=Event.INVALID_FRAME).values()),
        "location_energy": list(LocationEnergy.objects.values()),
        "load_energy": list(LoadEnergy.objects.values()),
        "input_counts": list(InputCount.objects.values()),
        "live": cache.get("live:1"),
    }


def test_it_computes_a_frame_and_serves_its_live_values(client, house, owner):
    location, token = house
    response = post(client, star_frame(), token)
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == [{"seq": 1, "status": "ok"}]

    client.force_login(owner)
    live = client.get(f"/api/v1/locations/{location.pk}/live").json()
    grid = live["loads"][0]
    assert grid["name"] == "Grid" and grid["kind"] == "grid"
    l1 = grid["phases"][0]
    assert l1["phase"] == "L1" and l1["ct"] == "CTH-T/A"
    assert l1["p"] == pytest.approx(1000, rel=2e-3)
    assert l1["q"] == pytest.approx(200, abs=3)
    assert l1["v_ln"] == pytest.approx(230, rel=1e-3)
    assert l1["v_ll"] == pytest.approx(398.4, rel=1e-3)
    assert grid["p"] == pytest.approx(1750, rel=2e-3)
    assert live["frequency"] == pytest.approx(50, abs=0.01)
    assert live["topology"] == "3P+N"
    assert live["checks"] == []


def test_it_adds_each_frames_energy_to_the_registers_exactly_once(client, house):
    _, token = house
    for seq in (1, 2, 2, 3):
        assert post(client, star_frame(seq=seq, t=1_764_090_000.0 + seq - 1), token).status_code == 200
    state = PowerBoxState.objects.get()
    grid_import_wh = state.registers["load"]["Grid"][0]
    # Three distinct seconds of 1,750 W; the repeated frame added nothing. The samples after
    # the last whole cycle (under 20 ms) wait for the next frame.
    assert 3 * 1750 / 3600 - ONE_CYCLE_WH(1750) <= grid_import_wh <= 3 * 1750 / 3600 * 1.001
    assert state.duplicates == 1 and state.frames == 3


def test_it_acknowledges_a_duplicate_without_changing_anything(client, house):
    _, token = house
    post(client, star_frame(seq=7), token)
    before = stored_state()
    response = post(client, star_frame(seq=7), token)
    assert response.json()["accepted"] == [{"seq": 7, "status": "duplicate"}]
    after = stored_state()
    before["states"][0]["duplicates"] += 1
    assert after == before


def test_it_records_a_gap_as_an_event_with_its_duration(client, house):
    location, token = house
    post(client, star_frame(seq=10, t=T0 + 1000.0), token)
    response = post(client, star_frame(seq=14, t=T0 + 1004.0), token)
    assert response.json()["accepted"] == [{"seq": 14, "status": "gap", "gap_s": 3.0}]
    gap = Event.objects.get(kind=Event.DATA_GAP)
    assert gap.location == location
    assert gap.data == {"from_seq": 11, "to_seq": 13, "missing": 3, "duration_s": 3.0}
    assert "3 frames missing" in gap.message


def test_it_counts_a_late_frame_once_without_moving_live_values_back(client, house, owner):
    location, token = house
    post(client, star_frame(seq=1, t=T0 + 1000.0), token)
    post(
        client,
        star_frame(seq=3, t=T0 + 1002.0, loads_w={"A": (2000.0, 0.0), "B": (0, 0), "C": (0, 0), "D": (0, 0)}),
        token,
    )
    late = post(client, star_frame(seq=2, t=T0 + 1001.0), token)
    assert late.json()["accepted"] == [{"seq": 2, "status": "late"}]
    again = post(client, star_frame(seq=2, t=T0 + 1001.0), token)
    assert again.json()["accepted"] == [{"seq": 2, "status": "duplicate"}]
    state = PowerBoxState.objects.get()
    assert state.last_seq == 3
    # Without a consecutive predecessor, each frame counts all its samples.
    assert state.registers["load"]["Grid"][0] == pytest.approx((1750 + 2000 + 1750) / 3600, abs=ONE_CYCLE_WH(2000) * 3)
    client.force_login(owner)
    assert client.get(f"/api/v1/locations/{location.pk}/live").json()["loads"][0]["p"] == pytest.approx(2000, rel=2e-3)


def test_it_accepts_a_list_of_frames(client, house):
    _, token = house
    response = post(client, [star_frame(seq=1, t=T0), star_frame(seq=2, t=T0 + 1.0)], token)
    assert [r["status"] for r in response.json()["accepted"]] == ["ok", "ok"]
    assert PowerBoxState.objects.get().frames == 2


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "missing or invalid gateway token"), ("not-a-token", "missing or invalid gateway token")],
)
def test_it_refuses_a_missing_or_wrong_token(client, house, token, message):
    response = post(client, star_frame(), token)
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert response.json()["field"] == "Authorization"
    assert not PowerBoxState.objects.exists()


def test_it_refuses_a_revoked_token(client, house):
    location, token = house
    location.gateway.revoke_token()
    assert post(client, star_frame(), token).status_code == 401


def test_it_refuses_a_rotated_out_token(client, house):
    location, token = house
    location.gateway.rotate_token()
    assert post(client, star_frame(), token).status_code == 401


def test_a_token_revoked_while_the_gateway_is_sending_is_refused_at_the_next_frame(client, house):
    location, token = house
    assert post(client, star_frame(seq=1), token).status_code == 200
    location.gateway.revoke_token()
    response = post(client, star_frame(seq=2), token)
    assert response.status_code == 401
    assert PowerBoxState.objects.get().frames == 1


def test_a_rotated_token_takes_over_at_the_next_frame(client, house):
    location, old = house
    assert post(client, star_frame(seq=1), old).status_code == 200
    new = location.gateway.rotate_token()
    assert post(client, star_frame(seq=2), old).status_code == 401
    assert post(client, star_frame(seq=2), new).status_code == 200


def test_a_token_revoked_behind_the_servers_back_is_refused_within_the_remember_time(client, house, monkeypatch):
    """A change that sends no signal (SQL, another process without Redis) ends at REMEMBER_S."""
    import time

    from devices.models import Gateway
    from metering.ingest import auth

    location, token = house
    assert post(client, star_frame(seq=1), token).status_code == 200
    Gateway.objects.filter(pk=location.gateway.pk).update(token_hash="")
    clock = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: clock + auth.REMEMBER_S + 1)
    assert post(client, star_frame(seq=2), token).status_code == 401


def unequal(frame):
    frame["currents"]["CTH-T/B"] = frame["currents"]["CTH-T/B"][:-1]
    return frame


def unknown_ct(frame):
    frame["currents"]["CTH-T/Z"] = frame["currents"]["CTH-T/A"]
    return frame


def unconfigured_ct(frame):
    frame["currents"]["CTH-NOPE/A"] = frame["currents"]["CTH-T/A"]
    return frame


def bad_version(frame):
    frame["v"] = 2
    return frame


def missing_seq(frame):
    del frame["seq"]
    return frame


def bad_fs(frame):
    frame["fs"] = 100_000
    return frame


def unknown_powerbox(frame):
    frame["powerbox"] = "PB-NOPE"
    return frame


def unknown_input(frame):
    frame["inputs"] = {"INP-T/4": {"state": 0, "pulses": 0}}
    return frame


def missing_voltage(frame):
    del frame["voltages"]["L3"]
    return frame


def no_zero_crossing(frame):
    frame["voltages"] = {k: [230.0] * len(v) for k, v in frame["voltages"].items()}
    return frame


@pytest.mark.parametrize(
    ("mutate", "status", "message", "field"),
    [
        (unequal, 400, "CTH-T/B", "currents.CTH-T/B"),
        (unknown_ct, 400, "CTH-T/Z", "currents.CTH-T/Z"),
        (unconfigured_ct, 422, "unknown CT input CTH-NOPE/A", "currents.CTH-NOPE/A"),
        (bad_version, 400, "unsupported frame version 2", "v"),
        (missing_seq, 400, "seq", "seq"),
        (bad_fs, 400, "fs", "fs"),
        (unknown_powerbox, 422, "unknown Power Box PB-NOPE", "powerbox"),
        (unknown_input, 422, "unknown input INP-T/4", "inputs.INP-T/4"),
        (missing_voltage, 422, "missing L3", "voltages"),
        (no_zero_crossing, 422, "zero crossing", None),
    ],
)
def test_it_refuses_a_bad_frame_and_changes_nothing(client, house, mutate, status, message, field):
    location, token = house
    post(client, star_frame(seq=1, t=T0), token)
    before = stored_state()
    response = post(client, mutate(star_frame(seq=3, t=T0 + 2.0)), token)
    assert response.status_code == status, response.content
    body = response.json()
    assert message in body["error"]
    assert body["field"] == field
    assert stored_state() == before
    invalid = Event.objects.get(kind=Event.INVALID_FRAME)
    assert invalid.location == location and message in invalid.message


def test_it_refuses_malformed_json_with_its_position(client, house):
    _, token = house
    response = post(client, b'{"v": 1, "powerbox": ', token)
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON")


def test_it_refuses_an_oversized_body_before_reading_it(client, house):
    _, token = house
    response = post(client, b"[" + b"0," * (5 * 1024 * 1024) + b"0]", token)
    assert response.status_code == 413
    assert "frame too large" in response.json()["error"]


def test_it_refuses_a_batch_with_one_bad_frame_and_stores_none(client, house):
    _, token = house
    response = post(client, [star_frame(seq=1, t=T0), unknown_powerbox(star_frame(seq=2, t=T0 + 1.0))], token)
    assert response.status_code == 422
    assert response.json()["field"] == "[1].powerbox"
    assert not PowerBoxState.objects.exists()


def test_it_answers_a_busy_stream_with_503_and_when_to_retry_and_stores_nothing(client, house, monkeypatch):
    from metering.ingest import gateway
    from metering.ingest.stream import Busy

    class BehindStream:
        def submit(self, *args, **kwargs):
            raise Busy("the ingest stream is behind", retry_after_s=7)

    _, token = house
    monkeypatch.setattr(gateway, "stream", BehindStream)
    before = stored_state()
    response = post(client, star_frame(), token)
    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    assert response.json() == {"error": "the ingest stream is behind", "field": None}
    assert stored_state() == before


@pytest.mark.parametrize("where", ["stream", "token lookup"])
def test_it_answers_503_when_redis_or_the_database_is_out_of_reach(client, house, monkeypatch, where):
    """A restart of Redis or PostgreSQL (tests/faults) is a 503 the device retries, not a 500."""
    import redis
    from django.db import OperationalError

    from metering.ingest import gateway, http

    class UnreachableStream:
        def submit(self, *args, **kwargs):
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def unreachable_database(authorization):
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")

    _, token = house
    if where == "stream":
        monkeypatch.setattr(gateway, "stream", UnreachableStream)
    else:
        monkeypatch.setattr(http, "gateway_for", unreachable_database)
    before = stored_state()
    response = post(client, star_frame(), token)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"].startswith("ingest is unavailable for a moment")
    assert stored_state() == before


def test_it_refuses_another_locations_module(client, house, django_user_model):
    _, token = house
    make_location(name="Neighbour", serial_prefix="N")
    frame = star_frame(seq=1)
    frame["currents"]["CTH-N/A"] = frame["currents"].pop("CTH-T/A")
    response = post(client, frame, token)
    assert response.status_code == 403
    assert response.json() == {
        "error": "module CTH-N belongs to another location than gateway GW-T",
        "field": "currents.CTH-N/A",
    }

    other = star_frame(serial_prefix="N", seq=1)
    response = post(client, other, token)
    assert response.status_code == 403
    assert response.json()["field"] == "powerbox"


def test_it_turns_pulses_into_units_rates_and_history(client, house, owner):
    location, token = house
    post(
        client,
        star_frame(
            seq=1,
            t=1_764_090_000.0,
            inputs={"INP-T/1": {"state": 0, "pulses": 1000}, "INP-T/2": {"state": 0, "pulses": 0}},
        ),
        token,
    )
    post(
        client,
        star_frame(
            seq=2,
            t=1_764_090_001.0,
            inputs={"INP-T/1": {"state": 1, "pulses": 1002}, "INP-T/2": {"state": 1, "pulses": 0}},
        ),
        token,
    )
    client.force_login(owner)
    live = client.get(f"/api/v1/locations/{location.pk}/live").json()
    gas = next(i for i in live["inputs"] if i["input"] == "INP-T/1")
    assert gas["value"] == pytest.approx(10.02) and gas["unit"] == "m3"
    assert gas["rate"] == pytest.approx(2 / 100 * 3600)  # m3 per hour
    door = Event.objects.get(kind=Event.INPUT_CHANGED)
    assert door.module == "INP-T/2" and door.message == "Front door closed"


def test_it_reports_a_pulse_counter_reset(client, house):
    _, token = house
    post(client, star_frame(seq=1, t=T0, inputs={"INP-T/1": {"state": 0, "pulses": 500}}), token)
    post(client, star_frame(seq=2, t=T0 + 1.0, inputs={"INP-T/1": {"state": 0, "pulses": 3}}), token)
    reset = Event.objects.get(kind=Event.PULSES_RESET)
    assert reset.data == {"before": 500, "after": 3}


def test_it_reports_a_gateway_back_online_after_silence(client, house):
    _, token = house
    post(client, star_frame(seq=1, t=T0), token)
    post(client, star_frame(seq=2, t=T0 + 61.0), token)
    assert Event.objects.filter(kind=Event.GATEWAY_ONLINE).count() == 1


def test_it_serves_live_values_only_to_members_and_the_gateway(client, house, stranger, viewer):
    location, token = house
    post(client, star_frame(), token)
    url = f"/api/v1/locations/{location.pk}/live"
    assert client.get(url).status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    client.force_login(stranger)
    assert client.get(url).status_code == 404
    _, other_token = make_location(name="Neighbour", serial_prefix="N")
    client.logout()
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {other_token}").status_code == 404


def test_it_hands_pending_relay_commands_to_a_polling_device_and_takes_its_ack(client, house, owner):
    from metering.relays import request_relay

    location, token = house
    relay = location.output_modules.get().relays.get(number="1")
    request_relay(relay, True, None, owner)
    commands = post(client, star_frame(seq=1), token).json()["commands"]
    assert [(c["relay"], c["on"]) for c in commands] == [("OUT-T/1", True)]
    relay.refresh_from_db()
    assert not relay.is_on  # not before the device confirms

    ack = {"type": "ack", "command": commands[0]["id"], "relay": "OUT-T/1", "on": True}
    response = client.post(
        "/api/v1/ingest/acks", ack, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.json() == {"relay": "OUT-T/1", "on": True}
    relay.refresh_from_db()
    assert relay.is_on and relay.changed_at is not None
    assert post(client, star_frame(seq=2, t=1_764_090_001.0), token).json()["commands"] == []


@pytest.mark.parametrize(
    ("ack", "message"),
    [
        ({"type": "ack", "relay": "OUT-T/9", "on": True}, "unknown relay OUT-T/9"),
        ({"type": "ack", "relay": "OUT-T/1", "on": "yes"}, "'on' as true or false"),
        ({"type": "ack", "on": True}, "needs 'relay'"),
    ],
)
def test_it_refuses_a_bad_acknowledgement(client, house, ack, message):
    location, token = house
    response = client.post(
        "/api/v1/ingest/acks", ack, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 422 and message in response.json()["error"]
    assert not location.output_modules.get().relays.filter(is_on=True).exists()


@pytest.mark.parametrize("where", ["token lookup", "relay"])
def test_it_answers_an_acknowledgement_with_503_while_the_database_is_out_of_reach(client, house, monkeypatch, where):
    """As for frames: the device sends its acknowledgement again, it does not get a 500."""
    from django.db import OperationalError

    from metering.ingest import gateway, http

    def unreachable_database(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")

    location, token = house
    if where == "relay":
        monkeypatch.setattr(gateway.relays, "acknowledge", unreachable_database)
    else:
        monkeypatch.setattr(http, "gateway_for", unreachable_database)
    ack = {"type": "ack", "relay": "OUT-T/1", "on": True}
    client.raise_request_exception = False
    response = client.post(
        "/api/v1/ingest/acks", ack, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"].startswith("ingest is unavailable for a moment")
    assert not location.output_modules.get().relays.filter(is_on=True).exists()


def test_it_refuses_an_acknowledgement_for_another_locations_relay(client, house):
    _, token = house
    make_location(name="Neighbour", serial_prefix="N")
    ack = {"type": "ack", "relay": "OUT-N/1", "on": True}
    response = client.post(
        "/api/v1/ingest/acks", ack, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 422
    assert "unknown relay OUT-N/1" in response.json()["error"]


def test_it_writes_each_frames_energy_into_its_five_minute_bucket(client, house):
    location, token = house
    boundary = 1_764_090_000.0  # a multiple of 300 s
    for seq, t in enumerate((boundary - 2, boundary - 1, boundary, boundary + 1), start=1):
        post(client, star_frame(seq=seq, t=t, inputs={"INP-T/1": {"state": 0, "pulses": 10 * seq}}), token)
    rows = list(LocationEnergy.objects.order_by("start"))
    # The bucket before the boundary is written as soon as a frame of the next one arrives;
    # the current one waits in the Power Box's state (at most 30 s) so each frame is one write.
    assert [row.start.timestamp() for row in rows] == [boundary - 300]
    assert rows[0].consumption_wh == pytest.approx(2 * 1750 / 3600, abs=ONE_CYCLE_WH(1750))
    assert rows[0].grid_import_wh == pytest.approx(rows[0].consumption_wh)
    load_rows = LoadEnergy.objects.filter(load__name="Heat pump")
    assert load_rows.get().import_wh == pytest.approx(2 * 800 / 3600, abs=ONE_CYCLE_WH(800))
    assert InputCount.objects.get().pulses == 10  # 10 → 20 → (30 is in the next bucket)

    for seq in range(5, 40):
        post(client, star_frame(seq=seq, t=boundary + seq - 3), token)
    current = LocationEnergy.objects.get(start=datetime.fromtimestamp(boundary, tz=UTC))
    assert current.seconds >= 30


def test_it_keeps_registers_across_a_restart_without_a_spike(client, house):
    from metering.ingest import process

    _, token = house
    post(client, star_frame(seq=1, t=T0), token)
    before = PowerBoxState.objects.get().registers["load"]["Grid"][0]
    process._carries.clear()  # what a restarted process has
    post(client, star_frame(seq=2, t=T0 + 1.0), token)
    after = PowerBoxState.objects.get().registers["load"]["Grid"][0]
    assert after - before == pytest.approx(1750 / 3600, abs=ONE_CYCLE_WH(1750))


def test_it_accepts_a_power_box_that_restarted_its_numbering(client, house):
    _, token = house
    post(client, star_frame(seq=5000, t=T0 + 1000.0), token)
    post(client, star_frame(seq=5001, t=T0 + 1001.0), token)
    response = post(client, star_frame(seq=1, t=T0 + 1010.0), token)
    assert response.json()["accepted"] == [{"seq": 1, "status": "ok"}]
    event = Event.objects.get(kind=Event.DATA_GAP)
    assert event.message == "Power Box PB-T restarted its frame numbering (seq 5001 → 1); no data for 8 s"
    assert event.data["renumbered"] is True
    # The new numbering is exactly-once as well.
    assert post(client, star_frame(seq=1, t=T0 + 1010.0), token).json()["accepted"][0]["status"] == "duplicate"
    assert post(client, star_frame(seq=2, t=T0 + 1011.0), token).json()["accepted"][0]["status"] == "ok"
    assert PowerBoxState.objects.get().frames == 4


def test_it_reports_a_jump_in_numbering_as_such_not_as_millions_of_missing_frames(client, house):
    _, token = house
    post(client, star_frame(seq=1, t=T0 + 1000.0), token)
    post(client, star_frame(seq=1_764_090_000, t=T0 + 1003.0), token)
    event = Event.objects.get(kind=Event.DATA_GAP)
    assert event.message.startswith("Power Box PB-T restarted its frame numbering (seq 1 → 1764090000)")


def test_it_refuses_a_frame_whose_seq_moves_forward_while_its_time_moves_back(client, house):
    _, token = house
    post(client, star_frame(seq=10, t=T0 + 1000.0), token)
    before = stored_state()
    response = post(client, star_frame(seq=12, t=T0 + 900.0), token)
    assert response.status_code == 409
    assert response.json()["field"] == "t"
    assert stored_state() == before


def test_it_meters_the_rest_of_the_house_when_a_ct_module_drops_out(client, house, owner):
    location, token = house
    post(client, star_frame(seq=1, t=T0), token)
    # A second module would be needed for a partial frame; drop one CT of the only hub instead.
    frame = star_frame(seq=2, t=T0 + 1.0)
    del frame["currents"]["CTH-T/D"]
    response = post(client, frame, token)
    assert response.status_code == 200, response.content
    diagnosis = Event.objects.get(kind=Event.DIAGNOSIS)
    assert diagnosis.module == "CTH-T"
    assert "termination plug" in diagnosis.message and "missing from the frames" in diagnosis.message
    client.force_login(owner)
    live = client.get(f"/api/v1/locations/{location.pk}/live").json()
    assert [load["name"] for load in live["loads"]] == ["Grid"]
    post(client, star_frame(seq=3, t=T0 + 2.0), token)  # back: one more diagnosis, then quiet
    post(client, star_frame(seq=4, t=T0 + 3.0), token)
    assert [e.data["diagnosis"] for e in Event.objects.filter(kind=Event.DIAGNOSIS).order_by("pk")] == [
        "module_missing",
        "module_back",
    ]


def test_it_keeps_accepting_consecutive_frames_across_a_configuration_change(client, house):
    from devices.models import LoadCt

    _, token = house
    post(client, star_frame(seq=1, t=T0), token)
    heat_pump_ct = LoadCt.objects.get(ct_input__letter="D")
    heat_pump_ct.reversed = True
    heat_pump_ct.save()
    response = post(client, star_frame(seq=2, t=T0 + 1.0), token)
    assert response.status_code == 200, response.content

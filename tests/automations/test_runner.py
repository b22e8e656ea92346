"""Automations running on live values (metering.automations.runner) against the database."""

from __future__ import annotations

import time
from datetime import timedelta

import orjson
import pytest
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from dashboard import broadcast
from devices.models import Event, Gateway, Relay
from metering import installed, live
from metering.automations import runner
from metering.automations.models import Automation, AutomationState
from metering.ingest import broker
from metering.models import RelayCommand
from metering.relays import acknowledge, pending_for, request_relay
from tests.factories import make_location, star_frame

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_state():
    cache.clear()
    broadcast.reset()
    installed.forget()
    yield
    cache.clear()
    broadcast.reset()


@pytest.fixture
def house(owner):
    location, token = make_location(members={owner: "owner"})
    return location, token


def boiler(location) -> Relay:
    return Relay.objects.get(module__location=location, name="Boiler")


def surplus_automation(location, **changes) -> Automation:
    fields = {
        "location": location,
        "name": "Boiler on solar surplus",
        "quantity": "grid_export",
        "direction": "above",
        "threshold": 1000.0,
        "release": 200.0,
        "duration_s": 60,
        "relay": boiler(location),
        "action": "on",
        "revert": True,
        "manual_window_minutes": 30,
    } | changes
    automation = Automation(**fields)
    automation.full_clean()
    automation.save()
    return automation


def export(watts: float, t: float) -> dict:
    return {"t": t, "totals": {"grid_export": watts, "grid_import": 0.0}, "loads": [], "inputs": []}


def feed(location, watts: float, times) -> None:
    for t in times:
        runner.run(location.pk, export(watts, t), t)


def test_it_switches_the_relay_through_the_command_path_and_logs_why(house):
    location, _ = house
    automation = surplus_automation(location)
    now = time.time()
    feed(location, 1500.0, [now, now + 30, now + 59])
    assert not RelayCommand.objects.exists()
    feed(location, 1500.0, [now + 60])

    command = RelayCommand.objects.get()
    assert (command.relay, command.on, command.automation, command.requested_by) == (
        boiler(location),
        True,
        automation,
        None,
    )
    gateway = Gateway.objects.get(location=location)
    assert [c["id"] for c in pending_for(gateway)] == [str(command.pk)]  # what the device's next reply carries
    event = Event.objects.get(kind=Event.RELAY)
    assert event.message == (
        "Automation “Boiler on solar surplus”: switch Boiler on, grid export 1,500 W, above 1,000 W for 1 min."
    )
    assert event.data["automation"] == automation.pk and event.data["command"] == command.pk

    acknowledge(gateway, {"type": "ack", "command": command.pk, "relay": command.relay.ref, "on": True})
    assert Event.objects.filter(message="Boiler switched on (by automation “Boiler on solar surplus”)").exists()


def test_it_asks_once_while_the_device_has_not_confirmed(house):
    location, _ = house
    surplus_automation(location, duration_s=0)
    now = time.time()
    feed(location, 1500.0, [now + k for k in range(10)])
    assert RelayCommand.objects.count() == 1


def test_its_state_survives_in_the_database_for_another_process(house):
    location, _ = house
    surplus_automation(location)
    now = time.time()
    feed(location, 1500.0, [now])
    assert AutomationState.objects.get().since == now
    runner._kept.clear()  # another process: nothing kept, only the database
    feed(location, 1500.0, [now + 60])
    assert RelayCommand.objects.count() == 1


def test_it_writes_nothing_and_reads_one_row_set_per_frame_while_nothing_changes(house, django_assert_max_num_queries):
    location, _ = house
    surplus_automation(location)
    now = time.time()
    feed(location, 100.0, [now])  # loads and keeps the automations
    with django_assert_max_num_queries(1):
        feed(location, 100.0, [now + 1])


def test_a_location_without_automations_costs_no_query_per_frame(house, django_assert_num_queries):
    location, _ = house
    now = time.time()
    feed(location, 1500.0, [now])
    with django_assert_num_queries(0):
        feed(location, 1500.0, [now + 1])


def test_a_disabled_automation_stops_at_once(house):
    location, _ = house
    automation = surplus_automation(location, duration_s=0)
    now = time.time()
    feed(location, 100.0, [now])  # kept in this process
    automation.enabled = False
    automation.save()
    feed(location, 1500.0, [now + 1, now + 2])
    assert not RelayCommand.objects.exists()


def test_an_automation_disabled_by_another_process_never_switches_on_what_this_one_kept(house):
    location, _ = house
    automation = surplus_automation(location, duration_s=0)
    now = time.time()
    feed(location, 100.0, [now])
    Automation.objects.filter(pk=automation.pk).update(enabled=False)  # no signal: this process still keeps it
    feed(location, 1500.0, [now + 1])
    assert not RelayCommand.objects.exists() and not Event.objects.exists()


def test_a_deleted_automation_stops_at_once(house):
    location, _ = house
    automation = surplus_automation(location, duration_s=0)
    now = time.time()
    feed(location, 100.0, [now])
    automation.delete()
    assert not AutomationState.objects.exists()
    feed(location, 1500.0, [now + 1])
    assert not RelayCommand.objects.exists()


def test_it_leaves_a_relay_switched_by_hand_within_the_window(house, owner):
    location, _ = house
    surplus_automation(location, duration_s=0)
    request_relay(boiler(location), False, user=owner)  # someone switched it off by hand
    now = time.time()
    feed(location, 1500.0, [now, now + 1])
    assert RelayCommand.objects.filter(automation__isnull=False).count() == 0


def test_a_manual_switch_asked_after_the_automations_were_kept_still_counts(house, owner):
    location, _ = house
    surplus_automation(location, duration_s=0)
    now = time.time()
    feed(location, 100.0, [now])  # kept before the click
    request_relay(boiler(location), False, user=owner)
    feed(location, 1500.0, [now + 1])
    assert RelayCommand.objects.filter(automation__isnull=False).count() == 0


def test_it_switches_once_the_manual_window_is_over_or_when_it_may_override(house, owner):
    location, _ = house
    manual = request_relay(boiler(location), False, user=owner)
    RelayCommand.objects.filter(pk=manual.pk).update(requested_at=timezone.now() - timedelta(minutes=31))
    surplus_automation(location, duration_s=0)
    feed(location, 1500.0, [time.time()])
    assert RelayCommand.objects.filter(automation__isnull=False).count() == 1

    Automation.objects.all().delete()
    request_relay(boiler(location), False, user=owner)
    surplus_automation(location, name="Overrides", duration_s=0, may_override_manual=True)
    feed(location, 1500.0, [time.time()])
    assert RelayCommand.objects.filter(automation__name="Overrides").count() == 1


def test_it_ignores_old_frames_a_gateway_replays(house):
    location, _ = house
    surplus_automation(location, duration_s=0)
    old = time.time() - 3600
    live.live_values_updated.send(sender=location.pk, values=export(1500.0, old))
    assert not RelayCommand.objects.exists()
    live.live_values_updated.send(sender=location.pk, values=export(1500.0, time.time()))
    assert RelayCommand.objects.count() == 1


def test_it_runs_on_frames_the_server_meters(client, house):
    """End to end through HTTP ingest: the grid exports 2.7 kW, the boiler's command comes back
    in the gateway's next reply."""
    location, token = house
    surplus_automation(location, duration_s=1)
    exporting = {"A": (-1200.0, 0.0), "B": (-800.0, 0.0), "C": (-700.0, 0.0), "D": (0.0, 0.0)}
    now = time.time() - 3
    replies = []
    for seq in (1, 2, 3):
        frame = star_frame(seq=seq, t=now + seq - 1, loads_w=exporting, n=1280)
        response = client.post(
            "/api/v1/ingest/frames",
            data=orjson.dumps(frame),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 200, response.content
        replies.append(response.json())
    command = RelayCommand.objects.get(automation__isnull=False)
    assert command.on is True and command.relay.name == "Boiler"
    assert any(c["id"] == str(command.pk) for reply in replies for c in reply.get("commands", []))


def test_a_switch_at_the_output_module_counts_as_by_hand(house):
    location, _ = house
    surplus_automation(location, duration_s=0)
    gateway = Gateway.objects.get(location=location)
    acknowledge(gateway, {"type": "ack", "relay": boiler(location).ref, "on": False})  # no command: at the device
    feed(location, 1500.0, [time.time()])
    assert not RelayCommand.objects.exists()


def test_its_own_switches_do_not_count_as_by_hand(house):
    location, _ = house
    surplus_automation(location, duration_s=0)
    gateway = Gateway.objects.get(location=location)
    now = time.time()
    feed(location, 1500.0, [now])
    on = RelayCommand.objects.get()
    acknowledge(gateway, {"type": "ack", "command": on.pk, "relay": on.relay.ref, "on": True})
    feed(location, 0.0, [now + 1])  # the surplus is gone: back off at once, no manual window
    off = RelayCommand.objects.exclude(pk=on.pk).get()
    assert (off.on, off.automation_id) == (False, on.automation_id)


def test_the_switches_of_a_deleted_automation_still_do_not_count_as_by_hand(house):
    location, _ = house
    first = surplus_automation(location, duration_s=0)
    gateway = Gateway.objects.get(location=location)
    now = time.time()
    feed(location, 1500.0, [now])
    on = RelayCommand.objects.get()
    acknowledge(gateway, {"type": "ack", "command": on.pk, "relay": on.relay.ref, "on": True})
    first.delete()  # replaced by another automation of the same relay
    changes = {"quantity": "grid_import", "threshold": 500.0, "release": None, "action": "off", "revert": False}
    surplus_automation(location, name="Boiler off on import", duration_s=0, **changes)
    importing = {"t": now + 2, "totals": {"grid_export": 0.0, "grid_import": 900.0}}
    [decision] = runner.run(location.pk, importing, now + 2)
    assert "by hand" not in decision.reason
    off = RelayCommand.objects.exclude(pk=on.pk).get()
    assert off.on is False and off.automation is not None


@pytest.mark.parametrize("stop", ["disable", "delete"])
def test_a_stopped_automation_withdraws_the_command_the_device_has_not_taken_yet(house, stop):
    location, _ = house
    automation = surplus_automation(location, duration_s=0)
    gateway = Gateway.objects.get(location=location)
    feed(location, 1500.0, [time.time()])
    assert len(pending_for(gateway)) == 1  # the gateway is offline: its next HTTP reply would carry it
    if stop == "disable":
        automation.enabled = False
        automation.save()
    else:
        automation.delete()
    assert pending_for(gateway) == [], "a command it asked for is not delivered after it stopped"
    assert RelayCommand.objects.get().status == RelayCommand.FAILED


def test_what_another_thread_kept_before_a_relay_change_committed_is_dropped_at_commit(
    house, django_capture_on_commit_callbacks
):
    location, _ = house
    surplus_automation(location)
    relay = boiler(location)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        relay.is_on = True
        relay.save()  # an acknowledgement: this process forgets at once, but has not committed yet
        # Meanwhile another ingest thread reads the relay as committed (still off) and keeps it.
        stale = runner.LocationAutomations((), {relay.pk: runner.RelayNow(is_on=False)})
        runner._kept.get(location.pk, lambda: stale)
    assert runner.armed(location.pk).relays[relay.pk].is_on is True


@pytest.mark.django_db(transaction=True)
def test_a_switch_never_holds_up_ingest_on_a_broker_that_hangs(house, settings):
    from tests.integrations.test_mqtt_publishing import SilentBroker

    location, _ = house
    silent = SilentBroker()  # accepts connections and never answers
    settings.MQTT_URL = f"mqtt://127.0.0.1:{silent.port}"
    try:
        surplus_automation(location, duration_s=0)
        started = time.perf_counter()
        feed(location, 1500.0, [time.time()])  # the switch commits: its delivery is scheduled
        took_s = time.perf_counter() - started
        assert RelayCommand.objects.count() == 1
        assert took_s < 2.0, f"a frame's automations took {took_s:.1f} s: waiting for the broker"
    finally:
        broker.wait_for_publications()  # its publication gives up (5 s) before the next test
        silent.close()


def test_the_acknowledgement_of_a_deleted_automations_command_says_an_automation_asked(house):
    location, _ = house
    automation = surplus_automation(location, duration_s=0)
    feed(location, 1500.0, [time.time()])
    command = RelayCommand.objects.get()
    automation.delete()
    acknowledge(
        Gateway.objects.get(location=location),
        {"type": "ack", "command": command.pk, "relay": command.relay.ref, "on": True},
    )
    assert Event.objects.filter(message="Boiler switched on (by an automation since deleted)").exists()

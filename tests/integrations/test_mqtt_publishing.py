"""Publishing to the real Mosquitto broker (MQTT_URL, or 127.0.0.1:1883): opt-in, commands, a broken broker."""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time

import orjson
import pytest

from devices.models import Event, Gateway, Relay
from metering import live
from metering.ingest.watchdog import report_offline_gateways
from metering.integrations import homeassistant as ha
from metering.integrations import publisher
from metering.models import PowerBoxState, RelayCommand
from metering.relays import acknowledge
from tests.integrations.mqtt_helpers import Listener, clear_retained, ingest, integrated_location, wait_for
from tests.integrations.test_homeassistant_payloads import check_discovery

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


@pytest.fixture
def broker(mqtt_url, settings):
    settings.MQTT_URL = mqtt_url
    publisher.reset()
    made = []
    yield mqtt_url, made
    for location in made:
        clear_retained(mqtt_url, location)
    publisher.reset()


def location_topics(location) -> tuple[str, str, str]:
    node = f"infinity_{location.uuid.hex}"
    return f"servicelocation/{location.uuid}/#", f"homeassistant/+/{node}/#", f"infinity/{location.uuid}/#"


def ingest_until(gateway, serial: str, first_seq: int, predicate, what: str, timeout_s: float = 15.0):
    """Stream frames (as a gateway does, several a second) until ``predicate`` holds; returns (value, next seq)."""
    seq, deadline = first_seq, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ingest(gateway, serial, seq)
        seq += 1
        value = predicate()
        if value:
            return value, seq
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_it_publishes_nothing_when_the_integrations_are_off(broker):
    url, made = broker
    location, gateway = integrated_location("OFF1")
    made.append(location)
    listener = Listener(url, *location_topics(location))
    for seq in range(1, 4):
        ingest(gateway, "OFF1", seq)
    assert live.latest(location.pk) is not None  # frames were metered and live values computed
    time.sleep(1.5)
    listener.close()
    assert listener.messages == []
    assert publisher.pool().connections() == []  # not even a connection to the broker


def test_home_assistant_finds_the_location_with_no_yaml(broker, monkeypatch):
    monkeypatch.setattr(publisher, "HA_STATES_EVERY_S", 0.0)
    url, made = broker
    location, gateway = integrated_location("HA1", home_assistant=True)
    made.append(location)
    listener = Listener(url, "homeassistant/#", f"infinity/{location.uuid}/#")
    ingest(gateway, "HA1", 1)
    site = publisher.setup_of(location.pk).site
    expected = set(ha.discovery(site))
    wait_for(lambda: expected <= listener.topics(), what="every discovery message")
    for topic in expected:
        check_discovery(topic, orjson.loads(listener.latest(topic)))
    device = orjson.loads(listener.latest(next(iter(expected))))["device"]
    assert (device["name"], device["model"], device["serial_number"]) == (
        "Test house",
        "Infinity Genius (MOD-GW-1)",
        "GW-HA1",
    )
    base = f"infinity/{location.uuid}"
    wait_for(lambda: listener.latest(f"{base}/availability") == b"online", what="availability")
    grid = next(load for load in site.loads if load.kind == "grid")
    power, _seq = ingest_until(gateway, "HA1", 2, lambda: listener.latest(f"{base}/ha/load_{grid.pk}_power"), "power")
    values = live.latest(location.pk)
    assert float(power) == pytest.approx(values["loads"][0]["p"], abs=0.05)
    # Energy comes from the stored registers, in kWh (the register may have counted a frame more since).
    energy = float(listener.latest(f"{base}/ha/load_{grid.pk}_energy"))
    registers_kwh = PowerBoxState.objects.get(powerbox__location=location).registers["load"]["Grid"][0] / 1000
    assert 0 < energy <= registers_kwh + 1e-4
    assert energy == pytest.approx(registers_kwh, abs=0.0015)  # within a few frames of 1.75 kW
    relay = Relay.objects.filter(module__location=location).first()
    assert listener.latest(f"{base}/ha/relay_{relay.pk}") == b"OFF"
    listener.close()


def test_switching_an_integration_off_clears_what_it_published(broker):
    url, made = broker
    location, gateway = integrated_location("OFF2", home_assistant=True)
    made.append(location)
    ingest(gateway, "OFF2", 1)
    wait_for(lambda: publisher.pool().connections()[0].connected.is_set(), what="the publisher's connection")
    ingest(gateway, "OFF2", 2)
    node = f"infinity_{location.uuid.hex}"
    retained = Listener(url, f"homeassistant/+/{node}/#", f"infinity/{location.uuid}/availability")
    wait_for(lambda: len(retained.topics()) > 10, what="the retained discovery messages")
    published = retained.topics()
    location.home_assistant = False
    location.save()
    ingest(gateway, "OFF2", 3)
    wait_for(lambda: all(retained.latest_payload(t) == b"" for t in published), what="every topic cleared")
    retained.close()
    after = Listener(url, f"homeassistant/+/{node}/#", f"infinity/{location.uuid}/#")
    time.sleep(1.0)
    after.close()
    assert after.topics() == set(), "nothing of the location is left retained"


def settled_count(listener, topic: str, quiet_s: float = 0.5, limit_s: float = 10.0) -> int:
    """How many messages arrived on ``topic`` once none came for ``quiet_s``."""
    deadline = time.monotonic() + limit_s
    count = len(listener.on(topic))
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        if len(listener.on(topic)) == count:
            return count
        count = len(listener.on(topic))
    raise AssertionError(f"messages on {topic} kept arriving for {limit_s} s")


def test_discovery_is_sent_again_when_home_assistant_restarts(broker):
    url, made = broker
    location, gateway = integrated_location("HA6", home_assistant=True)
    made.append(location)
    ingest(gateway, "HA6", 1)
    wait_for(lambda: publisher.pool().connections()[0].connected.is_set(), what="the publisher's connection")
    ingest(gateway, "HA6", 2)
    topic = next(iter(publisher.setup_of(location.pk).retained))
    listener = Listener(url, topic)
    wait_for(lambda: listener.on(topic), what="the retained discovery message")
    # The first connection's queued messages and frame 2's re-send for the new session may still
    # be on their way: count from when nothing more arrives.
    seen = settled_count(listener, topic)
    ingest(gateway, "HA6", 3)
    time.sleep(0.5)
    assert len(listener.on(topic)) == seen, "an unchanged discovery message is not sent with every frame"
    wait_for(lambda: publisher.pool().connections()[0].subscribed.is_set(), what="the publisher's subscriptions")
    listener.publish(ha.STATUS_TOPIC, b"online")  # Home Assistant's birth message
    ingest_until(gateway, "HA6", 4, lambda: len(listener.on(topic)) > seen, "the discovery message again")
    listener.close()


def test_energy_never_decreases_across_a_restart(broker, monkeypatch):
    monkeypatch.setattr(publisher, "HA_STATES_EVERY_S", 0.0)
    url, made = broker
    location, gateway = integrated_location("HA2", home_assistant=True)
    made.append(location)
    ingest(gateway, "HA2", 1)
    grid_pk = next(load.pk for load in publisher.setup_of(location.pk).site.loads if load.kind == "grid")
    topic = f"infinity/{location.uuid}/ha/load_{grid_pk}_energy"
    listener = Listener(url, topic)
    before, seq = ingest_until(gateway, "HA2", 2, lambda: listener.latest(topic), "energy")
    before = float(before)
    publisher.reset()  # a new process: nothing kept in memory
    count = len(listener.on(topic))
    ingest_until(gateway, "HA2", seq, lambda: len(listener.on(topic)) > count, "energy after the restart")
    after = [float(p) for p in listener.on(topic)[count:]]
    assert min(after) >= before and after[-1] > before
    listener.close()


def test_availability_follows_the_gateway(broker):
    url, made = broker
    location, gateway = integrated_location("HA3", home_assistant=True)
    made.append(location)
    topic = f"infinity/{location.uuid}/availability"
    listener = Listener(url, topic)
    ingest(gateway, "HA3", 1)
    wait_for(lambda: listener.latest(topic) == b"online", what="online")
    assert report_offline_gateways(), "the watchdog finds the gateway silent"
    wait_for(lambda: listener.latest(topic) == b"offline", what="offline")
    ingest(gateway, "HA3", 2, t=time.time() - 1)  # frames again: ingest writes the online Event
    assert Event.objects.filter(location=location, kind=Event.GATEWAY_ONLINE).exists()
    wait_for(lambda: listener.latest(topic) == b"online", what="online again")
    listener.close()


def test_a_home_assistant_switch_command_goes_the_relay_path(broker):
    url, made = broker
    location, gateway = integrated_location("HA4", home_assistant=True)
    made.append(location)
    ingest(gateway, "HA4", 1)
    relay = Relay.objects.select_related("module").filter(module__location=location).first()
    state = f"infinity/{location.uuid}/ha/relay_{relay.pk}"
    listener = Listener(url, state)
    wait_for(lambda: publisher.pool().connections()[0].subscribed.is_set(), what="the publisher's subscriptions")
    listener.publish(f"{state}/set", b"ON")
    command = wait_for(lambda: RelayCommand.objects.filter(relay=relay).first(), what="a relay command")
    assert command.on is True and command.status == RelayCommand.PENDING
    assert Event.objects.filter(location=location, kind=Event.RELAY, message__contains="Home Assistant").exists()
    acknowledge(gateway, {"type": "ack", "command": command.pk, "relay": relay.ref, "on": True})
    wait_for(lambda: listener.latest(state) == b"ON", what="the switch's new state")
    listener.close()


def test_commands_on_another_broker_or_for_an_unknown_relay_are_ignored(broker):
    url, made = broker
    location, gateway = integrated_location("HA5", home_assistant=True)
    made.append(location)
    relay = Relay.objects.filter(module__location=location).first()
    server = publisher.broker_of(location)
    other = publisher.Broker("mqtt://elsewhere.example.net:1883")
    assert publisher.handle_command(other, str(location.uuid), relay.pk, True, "Home Assistant") is False
    assert publisher.handle_command(server, str(location.uuid), 999_999, True, "Home Assistant") is False
    assert publisher.handle_command(server, "not-a-uuid", relay.pk, True, "Home Assistant") is False
    # The Smappee path is off for this location: its setstate is not accepted.
    assert publisher.handle_command(server, str(location.uuid), relay.pk, True, "Smappee MQTT (setstate)") is False
    assert not RelayCommand.objects.exists()
    # The same command twice within a few seconds (delivered twice) switches once.
    assert publisher.handle_command(server, str(location.uuid), relay.pk, True, "Home Assistant") is True
    assert publisher.handle_command(server, str(location.uuid), relay.pk, True, "Home Assistant") is False
    assert RelayCommand.objects.count() == 1


class SilentBroker:
    """A TCP server that accepts connections and never answers (a broker that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_ingest(gateway, serial: str, frames: int = 10) -> tuple[float, float]:
    """(median after three frames of warm-up, longest of all) seconds a frame takes to ingest.

    The first frames are those that publish a location's retained messages: a publisher that
    waited for its broker would show there.
    """
    durations = []
    for seq in range(1, frames + 4):
        started = time.perf_counter()
        ingest(gateway, serial, seq, n=1280)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations[3:]), max(durations)


def test_a_broken_homeowner_broker_costs_ingest_nothing_but_a_log_line(broker, caplog):
    url, made = broker
    silent = SilentBroker()
    try:
        quiet, quiet_gateway = integrated_location("BRK0")
        refused, refused_gateway = integrated_location(
            "BRK1", smappee_mqtt=True, home_assistant=True, mqtt_broker_url=f"mqtt://127.0.0.1:{closed_port()}"
        )
        hanging, hanging_gateway = integrated_location(
            "BRK2", smappee_mqtt=True, home_assistant=True, mqtt_broker_url=f"mqtt://127.0.0.1:{silent.port}"
        )
        unknown, unknown_gateway = integrated_location(
            "BRK3", smappee_mqtt=True, mqtt_broker_url="mqtt://no-such-broker.invalid:1883"
        )
        made.extend([quiet, refused, hanging, unknown])
        with caplog.at_level(logging.WARNING, logger="metering.integrations.pool"):
            baseline, _longest = time_ingest(quiet_gateway, "BRK0")
            timings = {
                "refused": time_ingest(refused_gateway, "BRK1"),
                "hanging": time_ingest(hanging_gateway, "BRK2"),
                "unknown host": time_ingest(unknown_gateway, "BRK3"),
            }
            wait_for(lambda: "cannot reach MQTT broker" in caplog.text, what="the log line", timeout_s=10)
        for name, (median, longest) in timings.items():
            # A blocking connect would cost seconds (TCP or DNS time-outs); publishing costs well under a ms.
            # (Generous bounds: the machine running the tests may be busy.)
            assert median < baseline * 3 + 0.01, f"{name}: {median * 1000:.1f} ms a frame vs {baseline * 1000:.1f}"
            assert longest < 2.0, f"{name}: one frame took {longest:.2f} s"
        # Frames were stored as ever.
        assert PowerBoxState.objects.get(powerbox__location=hanging).frames == 13
    finally:
        silent.close()


def test_credentials_are_never_logged(broker, caplog):
    url, made = broker
    location, gateway = integrated_location(
        "CRD1",
        home_assistant=True,
        mqtt_broker_url=f"mqtt://127.0.0.1:{closed_port()}",
        mqtt_broker_username="homeowner",
        mqtt_broker_password="never-shown-pw",
    )
    made.append(location)
    with caplog.at_level(logging.DEBUG):
        ingest(gateway, "CRD1", 1)
        wait_for(lambda: "cannot reach MQTT broker" in caplog.text, what="the log line", timeout_s=10)
    assert "homeowner" in caplog.text
    assert "never-shown-pw" not in caplog.text
    assert "never-shown-pw" not in repr(publisher.setup_of(location.pk).broker)
    assert Gateway.objects.filter(location=location).exists()


def test_commands_flooding_a_relay_are_refused_beyond_a_few_a_minute(broker):
    url, made = broker
    location, _gateway = integrated_location("HA7", home_assistant=True)
    made.append(location)
    relay = Relay.objects.filter(module__location=location).first()
    server = publisher.broker_of(location)
    taken = []
    for on in [True, False] * publisher.MAX_COMMANDS_PER_MINUTE:
        taken.append(publisher.handle_command(server, str(location.uuid), relay.pk, on, "Home Assistant"))
        RelayCommand.objects.update(status=RelayCommand.DONE)  # the device carries each out at once
    assert taken == [True] * publisher.MAX_COMMANDS_PER_MINUTE + [False] * publisher.MAX_COMMANDS_PER_MINUTE
    assert RelayCommand.objects.count() == publisher.MAX_COMMANDS_PER_MINUTE
    assert Event.objects.filter(location=location, kind=Event.RELAY).count() == publisher.MAX_COMMANDS_PER_MINUTE

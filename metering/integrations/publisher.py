"""The integrations wired to the server: live values, relay changes and gateway events out; commands in.

Publishing needs no process of its own: :func:`on_live_values` receives
:data:`metering.live.live_values_updated` in whatever process metered the frame (the embedded
server, or an ingest worker), at most :data:`REALTIME_EVERY_S` per location for the Smappee
``realtime`` and :data:`HA_STATES_EVERY_S` for Home Assistant states. It never waits for a
broker: messages go to the broker's pooled background connection (:mod:`.pool`), QoS 0, and are
dropped while it is down. A broker that is unreachable or refuses us costs a log line.

Commands (Smappee ``setstate``, Home Assistant switch ``set``) are received by every process
holding a connection to the broker, through the shared subscription ``$share/<group>/...``: the
broker hands each command to one of them. Such a command goes through
:func:`metering.relays.request_relay` like a click on the dashboard, with an Event naming where
it came from. A command arriving on a broker that is not its location's broker is ignored, and
one repeating a pending command within :data:`REPEAT_WINDOW` is not sent twice; beyond
:data:`MAX_COMMANDS_PER_MINUTE` for a relay, commands are refused.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from devices import catalogue
from devices.models import DigitalInput, Event, Gateway, Load, LoadCt, Location, Relay
from metering.installed import CACHE_SECONDS, Kept, installed
from metering.integrations import homeassistant as ha
from metering.integrations import smappee
from metering.integrations.pool import Broker, Connection, Pool
from metering.integrations.site import Channel, Site, SiteInput, SiteLoad, SiteRelay

log = logging.getLogger(__name__)

REALTIME_EVERY_S = 1.0
# Home Assistant records every state: every few seconds keeps its database small.
HA_STATES_EVERY_S = 5.0
SHARE_GROUP = "infinity-integrations"
# A command equal to one still pending for the relay this recently is a repeat, not a new one.
REPEAT_WINDOW = timedelta(seconds=5)
# Commands a relay takes over MQTT per minute, counted in the database (every process sees the
# same count): a runaway automation on the homeowner's side must not flip a relay, nor fill the
# commands and events, without end.
MAX_COMMANDS_PER_MINUTE = 6


@dataclass(frozen=True)
class Setup:
    """What and where a location publishes; ``site`` is None when it publishes nothing."""

    site: Site | None
    smappee: bool = False
    home_assistant: bool = False
    broker: Broker | None = None
    retained: dict[str, bytes] = field(default_factory=dict, compare=False)


def broker_of(location: Location) -> Broker | None:
    """The location's own broker, else the server's ``MQTT_URL`` one (None: nowhere to publish)."""
    if location.mqtt_broker_url:
        return Broker(location.mqtt_broker_url, location.mqtt_broker_username, location.mqtt_broker_password)
    if settings.MQTT_URL:
        return Broker.from_url(settings.MQTT_URL)
    return None


def _ms(moment) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


def build_site(location: Location) -> Site:
    gateway = Gateway.objects.filter(location=location).first()
    load_cts = (
        LoadCt.objects.filter(load__location=location)
        .select_related("load", "ct_input__module")
        .order_by("load__position", "load__pk", "position", "pk")
    )
    return Site(
        location_id=location.pk,
        uuid=str(location.uuid),
        name=location.name,
        timezone=location.timezone,
        topology=location.topology,
        gateway_serial=gateway.serial if gateway else "",
        gateway_model=f"Infinity {catalogue.GATEWAY_MODELS.get(gateway.model, gateway.model)}"
        if gateway
        else "Infinity",
        loads=tuple(SiteLoad(load.pk, load.name, load.kind) for load in Load.objects.filter(location=location)),
        channels=tuple(
            Channel(index, lc.load.name, lc.load.kind, lc.ct_input.ref, lc.ct_input.ct_type, lc.phase, lc.reversed)
            for index, lc in enumerate(load_cts)
        ),
        inputs=tuple(
            SiteInput(di.pk, di.ref, di.name, di.mode, di.unit)
            for di in DigitalInput.objects.filter(module__location=location).select_related("module")
        ),
        relays=tuple(
            SiteRelay(relay.pk, relay.ref, relay.name, relay.is_on, _ms(relay.changed_at))
            for relay in Relay.objects.filter(module__location=location).select_related("module")
        ),
        voltage_phases=catalogue.TOPOLOGY_PHASES[location.topology],
    )


def _relay_states(site: Site) -> dict[str, bytes]:
    return {ha.relay_state_topic(site, relay.pk): b"ON" if relay.is_on else b"OFF" for relay in site.relays}


def _load_setup(location_id: int) -> Setup:
    # The installation ingest keeps holds the location row already: no query for most locations.
    location = installed(location_id).location
    if location is None or not location.publishes_integrations:
        return Setup(None)
    broker = broker_of(location)
    if broker is None:
        return Setup(None)
    site = build_site(location)
    retained: dict[str, bytes] = {}
    if location.smappee_mqtt:
        retained.update(smappee.retained_messages(site))
    if location.home_assistant:
        retained.update(ha.discovery_payloads(site))
        retained.update(_relay_states(site))
    return Setup(site, location.smappee_mqtt, location.home_assistant, broker, retained)


# Kept per process and reloaded when any installation changes (metering.installed.version).
_setups = Kept(CACHE_SECONDS)


def setup_of(location_id: int) -> Setup:
    return _setups.get(location_id, lambda: _load_setup(location_id))


@dataclass
class _Published:
    """What this process last sent for a location, to send only what is due or changed."""

    broker: Broker | None = None
    generation: int = -1
    retained: dict[str, bytes] = field(default_factory=dict)
    realtime_at: float = float("-inf")
    states_at: float = float("-inf")
    period: int | None = None
    availability: str | None = None


_published: dict[int, _Published] = {}
_published_lock = threading.Lock()


def _registers(location_id: int) -> dict:
    from metering.models import PowerBoxState

    row = PowerBoxState.objects.filter(powerbox__location_id=location_id).values_list("registers", flat=True).first()
    return row if isinstance(row, dict) else {}


def publish_live(location_id: int, values: dict, now: float | None = None) -> None:
    """Publish a location's live values where its integrations want them (nothing when off)."""
    setup = setup_of(location_id)
    now = time.monotonic() if now is None else now
    with _published_lock:
        published = _published.setdefault(location_id, _Published())
    if setup.site is None:
        _withdraw(published)
        return
    if published.broker is not None and published.broker != setup.broker:
        _withdraw(published)  # the location moved to another broker: clear what it left on the old one
    connection = pool().get(setup.broker)
    realtime_due = setup.smappee and now - published.realtime_at >= REALTIME_EVERY_S
    states_due = setup.home_assistant and now - published.states_at >= HA_STATES_EVERY_S
    resend = published.generation != connection.generation or published.broker != setup.broker
    if not (realtime_due or states_due or resend or published.retained is not setup.retained):
        return
    site = setup.site
    _send_retained(connection, published, setup, resend)
    published.broker, published.generation = setup.broker, connection.generation
    if not (realtime_due or states_due) or not connection.connected.is_set():
        return  # values that cannot go out now are not sent later: the next frame brings fresh ones
    registers = _registers(location_id)
    if realtime_due:
        published.realtime_at = now
        connection.publish(smappee.realtime_topic(site), _json(smappee.realtime(site, values, registers)))
        period = int(float(values.get("t") or 0.0) // smappee.AGGREGATION_PERIOD_S)
        if published.period is not None and period > published.period:
            end = period * smappee.AGGREGATION_PERIOD_S
            connection.publish(smappee.aggregated_topic(site), _json(smappee.aggregated(site, end, registers)))
        published.period = period
    if states_due:
        published.states_at = now
        for topic, payload in ha.states(site, values, registers).items():
            connection.publish(topic, payload)


def _send_retained(connection: Connection, published: _Published, setup: Setup, everything: bool) -> None:
    """The location's retained messages: all of them to a new session, else those that changed."""
    site = setup.site
    for topic, payload in setup.retained.items():
        if everything or published.retained.get(topic) != payload:
            connection.publish(topic, payload, retain=True)
    for topic in set(published.retained) - set(setup.retained):  # entities gone: clear them
        connection.publish(topic, b"", retain=True)
    if setup.home_assistant and (everything or not published.retained):
        # Frames are flowing: the gateway is online.
        connection.publish(ha.availability_topic(site), ha.AVAILABLE.encode(), retain=True)
    if published.availability and not setup.home_assistant:  # discovery switched off, Smappee still on
        connection.publish(published.availability, b"", retain=True)
    published.retained = setup.retained
    published.availability = ha.availability_topic(site) if setup.home_assistant else None


def _withdraw(published: _Published) -> None:
    """Clear the retained messages this process published for a location that stopped publishing there."""
    if published.broker is not None and published.retained:
        connection = pool().get(published.broker)
        for topic in [*published.retained, *filter(None, [published.availability])]:
            connection.publish(topic, b"", retain=True)
    published.broker, published.retained, published.generation, published.availability = None, {}, -1, None


def _json(message: dict) -> bytes:
    return orjson.dumps(message)


# --- relays and gateway state -----------------------------------------------------------------


def publish_relay(location_id: int, relay: Relay) -> None:
    """A relay's new state (the device acknowledged it), retained, for both integrations."""
    setup = setup_of(location_id)
    if setup.site is None:
        return
    connection = pool().get(setup.broker)
    if setup.smappee:
        state = smappee.plug_state(relay.is_on, _ms(relay.changed_at))
        connection.publish(smappee.plug_state_topic(setup.site, relay.pk), _json(state), retain=True)
    if setup.home_assistant:
        payload = b"ON" if relay.is_on else b"OFF"
        connection.publish(ha.relay_state_topic(setup.site, relay.pk), payload, retain=True)


def publish_availability(location_id: int, online: bool) -> None:
    """Home Assistant's availability follows the gateway: offline when the watchdog finds it silent."""
    setup = setup_of(location_id)
    if setup.site is None or not setup.home_assistant:
        return
    payload = (ha.AVAILABLE if online else ha.NOT_AVAILABLE).encode()
    pool().get(setup.broker).publish(ha.availability_topic(setup.site), payload, retain=True)


# --- commands in (paho's network thread) --------------------------------------------------------


def on_message(connection: Connection, topic: str, payload: bytes) -> None:
    if topic == ha.STATUS_TOPIC:
        if payload.strip() == ha.AVAILABLE.encode():
            connection.resend()  # Home Assistant restarted: it wants the discovery messages again
        return
    try:
        if topic.startswith("servicelocation/"):
            location_uuid, relay_id, on = smappee.parse_setstate(topic, payload)
            via = "Smappee MQTT (setstate)"
        else:
            location_uuid, relay_id, on = ha.parse_command(topic, payload)
            via = "Home Assistant"
    except (smappee.CommandRefused, ha.CommandRefused) as problem:
        log.warning("MQTT command on %s from %s refused: %s", topic[:200], connection.broker, problem)
        return
    close_old_connections()
    try:
        handle_command(connection.broker, location_uuid, relay_id, on, via)
    finally:
        # Commands are rare: this network thread holds no database connection between them.
        connections.close_all()


def handle_command(broker: Broker, location_uuid: str, relay_id: int, on: bool, via: str) -> bool:
    """Switch a relay as the dashboard would; False when the command is not for a relay we may switch."""
    from metering.models import RelayCommand
    from metering.relays import CommandError, request_relay

    try:
        location_uuid = str(uuid.UUID(location_uuid))
    except ValueError:
        log.warning("MQTT command for %r: not a location id", location_uuid[:64])
        return False
    location = Location.objects.filter(uuid=location_uuid).first()
    smappee_command = via.startswith("Smappee")
    wanted = location is not None and (location.smappee_mqtt if smappee_command else location.home_assistant)
    if not wanted or broker_of(location) != broker:
        # Only the location's own broker (and integration) may switch its relays.
        log.warning("MQTT command for location %s on %s ignored: not its integration or broker", location_uuid, broker)
        return False
    relay = Relay.objects.select_related("module").filter(pk=relay_id, module__location=location).first()
    if relay is None:
        log.warning("MQTT command for unknown relay %s of location %s", relay_id, location.pk)
        return False
    repeated = RelayCommand.objects.filter(
        relay=relay, on=on, status=RelayCommand.PENDING, requested_at__gte=timezone.now() - REPEAT_WINDOW
    ).exists()
    if repeated:
        return False
    recent = RelayCommand.objects.filter(relay=relay, requested_at__gte=timezone.now() - timedelta(minutes=1))
    if recent.count() >= MAX_COMMANDS_PER_MINUTE:
        log.warning("MQTT command for relay %s refused: more than %s a minute", relay.ref, MAX_COMMANDS_PER_MINUTE)
        return False
    try:
        with transaction.atomic():
            request_relay(relay, on, background=True)  # this network thread must not wait for a broker
            Event.objects.create(
                location=location,
                kind=Event.RELAY,
                module=relay.ref,
                message=f"{relay.name}: switch {'on' if on else 'off'} asked over MQTT by {via}.",
                data={"relay": relay.ref, "on": on, "via": via},
            )
    except CommandError as problem:
        log.warning("MQTT command for relay %s refused: %s", relay.ref, problem)
        return False
    return True


# --- wiring -------------------------------------------------------------------------------------

_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool() -> Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = Pool(
                subscriptions=(
                    f"$share/{SHARE_GROUP}/{smappee.SETSTATE_SUBSCRIPTION}",
                    f"$share/{SHARE_GROUP}/{ha.COMMAND_SUBSCRIPTION}",
                    ha.STATUS_TOPIC,
                ),
                on_message=on_message,
            )
        return _pool


def reset() -> None:
    """Close every connection and forget what was published (tests; a process that forks)."""
    global _pool
    with _pool_lock:
        old, _pool = _pool, None
    if old is not None:
        old.close()
    with _published_lock:
        _published.clear()
    _setups.clear()


def on_live_values(sender: int, values: dict, **kwargs) -> None:
    try:
        publish_live(sender, values)
    except Exception:  # an integration must never fail ingest
        log.exception("could not publish the live values of location %s to its integrations", sender)


def on_relay_changed(sender: int, relay=None, **kwargs) -> None:
    if relay is None:
        return
    try:
        publish_relay(sender, relay)
    except Exception:
        log.exception("could not publish relay %s to the integrations", getattr(relay, "pk", None))


def on_event_saved(sender, instance: Event, created: bool, **kwargs) -> None:
    if not created or instance.kind not in (Event.GATEWAY_OFFLINE, Event.GATEWAY_ONLINE):
        return
    location_id, online = instance.location_id, instance.kind == Event.GATEWAY_ONLINE

    def publish() -> None:
        try:
            publish_availability(location_id, online)
        except Exception:
            log.exception("could not publish the availability of location %s", location_id)

    transaction.on_commit(publish)


def connect_signals() -> None:
    from metering.live import live_values_updated
    from metering.relays import relay_changed

    live_values_updated.connect(on_live_values, dispatch_uid="integrations.live")
    relay_changed.connect(on_relay_changed, dispatch_uid="integrations.relay")
    post_save.connect(on_event_saved, sender=Event, dispatch_uid="integrations.gateway-events")

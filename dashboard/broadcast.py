"""Live cards to every open dashboard of a location: render once, push to the location's group.

The one entry point for pushes. Receivers for :data:`metering.live.live_values_updated` (after
every newest frame) and :data:`metering.relays.relay_changed` (after a device acknowledged a
switch) are connected in :meth:`dashboard.apps.DashboardConfig.ready`. They render each card's
partial ONCE per location, with the same context builders as the page (:mod:`dashboard.cards`),
and send it to the group ``location.<pk>``; :class:`dashboard.consumers.LocationConsumer` only
forwards ``event["html"]`` to its browser, where the htmx ws extension swaps every top-level
element of the message out-of-band by its id (``card-live-values``, ``card-inputs``,
``relay-state-<relay pk>``, ``events-live``).

What is pushed, and when:

- *Live values* and *Live inputs* cards: after a newest frame, at most once per
  :data:`LIVE_EVERY_S` per location (both cards travel in one message).
- *Events*: the newest page of all kinds (``events-live``; the filtered or older pages a user
  may be reading have another id and are left alone), whenever an event newer than the last
  pushed one exists: at once when an event is saved (``post_save``, after the commit: relay
  switches, invalid frames, offline detection) and, for the events ingest writes in bulk (data
  gaps, input changes; ``bulk_create`` sends no signal), checked at most every
  :data:`EVENTS_EVERY_S` after a frame.
- *Relay states* (``relay-state-<pk>``, the part of the relays card that is the same for every
  user; the buttons and their CSRF tokens are rendered per page): after a device's
  acknowledgement and after someone requests a switch (the "switching…" state).

Coalescing: a per-(location, card) timestamp in this process (``time.monotonic()``), with a
leading and a trailing edge. The first frame after a quiet interval is pushed at once. A frame
arriving sooner than the interval after the last push of that card is not rendered: its values
become the card's pending values (a newer frame's replace them), and the first such frame
schedules one trailing push at the end of the interval, which renders the then newest pending
values once. So a burst of frames (two frames within a second, a gateway replaying its buffer
after an outage, the last frames before it goes quiet) costs one render a second, not one per
frame, and the card shows the newest values within one interval. The live interval is one
second less a tolerance of :data:`ARRIVAL_JITTER_S`: a gateway sends a frame a second, and its
frames arrive 1 s ± a few tens of ms apart, so a strict 1.000 s would delay every other frame.
With several server processes, each coalesces its own frames (a location's gateway talks to one
process at a time).

A trailing push is timed by the serving event loop when there is one (the loop that handed the
frame's thread its work): the loop waits, the card is rendered on the one thread of
:func:`_pusher`, and the send goes back to the loop like any push. Elsewhere (MQTT ingest and
other management commands, tests without a loop) a ``threading.Timer`` renders and sends. Either
thread closes the database connection rendering may have opened when the push is done. At most
one trailing push per (location, card) waits at a time; a leading push supersedes it.

Pushes never fail ingest: a card that cannot be rendered is logged and skipped.

The installer's page (:mod:`dashboard.validate`) has its own socket and groups, so the
dashboard's sockets never carry its cards (the htmx ws extension would look for their ids on
every dashboard and report ``htmx:oobErrorNoTarget``) and its cards may differ by role:

- *Validation* (``card-validation``, with the fix buttons for installers and staff, without for
  the owner) and *Troubleshooting* (``card-troubleshooting``): rendered once per location and
  variant, sent to ``validate.<pk>.fix`` and ``validate.<pk>.read`` in one message each. After
  a newest frame, coalesced like the live cards (trailing push included), and only while someone
  has the page open (its socket marks the location as watched in the cache, see
  :func:`mark_watched`); at once after a fix and after a gateway, data-gap or diagnosis event.
  The buttons of a pushed card carry no CSRF field (there is no request): the page sends the
  token as an ``hx-headers`` header.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction
from django.db.models.signals import post_save
from django.template.loader import render_to_string

from dashboard import cards
from devices.models import Event, Location
from metering import live
from metering.ingest import cadence
from metering.installation_check import check_restarted
from metering.installed import installed
from metering.live import live_values_updated
from metering.relays import relay_changed

log = logging.getLogger(__name__)

LIVE_EVERY_S = 1.0
ARRIVAL_JITTER_S = 0.1
EVENTS_EVERY_S = 5.0
# An open validate page marks its location as watched for this long, renewed every WATCH_RENEW_S.
WATCH_TTL_S = 60.0
WATCH_RENEW_S = 20.0
# A page opened in another process starts receiving pushes within this time (it rendered in full).
WATCHED_READ_EVERY_S = 5.0
# Events that change the troubleshooting card.
VALIDATE_EVENT_KINDS = frozenset(
    {Event.GATEWAY_OFFLINE, Event.GATEWAY_ONLINE, Event.DATA_GAP, Event.DIAGNOSIS, Event.CONFIGURATION}
)

_lock = threading.Lock()
_last_push: dict[tuple[int, str], float] = {}  # (location pk, card) -> monotonic time of the last push
_last_period: dict[tuple[int, str], object] = {}  # (location pk, card) -> period of the last check
_last_event: dict[int, int | None] = {}  # location pk -> newest event id pushed
_watched_read: dict[int, tuple[float, bool]] = {}  # location pk -> (monotonic time, watched) last read
# A thread waits this long at most for a free slot (see send_group); the next push supersedes a dropped one.
SEND_WAIT_MAX_S = 10.0
# event loop -> slots for its group_sends under way (a loop that ends takes its slots with it)
_send_slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# On the thread rendering a trailing push: the serving loop of the frame that scheduled it.
_handed = threading.local()


@dataclass
class _Trailing:
    """A trailing push waiting for its time, with the newest values a coalesced frame brought."""

    due: float  # on the clock of _last_push
    values: dict | None
    cancel: Callable[[], object] | None = None


_trailing: dict[tuple[int, str], _Trailing] = {}  # (location pk, card) -> its waiting trailing push


def group_name(location_id: int) -> str:
    return f"location.{location_id}"


def validate_group(location_id: int, can_fix: bool) -> str:
    """The installer's page of a location: with the fix buttons (``fix``) or read-only (``read``)."""
    return f"validate.{location_id}.{'fix' if can_fix else 'read'}"


def _watch_key(location_id: int) -> str:
    return f"validate:watched:{location_id}"


def mark_watched(location_id: int) -> None:
    """Someone has the validate page of the location open (renewed by its socket)."""
    cache.set(_watch_key(location_id), True, timeout=WATCH_TTL_S)
    _watched_read.pop(location_id, None)


def watched(location_id: int) -> bool:
    """Whether someone has the validate page open; read from the shared cache at most every
    :data:`WATCHED_READ_EVERY_S` per location (a round trip with Redis, asked after every frame)."""
    now = time.monotonic()
    hit = _watched_read.get(location_id)
    if hit is not None and now - hit[0] < WATCHED_READ_EVERY_S:
        return hit[1]
    answer = bool(cache.get(_watch_key(location_id)))
    _watched_read[location_id] = (now, answer)
    return answer


def reset() -> None:
    """Forget all coalescing state (tests)."""
    with _lock:
        waiting = list(_trailing.values())
        _trailing.clear()
        _last_push.clear()
        _last_period.clear()
        _last_event.clear()
        _watched_read.clear()
    for entry in waiting:
        _cancel(entry)


def _coalesce(location_id: int, card: str, interval_s: float, now: float, values: dict | None) -> bool:
    """True (and the push is recorded) when ``card`` was not pushed within ``interval_s``.

    Otherwise ``values`` become the card's pending values and, unless one waits already, a
    trailing push is scheduled for the end of the interval (:func:`_push_trailing`)."""
    key = (location_id, card)
    with _lock:
        last = _last_push.get(key)
        due = last is None or now - last >= interval_s
        if due:
            _last_push[key] = now
            entry = _trailing.pop(key, None)  # superseded: these values are newer
        elif key in _trailing:
            _trailing[key].values = values
            return False
        else:
            entry = _trailing[key] = _Trailing(due=last + interval_s, values=values)
    if due:
        _cancel(entry)
        return True
    entry.cancel = _later(entry.due - now, functools.partial(_push_trailing, key, entry))
    return False


def _cancel(entry: _Trailing | None) -> None:
    if entry is not None and entry.cancel is not None:
        entry.cancel()


def _push_trailing(key: tuple[int, str], entry: _Trailing) -> None:
    """The trailing push of a card, with the newest pending values, unless reset or superseded."""
    with _lock:
        if _trailing.get(key) is not entry:
            return
        del _trailing[key]
        _last_push[key] = entry.due
    location_id, card = key
    what, push = _TRAILING_PUSHES[card]
    _safely(what, location_id, lambda: push(location_id, entry.values))


def _later(delay_s: float, work: Callable[[], None]) -> Callable[[], object]:
    """Run ``work`` in ``delay_s`` on another thread; returns what cancels it.

    Timed by the serving event loop when there is one, rendered on :func:`_pusher` and sent
    through that loop; elsewhere on a timer thread of its own."""
    loop = _serving_loop()
    if loop is None:
        timer = threading.Timer(delay_s, _on_worker_thread, (work,))
        timer.daemon = True
        timer.start()
        return timer.cancel
    return asyncio.run_coroutine_threadsafe(_after(delay_s, loop, work), loop).cancel


async def _after(delay_s: float, loop: asyncio.AbstractEventLoop, work: Callable[[], None]) -> None:
    await asyncio.sleep(delay_s)
    try:
        await loop.run_in_executor(_pusher(), _on_worker_thread, work, loop)
    except Exception:
        log.exception("a trailing push failed")


@functools.cache
def _pusher() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread rendering the trailing pushes of the serving loop."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="card-push")


def _on_worker_thread(work: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Run a trailing push (sent through ``loop``, if given). No request ends on this thread to
    close the database connection rendering may have opened: it is closed here, so an idle
    thread holds none (the live cards read no database after their first push)."""
    _handed.loop = loop
    try:
        work()
    finally:
        _handed.loop = None
        connections.close_all()


def _due_this_period(location_id: int, card: str, every_s: float, now: float) -> bool:
    """True (and recorded) once per period of ``every_s``, at a phase of the location's own
    (:mod:`metering.ingest.cadence`): locations do not all check in the same second."""
    key, current = (location_id, card), cadence.period(location_id, every_s, now)
    with _lock:
        if _last_period.get(key) == current:
            return False
        _last_period[key] = current
        return True


def send(location_id: int, html: str) -> None:
    """Send rendered HTML to every browser showing the location."""
    send_group(group_name(location_id), html)


def send_group(group: str, html: str) -> None:
    """Send rendered HTML to one group (a location's dashboards, a validate page's variant).

    Called on a thread the server handed work to (ingest, a view), the ``group_send`` is
    handed to the server's event loop and not waited for: the thread goes on with the next
    frame instead of sleeping until the loop got round to it. Only when
    ``settings.CARD_SENDS_IN_FLIGHT`` sends are still under way does it wait for one to finish, so a
    loop that falls behind slows ingest down instead of piling up cards nobody will see in
    time. Elsewhere (an ingest worker, a management command, a test without a loop) it is sent
    through this process's own loop (:func:`_sender_loop`) and waited for here.
    """
    layer = get_channel_layer()
    if layer is None or not html.strip():
        return
    message = {"type": "card.update", "html": html}
    loop = _serving_loop()
    if loop is None:
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _sender_loop()).result(SEND_WAIT_MAX_S)
        return
    with _lock:
        slots = _send_slots.get(loop)
        if slots is None:
            slots = _send_slots[loop] = threading.BoundedSemaphore(settings.CARD_SENDS_IN_FLIGHT)
    if not slots.acquire(timeout=SEND_WAIT_MAX_S):  # the loop is stuck or shutting down
        log.warning("cards for group %s dropped: the event loop finished no push in %.0f s", group, SEND_WAIT_MAX_S)
        return
    try:
        sending = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
    except BaseException:
        slots.release()
        raise
    sending.add_done_callback(functools.partial(_sent, slots, group))


@functools.cache
def _sender_loop() -> asyncio.AbstractEventLoop:
    """This process's own event loop for the sends of threads that no server loop handed their
    work (ingest workers, MQTT ingest, commands). ``async_to_sync`` would start a new loop per
    card, and the Redis layers a new connection with it: about 1 ms of CPU per card against
    0.1-0.3 ms from one loop that keeps its connection (tools.bench_layers, docs/deploy.md "Fan-out")."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="card-sender", daemon=True).start()
    return loop


def _sent(slots: threading.BoundedSemaphore, group: str, done: concurrent.futures.Future) -> None:
    slots.release()
    if not done.cancelled() and done.exception() is not None:
        log.error("could not send to group %s", group, exc_info=done.exception())


def _serving_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop that handed this thread its work, as ``async_to_sync`` finds it
    (or, rendering a trailing push, the loop of the frame that scheduled it)."""
    handed = getattr(_handed, "loop", None)
    if handed is not None:
        return handed if handed.is_running() else None
    here = SyncToAsync.threadlocal
    loop = getattr(here, "main_event_loop", None)
    if loop is None or getattr(here, "main_event_loop_pid", None) != os.getpid() or not loop.is_running():
        return None
    return loop


# ----------------------------------------------------------------------------- renderers


def render_live_cards(location: Location, values: dict | None) -> str:
    """The live values and live inputs cards, as one message."""
    now = time.time()
    return "\n".join(
        [
            render_to_string(cards.TEMPLATES["card-live-values"], cards.live_values_context(location, values, now)),
            render_to_string(cards.TEMPLATES["card-inputs"], cards.inputs_context(location, values, now)),
        ]
    )


def render_events(location: Location) -> str:
    """The newest page of all events (the ``events-live`` body)."""
    return render_to_string("dashboard/_card_events.html#events-body", cards.events_context(location))


def render_relay_states(location: Location) -> str:
    return "\n".join(
        render_to_string("dashboard/_card_relays.html#relay-state", {"location": location, "row": row})
        for row in cards.relay_rows(location)
    )


def render_validate_cards(location: Location, values: dict | None) -> dict[bool, str]:
    """The validation and troubleshooting cards, one message per variant: ``{can_fix: html}``.

    The context is built once; only the fix buttons differ between the variants.
    """
    now = time.time()
    context = cards.validation_context(location, values, now)
    troubleshooting = render_to_string(
        cards.VALIDATE_TEMPLATES["card-troubleshooting"], cards.troubleshooting_context(location, values, now)
    )
    return {
        can_fix: render_to_string(cards.VALIDATE_TEMPLATES["card-validation"], {**context, "can_fix": can_fix})
        + "\n"
        + troubleshooting
        for can_fix in (True, False)
    }


# ----------------------------------------------------------------------------- pushes


def _location(location_id: int) -> Location | None:
    """The location's row as the cached installation holds it (ingest has just used it, so no
    query per push; any change to the location forgets it), or None when it is gone."""
    try:
        return installed(location_id).location
    except Location.DoesNotExist:
        return None


def push_live(location_id: int, values: dict, now: float | None = None) -> bool:
    """Push the live cards unless they were pushed less than a second ago, else schedule the
    trailing push of the newest values. True when pushed now."""
    now = time.monotonic() if now is None else now
    if not _coalesce(location_id, "live", LIVE_EVERY_S - ARRIVAL_JITTER_S, now, values):
        return False
    return _send_live(location_id, values)


def _send_live(location_id: int, values: dict | None) -> bool:
    location = _location(location_id)
    if location is None:
        return False
    send(location_id, render_live_cards(location, values))
    return True


def push_events(location_id: int, now: float | None = None, at_once: bool = False) -> bool:
    """Push the newest events when there is a new one; checked at most every few seconds unless
    ``at_once``. True when pushed."""
    now = time.monotonic() if now is None else now
    if not at_once and not _due_this_period(location_id, "events", EVENTS_EVERY_S, now):
        return False
    newest = cards.newest_event_id(location_id)
    with _lock:
        if location_id in _last_event and _last_event[location_id] == newest:
            return False
        _last_event[location_id] = newest
    location = _location(location_id)
    if location is None:
        return False
    send(location_id, render_events(location))
    return True


def push_relays(location_id: int) -> None:
    """Push every relay's state and the newest events (a switch request or acknowledgement)."""
    location = _location(location_id)
    if location is None:
        return
    send(location_id, render_relay_states(location))
    push_events(location_id, at_once=True)


def push_validate(
    location_id: int, values: dict | None = None, now: float | None = None, at_once: bool = False
) -> bool:
    """Push the validate page's cards to its open pages. After a frame: only while a page is
    open, at most once a second (with a trailing push of the newest values, like the live cards);
    ``at_once`` (a fix, an event): now. True when pushed now."""
    now = time.monotonic() if now is None else now
    interval_s = LIVE_EVERY_S - ARRIVAL_JITTER_S
    if not at_once and not (watched(location_id) and _coalesce(location_id, "validate", interval_s, now, values)):
        return False
    return _send_validate(location_id, values)


def _send_validate(location_id: int, values: dict | None) -> bool:
    """The validate cards with ``values`` (None: the newest stored), if a page is still open."""
    if not watched(location_id):
        return False
    location = _location(location_id)
    if location is None:
        return False
    if values is None:
        values = live.latest(location_id)
    for can_fix, html in render_validate_cards(location, values).items():
        send_group(validate_group(location_id, can_fix), html)
    return True


# card -> (what a failure is logged as, the push with given values) of the trailing pushes
_TRAILING_PUSHES: dict[str, tuple[str, Callable[[int, dict | None], bool]]] = {
    "live": ("live cards", _send_live),
    "validate": ("validation cards", _send_validate),
}


# ----------------------------------------------------------------------------- receivers


def _safely(what: str, location_id: int, push: Callable[[], object]) -> None:
    """Run ``push``; a card that cannot be rendered or sent is logged, never raised into what
    triggered it (ingest, a device's acknowledgement, a saved event)."""
    try:
        push()
    except Exception:
        log.exception("could not push the %s of location %s", what, location_id)


def on_live_values_updated(sender: int, values: dict, **kwargs) -> None:
    def live_cards() -> None:
        push_live(sender, values)
        push_events(sender)

    _safely("live cards", sender, live_cards)
    _safely("validation cards", sender, lambda: push_validate(sender, values))


def on_relay_changed(sender: int, relay=None, **kwargs) -> None:
    _safely("relay states", sender, lambda: push_relays(sender))


def on_check_restarted(sender: int, **kwargs) -> None:
    _safely("validation cards", sender, lambda: push_validate(sender, at_once=True))


def on_event_saved(sender, instance: Event, created: bool, **kwargs) -> None:
    if created:
        location_id = instance.location_id
        transaction.on_commit(lambda: _safely("events", location_id, lambda: push_events(location_id, at_once=True)))


def on_event_saved_validate(sender, instance: Event, created: bool, **kwargs) -> None:
    """Gateway, data-gap, diagnosis and configuration events change the validate page at once."""
    if created and instance.kind in VALIDATE_EVENT_KINDS:
        location_id = instance.location_id
        transaction.on_commit(
            lambda: _safely("validation cards", location_id, lambda: push_validate(location_id, at_once=True))
        )


def connect_signals() -> None:
    live_values_updated.connect(on_live_values_updated, dispatch_uid="dashboard.broadcast.live")
    relay_changed.connect(on_relay_changed, dispatch_uid="dashboard.broadcast.relay")
    check_restarted.connect(on_check_restarted, dispatch_uid="dashboard.broadcast.check-restarted")
    post_save.connect(on_event_saved, sender=Event, dispatch_uid="dashboard.broadcast.event")
    post_save.connect(on_event_saved_validate, sender=Event, dispatch_uid="dashboard.broadcast.event-validate")

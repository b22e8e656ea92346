"""Rendering and pushing cards: once per location, at most once a second, never failing ingest."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.core.cache import cache

from dashboard import broadcast
from devices.models import Event
from metering import live
from metering.ingest import cadence
from tests.dashboard.conftest import ingest
from tests.factories import make_location, star_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """Messages handed to the channel layer, as (location id, html)."""
    messages: list[tuple[int, str]] = []
    monkeypatch.setattr(broadcast, "send", lambda location_id, html: messages.append((location_id, html)))
    return messages


@dataclass
class Scheduled:
    """A trailing push the code asked for: run by the test (when the time has come)."""

    delay_s: float
    work: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.work()


@pytest.fixture
def later(monkeypatch):
    """Trailing pushes scheduled, in order; none runs unless the test fires it."""
    scheduled: list[Scheduled] = []

    def schedule(delay_s: float, work: Callable[[], None]) -> Callable[[], None]:
        scheduled.append(Scheduled(delay_s, work))
        return scheduled[-1].cancel

    monkeypatch.setattr(broadcast, "_later", schedule, raising=False)
    return scheduled


@pytest.fixture
def load_power(monkeypatch):
    """Live cards rendered as the one number the tests give as values: ``{"p": 1210.0}``."""
    monkeypatch.setattr(
        broadcast,
        "render_live_cards",
        lambda location, values: f'<section id="card-live-values">{values["p"]} W</section>',
    )


def test_it_pushes_the_live_cards_at_most_once_a_second_per_location(house, sent, later):
    location, _ = house
    other, _ = make_location(name="Other", serial_prefix="O")
    values = {"t": time.time(), "loads": [], "totals": {}, "inputs": [], "frequency": 50.0}
    assert broadcast.push_live(location.pk, values, now=100.0) is True
    assert broadcast.push_live(location.pk, values, now=100.5) is False  # left for the trailing push
    assert broadcast.push_live(other.pk, values, now=100.5) is True  # another location has its own clock
    assert broadcast.push_live(location.pk, values, now=100.85) is False
    # A gateway's frames arrive 1 s ± jitter apart: 0.95 s after the last push still pushes.
    assert broadcast.push_live(location.pk, values, now=100.95) is True
    assert broadcast.push_live(location.pk, values, now=101.0) is False
    assert [location_id for location_id, _ in sent] == [location.pk, other.pk, location.pk]
    assert all('id="card-live-values"' in html and 'id="card-inputs"' in html for _, html in sent)


def test_a_live_push_after_the_first_reads_nothing_from_the_database(client, house, sent, django_assert_num_queries):
    """Pushed every second for every watched location: the location, its inputs, today's pulses
    and always-on come from the caches, which an installation change refreshes."""
    location, token = house
    ingest(client, token, star_frame(t=time.time()))
    values, later = live.latest(location.pk), time.monotonic() + 10
    assert broadcast.push_live(location.pk, values, now=later) is True
    with django_assert_num_queries(0):
        assert broadcast.push_live(location.pk, values, now=later + 1) is True
    location.input_modules.first().inputs.filter(number="1").update(name="Gas meter")  # behind the ORM's signals
    location.save()  # ...then a saved change: every cache of this installation is refreshed
    assert broadcast.push_live(location.pk, values, now=later + 2) is True
    assert "Gas meter" in sent[-1][1]


def test_it_renders_a_burst_of_frames_once_and_its_newest_frame_at_the_end_of_the_interval(client, house, sent, later):
    location, token = house
    t = time.time() - 5
    loads_w = {"A": (1000.0, 0.0), "B": (500.0, 0.0), "C": (250.0, 0.0), "D": (800.0, 0.0)}
    frames = [
        star_frame(seq=k, t=t + 0.2 * k, n=1280, loads_w=loads_w | {"B": (500.0 + 100 * k, 0.0)}) for k in range(1, 6)
    ]
    ingest(client, token, frames)
    live_pushes = [html for _, html in sent if 'id="card-live-values"' in html]
    assert len(live_pushes) == 1 and ">600<" in live_pushes[0]
    assert len(later) == 1
    later[0].fire()
    live_pushes = [html for _, html in sent if 'id="card-live-values"' in html]
    assert len(live_pushes) == 2 and ">1000<" in live_pushes[1]


def test_it_pushes_the_second_of_two_quick_frames_at_the_end_of_the_interval(house, sent, later, load_power):
    location, _ = house
    assert broadcast.push_live(location.pk, {"p": 1210.0}, now=100.0) is True  # the leading edge: at once
    assert broadcast.push_live(location.pk, {"p": 1234.0}, now=100.05) is False
    assert [html for _, html in sent] == ['<section id="card-live-values">1210.0 W</section>']
    assert len(later) == 1 and later[0].delay_s == pytest.approx(0.85)  # at the end of the interval
    later[0].fire()
    assert [html for _, html in sent][1:] == ['<section id="card-live-values">1234.0 W</section>']
    # The trailing push (at 100.9) began a new interval: a frame at 101.5 waits for 101.8.
    assert broadcast.push_live(location.pk, {"p": 1250.0}, now=101.5) is False
    assert len(later) == 2 and later[1].delay_s == pytest.approx(0.3)


def test_it_pushes_a_burst_of_ten_frames_twice_at_once_and_with_the_newest_values(house, sent, later, load_power):
    location, _ = house
    pushed = [broadcast.push_live(location.pk, {"p": 1200.0 + k}, now=100.0 + 0.05 * k) for k in range(10)]
    assert pushed == [True] + [False] * 9
    assert len(later) == 1  # one trailing push for the burst, not one per frame
    later[0].fire()
    assert [html for _, html in sent] == [
        '<section id="card-live-values">1200.0 W</section>',
        '<section id="card-live-values">1209.0 W</section>',
    ]
    # A lone frame after a quiet interval: one push at once and nothing after it.
    assert broadcast.push_live(location.pk, {"p": 1300.0}, now=105.0) is True
    assert len(sent) == 3 and len(later) == 1


def test_it_drops_the_trailing_push_when_a_newer_frame_was_pushed_at_once(house, sent, later, load_power):
    """A trailing push that comes late (a busy server) must not put older values back."""
    location, _ = house
    broadcast.push_live(location.pk, {"p": 1210.0}, now=100.0)
    broadcast.push_live(location.pk, {"p": 1234.0}, now=100.5)
    assert broadcast.push_live(location.pk, {"p": 1300.0}, now=101.0) is True
    assert later[0].cancelled
    later[0].work()  # it fires anyway: too late to be cancelled
    assert [html for _, html in sent][-1] == '<section id="card-live-values">1300.0 W</section>'
    assert len(sent) == 2


def test_it_pushes_the_newest_values_of_a_burst_to_the_validate_page(house, monkeypatch, later):
    location, _ = house
    monkeypatch.setattr(broadcast, "WATCHED_READ_EVERY_S", 0.0)  # a closed page is seen at once
    messages: list[tuple[str, str]] = []
    monkeypatch.setattr(broadcast, "send_group", lambda group, html: messages.append((group, html)))
    monkeypatch.setattr(
        broadcast,
        "render_validate_cards",
        lambda location, values: {True: f"fix {values['p']}", False: f"read {values['p']}"},
    )
    for k in range(3):  # nobody has the page open: nothing rendered, nothing scheduled
        assert broadcast.push_validate(location.pk, {"p": 1200.0 + k}, now=100.0 + 0.05 * k) is False
    assert messages == [] and later == []

    broadcast.mark_watched(location.pk)
    pushed = [broadcast.push_validate(location.pk, {"p": 1200.0 + k}, now=110.0 + 0.05 * k) for k in range(10)]
    assert pushed == [True] + [False] * 9
    assert len(later) == 1 and later[0].delay_s == pytest.approx(0.85)  # scheduled by the second frame
    later[0].fire()
    fix, read = broadcast.validate_group(location.pk, True), broadcast.validate_group(location.pk, False)
    assert messages == [(fix, "fix 1200.0"), (read, "read 1200.0"), (fix, "fix 1209.0"), (read, "read 1209.0")]

    # The page was closed before the trailing push: it renders nothing.
    assert broadcast.push_validate(location.pk, {"p": 1300.0}, now=111.0) is False
    assert len(later) == 2
    cache.delete(f"validate:watched:{location.pk}")
    later[1].fire()
    assert len(messages) == 4


def test_it_pushes_events_only_when_there_is_a_new_one_and_at_most_once_every_few_seconds(house, sent):
    location, _ = house
    every = broadcast.EVENTS_EVERY_S
    begins = every - cadence.phase_s(location.pk, every)  # one of this location's periods begins
    assert broadcast.push_events(location.pk, now=begins) is True  # first look of this process
    assert broadcast.push_events(location.pk, now=begins + every) is False  # nothing new
    Event.objects.create(location=location, kind=Event.DATA_GAP, message="Data gap: 2 frames missing")
    assert broadcast.push_events(location.pk, now=begins + every + 2.0) is False  # checked in this period
    assert broadcast.push_events(location.pk, now=begins + 2 * every) is True
    assert "Data gap: 2 frames missing" in sent[-1][1]
    assert sent[-1][1].lstrip().startswith('<div id="events-live"')


def test_it_pushes_the_relay_states_for_everyone_without_buttons(house, sent):
    location, _ = house
    broadcast.push_relays(location.pk)
    html = sent[0][1]
    assert html.count('<div id="relay-state-') == 2
    assert "csrfmiddlewaretoken" not in html and "<form" not in html


def test_it_never_fails_ingest_when_a_card_cannot_be_rendered(client, house, monkeypatch, caplog):
    location, token = house

    def broken(*args, **kwargs):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(broadcast, "render_live_cards", broken)
    ingest(client, token, star_frame(t=time.time()))
    assert live.latest(location.pk) is not None
    assert "could not push the live cards" in caplog.text


def test_it_pushes_nothing_for_an_unknown_location(sent):
    assert broadcast.push_live(999_999, {"t": 0.0}, now=0.0) is False
    broadcast.push_relays(999_999)
    assert sent == []

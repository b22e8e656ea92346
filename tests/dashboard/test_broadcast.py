"""Rendering and pushing cards: once per location, at most once a second, never failing ingest."""

from __future__ import annotations

import time

import pytest

from dashboard import broadcast
from devices.models import Event
from metering import cadence, live
from tests.dashboard.conftest import ingest
from tests.factories import make_location, star_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """Messages handed to the channel layer, as (location id, html)."""
    messages: list[tuple[int, str]] = []
    monkeypatch.setattr(broadcast, "send", lambda location_id, html: messages.append((location_id, html)))
    return messages


def test_it_pushes_the_live_cards_at_most_once_a_second_per_location(house, sent):
    location, _ = house
    other, _ = make_location(name="Other", serial_prefix="O")
    values = {"t": time.time(), "loads": [], "totals": {}, "inputs": [], "frequency": 50.0}
    assert broadcast.push_live(location.pk, values, now=100.0) is True
    assert broadcast.push_live(location.pk, values, now=100.5) is False  # dropped, not queued
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


def test_it_renders_a_burst_of_frames_once(client, house, sent):
    location, token = house
    t = time.time() - 5
    frames = [star_frame(seq=k, t=t + 0.2 * k, n=1280) for k in range(1, 6)]
    ingest(client, token, frames)
    live_pushes = [html for _, html in sent if 'id="card-live-values"' in html]
    assert len(live_pushes) == 1


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

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.db.models.signals import post_save

from devices.models import LoadCt
from metering import installed as installed_module
from metering.installed import VERSION_KEY, installed
from tests.factories import make_location

pytestmark = pytest.mark.django_db


def test_it_reloads_an_installation_another_process_changed(django_assert_num_queries, monkeypatch):
    location, _ = make_location()
    first = installed(location.pk)
    with django_assert_num_queries(0):
        assert installed(location.pk) is first

    # Another process saved a change: only the shared version moved, not this process's copy.
    receivers = post_save.receivers
    post_save.receivers = []
    try:
        LoadCt.objects.filter(ct_input__letter="D").update(phase="L3")
    finally:
        post_save.receivers = receivers
    assert installed(location.pk) is first  # an update() sends no signal: still the cached copy
    cache.set(VERSION_KEY, cache.get(VERSION_KEY, 0) + 1)
    assert installed(location.pk) is first  # this process reads the shared version once a second
    later = installed_module.time.monotonic() + installed_module.VERSION_READ_EVERY_S
    monkeypatch.setattr(installed_module.time, "monotonic", lambda: later)
    reloaded = installed(location.pk)
    assert reloaded is not first
    assert [ch.phase for ch in reloaded.meter.channels if ch.ct.endswith("/D")] == ["L3"]


def test_it_forgets_at_once_when_this_process_saves_a_change():
    location, _ = make_location()
    first = installed(location.pk)
    ct = LoadCt.objects.get(ct_input__letter="D")
    ct.phase = "L2"
    ct.save()
    assert installed(location.pk) is not first
    assert installed(location.pk).meter.channels[-1].phase == "L2"


def test_values_kept_together_do_not_all_expire_together(monkeypatch):
    # Every location's first frame after a restart loads its installation in the same second;
    # reloading all of them again in one second, every few minutes, would stall ingest.
    now = [1000.0]
    monkeypatch.setattr(installed_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    kept = installed_module.Kept(10.0, spread_s=5.0)
    for key in range(200):
        kept.get(key, lambda: "loaded")

    reloaded: list[int] = []
    now[0] += 7.5  # halfway through the spread
    for key in range(200):
        kept.get(key, lambda key=key: reloaded.append(key) or "loaded")
    assert 50 < len(reloaded) < 150

    now[0] += 2.6  # every entry of the first load is older than 10 s now
    for key in set(range(200)) - set(reloaded):
        kept.get(key, lambda key=key: reloaded.append(key) or "loaded")
    assert sorted(reloaded) == list(range(200))

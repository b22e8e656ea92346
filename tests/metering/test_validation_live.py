"""Commissioning findings travel with the live values (SPEC 5.3 ``checks``)."""

from __future__ import annotations

import orjson
import pytest
from django.core.cache import cache

from metering import validation
from tests.factories import heat_pump_frames, make_location

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    cache.clear()
    validation._watches.clear()
    # Every frame counts, and findings are fresh after each one (the test sends frames fast).
    monkeypatch.setattr(validation, "OBSERVE_EVERY_S", 0.0)
    monkeypatch.setattr(validation, "FINDINGS_EVERY_S", 0.0)
    yield
    validation._watches.clear()


def stream(client, token, heat_pump_phase: str, frames: int = 24):
    """A house whose heat pump (CT D, configured on L1) really runs on ``heat_pump_phase``."""
    for frame in heat_pump_frames(heat_pump_phase, frames):
        response = client.post(
            "/api/v1/ingest/frames",
            orjson.dumps(frame),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 200, response.content


def test_it_names_a_ct_on_the_wrong_phase_with_the_fix(client, owner):
    location, token = make_location(members={owner: "owner"})
    stream(client, token, heat_pump_phase="L3")
    client.force_login(owner)
    live = client.get(f"/api/v1/locations/{location.pk}/live").json()
    wrong = [c for c in live["checks"] if c["ct"] == "CTH-T/D"]
    assert wrong and wrong[0]["kind"] == "phase" and wrong[0]["suggest"] == "L3"
    assert wrong[0]["confidence"] >= 0.8
    assert {v["ct"] for v in live["validation"]} >= {"CTH-T/A", "CTH-T/B", "CTH-T/C", "CTH-T/D"}


def test_it_raises_no_alarm_on_a_correctly_wired_house(client, owner):
    location, token = make_location(members={owner: "owner"})
    stream(client, token, heat_pump_phase="L1")
    client.force_login(owner)
    live = client.get(f"/api/v1/locations/{location.pk}/live").json()
    assert live["checks"] == []
    verdict = {v["ct"]: v["kind"] for v in live["validation"]}
    assert verdict["CTH-T/D"] == "ok"

from __future__ import annotations

import orjson
import pytest

from devices.models import Event
from metering.ingest.watchdog import report_offline_gateways
from tests.factories import T0, make_location, star_frame

pytestmark = pytest.mark.django_db


def test_it_reports_a_silent_gateway_offline_once_and_online_when_it_returns(client):
    location, token = make_location()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    client.post(
        "/api/v1/ingest/frames",
        orjson.dumps(star_frame(seq=1, t=T0 + 1000.0)),
        content_type="application/json",
        **headers,
    )

    assert report_offline_gateways(now_unix=T0 + 1020.0) == []  # 19 s of silence is fine
    [offline] = report_offline_gateways(now_unix=T0 + 1040.0)
    assert offline.location == location and offline.kind == Event.GATEWAY_OFFLINE
    assert offline.message.startswith("Gateway GW-T offline: no data since")
    assert offline.data["silence_s"] == 39.0
    assert report_offline_gateways(now_unix=T0 + 1100.0) == []  # said once

    client.post(
        "/api/v1/ingest/frames",
        orjson.dumps(star_frame(seq=2, t=T0 + 1101.0)),
        content_type="application/json",
        **headers,
    )
    assert Event.objects.filter(kind=Event.GATEWAY_ONLINE).count() == 1
    assert report_offline_gateways(now_unix=T0 + 1110.0) == []
    assert len(report_offline_gateways(now_unix=T0 + 1200.0)) == 1


def test_it_ignores_power_boxes_that_never_sent():
    make_location()
    assert report_offline_gateways(now_unix=10_000_000_000.0) == []

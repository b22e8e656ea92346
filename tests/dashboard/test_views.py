"""Pages: who sees which location, what a page shows without JavaScript, htmx partials."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth.models import Permission
from django.template.loader import render_to_string

from dashboard import cards
from devices.models import Event, Membership, Relay
from metering.models import RelayCommand
from tests.dashboard.conftest import ingest
from tests.factories import make_location, star_frame

pytestmark = pytest.mark.django_db


def urls(location) -> list[str]:
    relay = Relay.objects.filter(module__location=location).first()
    return [
        f"/locations/{location.pk}/",
        f"/locations/{location.pk}/usage.csv",
        f"/locations/{location.pk}/relays/{relay.pk}/",
    ]


def test_it_redirects_anonymous_users_to_sign_in(client, house):
    location, _ = house
    for url in ["/", *urls(location)]:
        response = client.post(url, {"command": "on"}) if "relays" in url else client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url


def test_it_refuses_strangers_every_location_url_with_404(client, house, stranger):
    location, _ = house
    client.force_login(stranger)
    for url in urls(location):
        response = client.post(url, {"command": "on"}) if "relays" in url else client.get(url)
        assert response.status_code == 404, url
    partial = client.get(f"/locations/{location.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="card-events")
    assert partial.status_code == 404
    assert not RelayCommand.objects.exists()


@pytest.mark.parametrize("persona", ["owner", "viewer", "installer", "staff"])
def test_it_shows_the_dashboard_to_members_and_staff(client, house, persona, request):
    location, _ = house
    client.force_login(request.getfixturevalue(persona))
    response = client.get(f"/locations/{location.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    for card_id in cards.TEMPLATES:
        assert f'id="{card_id}"' in html
    assert f'ws-connect="/ws/locations/{location.pk}/"' in html


def test_it_lists_only_the_users_locations_with_their_live_totals(client, house, owner):
    location, token = house
    make_location(name="Someone else's house", serial_prefix="X")
    ingest(client, token, star_frame(t=time.time() - 1))
    client.force_login(owner)
    html = client.get("/").content.decode()
    assert "Test house" in html and "Someone else" not in html
    assert f'href="/locations/{location.pk}/"' in html
    assert re.search(r"Consumption</dt><dd>17\d\d W</dd>", html)  # 1,750 W
    assert re.search(r"Grid import</dt><dd>17\d\d W</dd>", html)


def test_it_says_no_data_yet_before_the_first_frame(client, house, owner):
    location, _ = house
    client.force_login(owner)
    assert "No data yet" in client.get("/").content.decode()
    html = client.get(f"/locations/{location.pk}/").content.decode()
    assert "No data yet — waiting for the first frame from the gateway" in html


def test_it_shows_staff_every_location(client, staff):
    make_location(name="Nobody's house", serial_prefix="N")
    client.force_login(staff)
    assert "Nobody&#x27;s house" in client.get("/").content.decode()


def test_it_renders_the_current_values_without_javascript(client, house, owner):
    location, token = house
    ingest(client, token, star_frame(t=time.time() - 1))
    client.force_login(owner)
    html = client.get(f"/locations/{location.pk}/").content.decode()
    table = re.search(r'<table class="numbers live-table">.*?</table>', html, re.S).group(0)
    assert "<caption>" in table and 'scope="col"' in table and "P [W]" in table and "V<sub>LN</sub> [V]" in table
    rows = re.findall(
        r'<th scope="row" class="phase">(L\d) <span class="ref">(CTH-T/[A-D])</span></th>\s*((?:<td[^>]*>[^<]*</td>\s*)+)',
        table,
    )
    cells = {ct: re.findall(r"<td[^>]*>([^<]*)</td>", tds) for _, ct, tds in rows}
    p, q, pf, i, v_ln, v_ll = cells["CTH-T/A"]
    assert int(p) == pytest.approx(1000, abs=3)
    assert int(q) == pytest.approx(200, abs=3)
    assert pf == "0.98"
    assert float(i) == pytest.approx(4.434, abs=0.005) and len(i.split(".")[1]) == 3
    assert float(v_ln) == pytest.approx(230.0, abs=0.1) and float(v_ll) == pytest.approx(398.4, abs=0.2)
    assert "Grid export" in html and "50.00 Hz" in html
    assert re.search(
        r'<tr class="load-total">\s*<th scope="row" class="phase">Total</th>\s*<td class="num p">17\d\d</td>', table
    )


def test_it_shows_a_dash_for_v_ln_without_a_neutral():
    values = {
        "t": time.time(),
        "topology": "3P",
        "frequency": 50.0,
        "totals": {"consumption": 97.0, "grid_import": 97.0, "grid_export": 0.0},
        "loads": [
            {
                "name": "Grid",
                "kind": "grid",
                "p": 97.0,
                "q": 0.0,
                "phases": [
                    {
                        "phase": "L1",
                        "ct": "CTH-0001/A",
                        "p": 15.0,
                        "q": 75.0,
                        "pf": 0.2,
                        "i": 0.322,
                        "v_ln": None,
                        "v_ll": 230.2,
                    },
                ],
            }
        ],
        "inputs": [],
    }
    location = make_location(topology="3P")[0]
    html = render_to_string(cards.TEMPLATES["card-live-values"], cards.live_values_context(location, values))
    assert re.search(r'<td class="num">0.322</td>\s*<td class="num">—</td>\s*<td class="num">230.2</td>', html)


def test_it_says_how_long_there_has_been_no_data(client, house, owner):
    location, token = house
    ingest(client, token, star_frame(t=time.time() - 61))
    client.force_login(owner)
    html = client.get(f"/locations/{location.pk}/").content.decode()
    assert re.search(
        r'id="card-live-values" class="card card-live is-stale"[^>]* data-t="\d+\.\d+" data-rendered="\d+\.\d+"', html
    )
    assert re.search(r"No data for 6\d s", html)


def test_it_renders_only_the_targeted_card_for_htmx(client, house, owner):
    location, token = house
    ingest(client, token, star_frame(t=time.time() - 1))
    client.force_login(owner)
    for card_id in cards.TEMPLATES:
        response = client.get(f"/locations/{location.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET=card_id)
        html = response.content.decode().strip()
        assert html.startswith(f'<section id="{card_id}"'), card_id
        assert "<html" not in html


def test_it_uses_the_packages_own_htmx_and_ws_extension(client, house, owner):
    location, _ = house
    client.force_login(owner)
    html = client.get(f"/locations/{location.pk}/").content.decode()
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in html
    assert '<script src="/static/django_htmx/ext/hx-ws-2.min.js" defer></script>' in html
    assert "/static/vendor/plotly/plotly.min.js" in html
    # Every script and stylesheet comes from this server (a random CSRF token may spell "cdn").
    assets = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]*)"', html)
    assert assets and all(url.startswith("/") and not url.startswith("//") for url in assets), assets


# ----------------------------------------------------------------------------- inputs


def test_it_shows_pulse_meters_and_status_inputs(client, house, owner):
    location, token = house
    t = time.time() - 2
    ingest(
        client,
        token,
        star_frame(
            seq=1, t=t, inputs={"INP-T/1": {"state": 0, "pulses": 123400}, "INP-T/2": {"state": 0, "pulses": 0}}
        ),
    )
    ingest(
        client,
        token,
        star_frame(
            seq=2, t=t + 1, inputs={"INP-T/1": {"state": 0, "pulses": 123401}, "INP-T/2": {"state": 1, "pulses": 0}}
        ),
    )
    client.force_login(owner)
    html = client.get(
        f"/locations/{location.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="card-inputs"
    ).content.decode()
    assert re.search(r'<span class="value">1234.01</span> <span class="unit">m³</span>', html)
    assert "36.00 m³/h" in html  # one pulse (0.01 m³) in a second
    assert "Today</dt><dd>0.00 m³" in html
    assert "Closed</p>" in html and "since <time" in html


def test_it_sums_todays_pulses_from_local_midnight(house):
    from datetime import timedelta

    from django.utils import timezone

    from devices.models import DigitalInput
    from metering.models import InputCount

    location, _ = house
    gas = DigitalInput.objects.get(module__location=location, number="1")
    midnight = cards.local_midnight(location, timezone.now())
    InputCount.objects.create(input=gas, start=midnight - timedelta(minutes=5), pulses=999)  # yesterday
    InputCount.objects.create(input=gas, start=midnight, pulses=150)
    context = cards.inputs_context(
        location,
        {
            "t": time.time(),
            "inputs": [
                {
                    "input": gas.ref,
                    "name": "Gas",
                    "mode": "pulse",
                    "state": 0,
                    "pulses": 1,
                    "value": 0.01,
                    "unit": "m3",
                    "rate": 0.0,
                },
            ],
        },
    )
    assert context["inputs"][0]["today"] == pytest.approx(1.5)


# ----------------------------------------------------------------------------- events


def test_it_pages_events_newest_first_20_at_a_time(client, house, viewer):
    from datetime import timedelta

    from django.utils import timezone

    location, _ = house
    start = timezone.now() - timedelta(hours=1)
    for k in range(25):
        Event.objects.create(
            location=location, kind=Event.DATA_GAP, message=f"gap {k:02d}", time=start + timedelta(minutes=k)
        )
    client.force_login(viewer)
    html = client.get(f"/locations/{location.pk}/").content.decode()
    messages = re.findall(r'class="event-message">(gap \d\d)', html)
    assert messages[:2] == ["gap 24", "gap 23"] and len(messages) == 20
    assert "Page 1 of 2" in html and "Older →" in html and 'id="events-live"' in html
    older = client.get(f"/locations/{location.pk}/", {"page": 2}).content.decode()
    assert re.findall(r'class="event-message">(gap \d\d)', older) == [f"gap {k:02d}" for k in range(4, -1, -1)]
    assert "← Newer" in older and 'id="events-page"' in older  # not the live body: pushes leave it alone


def test_it_filters_events_by_kind_with_and_without_htmx(client, house, owner):
    location, _ = house
    Event.objects.create(location=location, kind=Event.RELAY, message="Boiler switched on (by owner)")
    Event.objects.create(location=location, kind=Event.DATA_GAP, message="Data gap: 3 frames missing")
    client.force_login(owner)
    html = client.get(f"/locations/{location.pk}/", {"kind": "relay"}).content.decode()
    assert "Boiler switched on" in html and "Data gap: 3" not in html
    assert '<option value="relay" selected>' in html
    partial = client.get(
        f"/locations/{location.pk}/", {"kind": "data_gap"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="card-events"
    )
    assert "Data gap: 3" in partial.content.decode() and "Boiler" not in partial.content.decode()
    assert (
        "No “Gateway offline” events." in client.get(f"/locations/{location.pk}/", {"kind": "offline"}).content.decode()
    )


def test_it_shows_event_times_in_the_locations_time_zone(client, house, owner):
    from datetime import UTC, datetime

    location, _ = house
    Event.objects.create(
        location=location, kind=Event.GATEWAY_ONLINE, message="back", time=datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    )
    client.force_login(owner)
    html = client.get(f"/locations/{location.pk}/").content.decode()
    assert '<time datetime="2026-07-01T10:00:00+00:00">1 Jul 12:00</time>' in html  # CEST


# ----------------------------------------------------------------------------- relays


def relay_of(location, number="1") -> Relay:
    return Relay.objects.get(module__location=location, number=number)


def test_it_lets_the_owner_switch_a_relay_and_shows_it_switching(client, house, owner):
    location, _ = house
    relay = relay_of(location)
    client.force_login(owner)
    response = client.post(f"/locations/{location.pk}/relays/{relay.pk}/", {"command": "on"})
    assert response.status_code == 302
    assert response["Location"] == f"/locations/{location.pk}/#card-relays"
    command = RelayCommand.objects.get()
    assert (command.relay, command.on, command.until, command.requested_by) == (relay, True, None, owner)
    relay.refresh_from_db()
    assert relay.is_on is False  # only the device's acknowledgement changes the state
    html = client.get(f"/locations/{location.pk}/").content.decode()
    assert "Switching on…" in html


def test_it_switches_on_for_a_while(client, house, owner):
    location, _ = house
    relay = relay_of(location, "2")
    client.force_login(owner)
    client.post(f"/locations/{location.pk}/relays/{relay.pk}/", {"command": "15"})
    command = RelayCommand.objects.get()
    assert command.on and 14 * 60 < (command.until - command.requested_at).total_seconds() <= 15 * 60 + 1


def test_it_answers_htmx_with_the_relays_card(client, house, staff):
    location, _ = house
    relay = relay_of(location)
    client.force_login(staff)
    response = client.post(
        f"/locations/{location.pk}/relays/{relay.pk}/",
        {"command": "off"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="card-relays",
    )
    assert response.status_code == 200
    html = response.content.decode().strip()
    assert html.startswith('<section id="card-relays"') and "Switching off…" in html


@pytest.mark.parametrize("persona", ["viewer", "installer"])
def test_it_shows_relays_but_no_buttons_to_viewers_and_installers(client, house, persona, request):
    location, _ = house
    relay = relay_of(location)
    client.force_login(request.getfixturevalue(persona))
    html = client.get(f"/locations/{location.pk}/").content.decode()
    assert f'id="relay-state-{relay.pk}"' in html and "Boiler" in html
    assert 'name="command"' not in html
    response = client.post(f"/locations/{location.pk}/relays/{relay.pk}/", {"command": "on"})
    assert response.status_code == 403
    assert not RelayCommand.objects.exists()


def test_it_refuses_a_relay_of_another_location(client, house, owner):
    location, _ = house
    other, _ = make_location(name="Other", serial_prefix="O")
    client.force_login(owner)
    response = client.post(f"/locations/{location.pk}/relays/{relay_of(other).pk}/", {"command": "on"})
    assert response.status_code == 404
    assert not RelayCommand.objects.exists()


def test_it_refuses_an_unknown_command(client, house, owner):
    location, _ = house
    relay = relay_of(location)
    client.force_login(owner)
    response = client.post(f"/locations/{location.pk}/relays/{relay.pk}/", {"command": "7"}, follow=True)
    assert "Boiler: choose on, off or a timed switch-on of 5, 15, 30, 60 minutes." in response.content.decode()
    assert not RelayCommand.objects.exists()
    assert client.get(f"/locations/{location.pk}/relays/{relay.pk}/").status_code == 405


def test_it_shows_the_state_the_device_acknowledged(client, house, owner):
    location, token = house
    relay = relay_of(location)
    client.force_login(owner)
    client.post(f"/locations/{location.pk}/relays/{relay.pk}/", {"command": "30"})
    command = RelayCommand.objects.get()
    ack = {"type": "ack", "command": str(command.pk), "relay": relay.ref, "on": True}
    response = client.post(
        "/api/v1/ingest/acks", data=ack, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    html = client.get(f"/locations/{location.pk}/").content.decode()
    state = re.search(rf'<div id="relay-state-{relay.pk}".*?</div>', html, re.S).group(0)
    assert "is-on" in state and ">On<" in state and "since <time" in state and "until <time" in state
    assert "Switching" not in state
    assert "Boiler switched on until" in html  # the event


def test_it_says_when_the_device_never_confirmed(client, house, owner):
    from datetime import timedelta

    from django.utils import timezone

    location, _ = house
    relay = relay_of(location)
    command = RelayCommand.objects.create(relay=relay, on=True, requested_by=owner)
    RelayCommand.objects.filter(pk=command.pk).update(requested_at=timezone.now() - timedelta(minutes=5))
    client.force_login(owner)
    html = client.get(f"/locations/{location.pk}/").content.decode()
    assert "The device did not confirm switching on" in html


def test_it_lets_a_staff_member_who_is_a_viewer_switch(client, house, staff):
    location, _ = house
    Membership.objects.create(location=location, user=staff, role="viewer")
    client.force_login(staff)
    response = client.post(f"/locations/{location.pk}/relays/{relay_of(location).pk}/", {"command": "on"})
    assert response.status_code == 302 and RelayCommand.objects.count() == 1


# ----------------------------------------------------------------------------- staff and support


@pytest.fixture
def admin_site_only(django_user_model):
    """Staff for the admin site, without the support permission and no member of the house."""
    return django_user_model.objects.create_user("admin-site-only", password="pw", is_staff=True)


@pytest.fixture
def support(django_user_model):
    """Support staff: the permission, no membership, not a superuser (nor admin-site staff)."""
    user = django_user_model.objects.create_user("support", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="support_all_locations"))
    return user


def test_it_refuses_staff_without_the_support_permission_every_location_url(client, house, admin_site_only):
    location, _ = house
    client.force_login(admin_site_only)
    base = f"/locations/{location.pk}"
    for url in [f"{base}/", f"{base}/usage.csv", f"{base}/validate/", f"{base}/reports/"]:
        assert client.get(url).status_code == 404, url
    assert client.get(f"{base}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="card-events").status_code == 404
    for url, data in [
        (f"{base}/relays/{relay_of(location).pk}/", {"command": "on"}),
        (f"{base}/validate/sign-off/", {}),
    ]:
        assert client.post(url, data).status_code == 404, url
    assert "Test house" not in client.get("/").content.decode()
    assert not RelayCommand.objects.exists() and not Event.objects.exists()


def test_it_lets_support_staff_see_every_location_and_logs_their_actions_by_name(client, house, support):
    location, _ = house
    client.force_login(support)
    assert "Test house" in client.get("/").content.decode()
    assert client.get(f"/locations/{location.pk}/").status_code == 200
    assert client.get(f"/locations/{location.pk}/validate/").status_code == 200
    relay = relay_of(location)
    response = client.post(f"/locations/{location.pk}/relays/{relay.pk}/", {"command": "on"})
    assert response.status_code == 302 and RelayCommand.objects.get().requested_by == support
    switched = Event.objects.get(kind=Event.RELAY)
    assert switched.message == f"{relay.name}: switch on asked by support (support staff, not a member)."
    assert switched.data["by"] == "support"
    response = client.post(f"/locations/{location.pk}/validate/sign-off/", {"notes": ""})
    assert response.status_code == 302
    signed = Event.objects.get(kind=Event.VALIDATION)
    assert signed.message == "Installation signed off by support (support staff, not a member)."
    assert signed.data["support"] is True


def test_it_logs_a_support_members_actions_without_the_support_note(client, house, support):
    location, _ = house
    Membership.objects.create(location=location, user=support, role="installer")
    client.force_login(support)
    client.post(f"/locations/{location.pk}/relays/{relay_of(location).pk}/", {"command": "on"})
    assert RelayCommand.objects.count() == 1  # the permission lets an installer member switch
    assert not Event.objects.filter(kind=Event.RELAY).exists()  # the device's acknowledgement logs it

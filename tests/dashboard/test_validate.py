"""The installer's check: who sees it, verdicts beside the live values, one-click fixes, sign-off, pushes."""

from __future__ import annotations

import html as html_lib
import re
import time
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client

from config.asgi import application
from dashboard import broadcast, cards
from devices.models import CommissioningReport, Event, LoadCt
from metering import live, validation
from tests.dashboard.conftest import ingest
from tests.dashboard.sockets import browser_socket, try_connect
from tests.factories import heat_pump_frames, make_location, star_frame

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_validation(monkeypatch):
    """Every frame counts and findings are fresh after each one (the tests send frames fast)."""
    validation._watches.clear()
    monkeypatch.setattr(validation, "OBSERVE_EVERY_S", 0.0)
    monkeypatch.setattr(validation, "FINDINGS_EVERY_S", 0.0)
    yield
    validation._watches.clear()


@pytest.fixture
def resets(monkeypatch):
    """Locations whose observation was reset (the real reset still happens)."""
    calls: list[int] = []
    original = validation.reset

    def spy(location_id: int) -> None:
        calls.append(location_id)
        original(location_id)

    monkeypatch.setattr(validation, "reset", spy)
    return calls


def stream(client, token: str, heat_pump_phase: str, frames: int = 24, t0: float = 1_764_090_000.0) -> None:
    """The test house with its heat pump (CT D, configured on L1) physically on ``heat_pump_phase``,
    switching 2 kW on and off every three frames (the load changes the check needs)."""
    for frame in heat_pump_frames(heat_pump_phase, frames, t0):
        ingest(client, token, frame)


def with_verdicts(location, verdicts: list[dict], t: float | None = None) -> dict:
    """Store live values carrying ``verdicts`` (what ingest stores after the check judged)."""
    values = {
        "location": location.pk,
        "t": time.time() if t is None else t,
        "topology": location.topology,
        "frequency": 50.0,
        "loads": [],
        "totals": {},
        "inputs": [],
        "checks": validation.checks([]),
        "validation": verdicts,
    }
    cache.set(live.key(location.pk), values)
    return values


def verdict(ct: str, kind: str, suggest=None, suggest_reversed=None, confidence=0.9, reason="Because.") -> dict:
    return {
        "ct": ct,
        "kind": kind,
        "suggest": suggest,
        "suggest_reversed": suggest_reversed,
        "confidence": confidence,
        "reason": reason,
    }


def fix_data(ct: str, action: str, phase: str = "", flip: bool = False, from_phase: str = "L1", from_reversed=False):
    return {
        "ct": ct,
        "action": action,
        "phase": phase,
        "flip": "true" if flip else "false",
        "from_phase": from_phase,
        "from_reversed": "true" if from_reversed else "false",
    }


def urls(location, report_pk: int) -> dict[str, str]:
    base = f"/locations/{location.pk}"
    return {
        "validate": f"{base}/validate/",
        "fix": f"{base}/validate/fix/",
        "sign-off": f"{base}/validate/sign-off/",
        "reports": f"{base}/reports/",
        "report": f"{base}/reports/{report_pk}/",
    }


def request(client, name: str, url: str):
    if name == "fix":
        return client.post(url, fix_data("CTH-T/D", "phase", "L3"))
    if name == "sign-off":
        return client.post(url, {"notes": "x"})
    return client.get(url)


def a_report(location) -> CommissioningReport:
    return CommissioningReport.objects.create(location=location, signed_by_name="someone", installation={})


# ----------------------------------------------------------------------------- access


def test_it_redirects_anonymous_users_to_sign_in(client, house):
    location, _ = house
    for name, url in urls(location, a_report(location).pk).items():
        response = request(client, name, url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), name


def test_it_refuses_strangers_every_url_with_404(client, house, stranger):
    location, _ = house
    client.force_login(stranger)
    for name, url in urls(location, a_report(location).pk).items():
        assert request(client, name, url).status_code == 404, name
    assert LoadCt.objects.get(ct_input__letter="D").phase == "L1"
    assert CommissioningReport.objects.count() == 1


def test_it_refuses_viewers_with_403(client, house, viewer):
    location, _ = house
    client.force_login(viewer)
    for name, url in urls(location, a_report(location).pk).items():
        assert request(client, name, url).status_code == 403, name
    assert CommissioningReport.objects.count() == 1


def test_it_hides_a_report_of_another_location(client, house, installer):
    location, _ = house
    other, _ = make_location(name="Other", serial_prefix="O")
    client.force_login(installer)
    assert client.get(f"/locations/{location.pk}/reports/{a_report(other).pk}/").status_code == 404


@pytest.mark.parametrize("persona", ["installer", "staff"])
def test_it_shows_installers_and_staff_the_check_with_its_live_socket(client, house, persona, request):
    location, _ = house
    client.force_login(request.getfixturevalue(persona))
    response = client.get(f"/locations/{location.pk}/validate/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="card-validation"' in page and 'id="card-troubleshooting"' in page
    assert f'ws-connect="/ws/locations/{location.pk}/validate/"' in page
    assert 'hx-headers=\'{"X-CSRFToken": ' in page
    assert "Sign off installation" in page


def test_it_shows_the_owner_the_check_read_only(client, house, owner):
    location, token = house
    stream(client, token, heat_pump_phase="L3")
    client.force_login(owner)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    assert "wrong phase" in page and "Suggested fix: configure <strong>L3</strong>" in page
    assert "Move to L3" not in page and "Sign off installation" not in page
    assert "The installer applies the fix." in page
    assert client.post(f"/locations/{location.pk}/validate/fix/", fix_data("CTH-T/D", "phase", "L3")).status_code == 403
    assert client.post(f"/locations/{location.pk}/validate/sign-off/").status_code == 403
    assert LoadCt.objects.get(ct_input__letter="D").phase == "L1"
    report = a_report(location)
    assert client.get(f"/locations/{location.pk}/reports/{report.pk}/").status_code == 200
    assert client.get(f"/locations/{location.pk}/reports/").status_code == 200


def test_it_links_the_check_and_the_reports_from_the_dashboard_except_for_viewers(client, house, owner, viewer):
    location, _ = house
    client.force_login(owner)
    page = client.get(f"/locations/{location.pk}/").content.decode()
    assert f'href="/locations/{location.pk}/validate/"' in page and f'href="/locations/{location.pk}/reports/"' in page
    client.force_login(viewer)
    assert f'href="/locations/{location.pk}/validate/"' not in client.get(f"/locations/{location.pk}/").content.decode()


# ----------------------------------------------------------------------------- verdicts


def test_it_names_a_ct_on_the_wrong_phase_with_the_fix_and_its_reason(client, house, installer):
    location, token = house
    stream(client, token, heat_pump_phase="L3")
    finding = next(v for v in live.latest(location.pk)["validation"] if v["ct"] == "CTH-T/D")
    client.force_login(installer)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    row = re.search(
        r'<tr class="ct-row verdict-phase" data-ct="CTH-T/D">.*?</tr>\s*<tr class="verdict-detail">.*?</tr>', page, re.S
    )
    assert row, "the heat pump's CT has a wrong-phase row"
    row = row.group(0)
    assert "wrong phase" in row and f"{round(finding['confidence'] * 100)} %" in row
    assert html_lib.escape(finding["reason"]) in row
    assert "Suggested fix: configure <strong>L3</strong>" in row
    assert '<input type="hidden" name="phase" value="L3">' in row and "Move to L3" in row
    assert "1 finding to act on" in page
    # The other CTs are fine.
    assert page.count('class="ct-row verdict-ok"') == 3


def test_it_watches_until_the_check_has_load_changes_to_judge(client, house, installer):
    location, token = house
    ingest(client, token, star_frame(seq=1, t=1_764_090_000.0, n=1280))  # one frame: nothing to compare yet
    client.force_login(installer)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    assert "Watching… switch loads on and off on each circuit: the check needs load changes" in page
    assert page.count("too little current to judge") == 4


def test_it_shows_location_findings(client, house, installer):
    location, _ = house
    with_verdicts(
        location,
        [
            verdict("", "sequence", reason="L2 and L3 are swapped at the Power Box."),
            verdict("CTH-T/A", "kirchhoff", reason="The sub-meters on L1 measure more than the grid."),
            verdict("CTH-T/A", "ok"),
        ],
    )
    client.force_login(installer)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    assert "Phase sequence" in page and "L2 and L3 are swapped at the Power Box." in page
    assert "Sub-meters exceed the grid (Kirchhoff)" in page and "2 findings to act on" in page


# ----------------------------------------------------------------------------- fixes


def test_it_applies_the_suggested_phase_logs_it_and_restarts_the_check(
    client, house, installer, resets, django_capture_on_commit_callbacks
):
    location, token = house
    stream(client, token, heat_pump_phase="L3")
    confidence = next(v for v in live.latest(location.pk)["validation"] if v["ct"] == "CTH-T/D")["confidence"]
    assert location.pk in validation._watches
    client.force_login(installer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/locations/{location.pk}/validate/fix/", fix_data("CTH-T/D", "phase", "L3"))
    assert response.status_code == 302 and response["Location"] == f"/locations/{location.pk}/validate/#card-validation"
    assert LoadCt.objects.get(ct_input__letter="D").phase == "L3"
    event = Event.objects.get(kind=Event.CONFIGURATION, module="CTH-T/D")
    assert event.message == (
        f"CTH-T/D (Heat pump) moved from L1 to L3 by installer (suggested by validation, confidence {confidence:.2f})."
    )
    assert event.data["before"] == {"phase": "L1", "reversed": False} and event.data["after"]["phase"] == "L3"
    assert resets == [location.pk] and location.pk not in validation._watches
    page = client.get(response["Location"]).content.decode()
    assert "moved from L1 to L3 by installer" in page  # the message after the redirect
    assert "The check starts again after the change" in page and "Move to L3" not in page


@pytest.mark.django_db(transaction=True)  # commits for real: the restart runs before the card renders
def test_it_answers_htmx_with_the_outcome_and_the_card_out_of_band(client, house, installer):
    location, token = house
    stream(client, token, heat_pump_phase="L3")
    client.force_login(installer)
    response = client.post(
        f"/locations/{location.pk}/validate/fix/", fix_data("CTH-T/D", "phase", "L3"), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    answer = response.content.decode()
    # The outcome goes outside the card, which pushes replace every second.
    assert answer.lstrip().startswith('<div id="fix-result"')
    assert '<p class="notice" role="status">CTH-T/D (Heat pump) moved from L1 to L3' in answer
    card = answer[answer.index("<section") :]
    assert card.startswith('<section id="card-validation"') and 'hx-swap-oob="true"' in card.split(">", 1)[0]
    assert "The check starts again after the change" in card


def test_it_refuses_a_fix_the_installation_rules_refuse_and_changes_nothing(
    client, installer, resets, django_capture_on_commit_callbacks
):
    location, _ = make_location(topology="1P", members={installer: "installer"})
    with_verdicts(location, [verdict("CTH-T/D", "phase", suggest="L3", suggest_reversed=False)])
    client.force_login(installer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/locations/{location.pk}/validate/fix/", fix_data("CTH-T/D", "phase", "L3"), HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200
    answer = response.content.decode()
    assert 'role="alert">CTH-T/D was not changed: Phase L3 does not exist in a' in answer
    assert LoadCt.objects.get(ct_input__letter="D").phase == "L1"
    assert not Event.objects.filter(kind__in=[Event.CONFIGURATION, Event.VALIDATION]).exists()
    assert resets == []


def test_it_refuses_a_phase_two_cts_of_a_load_would_share(client, house, installer):
    location, _ = house
    # Suppose the check said the grid's L1 CT is on L2: the grid already has its L2 CT.
    with_verdicts(location, [verdict("CTH-T/A", "phase", suggest="L2", suggest_reversed=False)])
    client.force_login(installer)
    response = client.post(f"/locations/{location.pk}/validate/fix/", fix_data("CTH-T/A", "phase", "L2"), follow=True)
    assert (
        "CTH-T/A was not changed: Load &#x27;Grid&#x27; has two CTs on phase L2; each CT of a load measures a "
        "different phase." in response.content.decode()
    )
    assert LoadCt.objects.get(ct_input__letter="A").phase == "L1"
    assert not Event.objects.filter(kind=Event.CONFIGURATION).exists()


def test_it_refuses_a_stale_suggestion(client, house, installer):
    location, _ = house
    with_verdicts(location, [verdict("CTH-T/D", "phase", suggest="L3", suggest_reversed=False)])
    client.force_login(installer)
    url = f"/locations/{location.pk}/validate/fix/"
    # The check now suggests L3, the page showed L2.
    page = client.post(url, fix_data("CTH-T/D", "phase", "L2"), follow=True).content.decode()
    assert "The check does not suggest this for CTH-T/D any more (it now says: wrong phase, configure L3)" in page
    # Someone moved the CT since the page was shown.
    LoadCt.objects.filter(ct_input__letter="D").update(phase="L2")
    page = client.post(url, fix_data("CTH-T/D", "phase", "L3"), follow=True).content.decode()
    assert "CTH-T/D was changed since this suggestion was shown (it is now on L2)" in page
    assert LoadCt.objects.get(ct_input__letter="D").phase == "L2"
    assert not Event.objects.filter(kind=Event.CONFIGURATION).exists()


def test_it_offers_turning_the_clamp_before_setting_reversed(client, house, installer):
    location, _ = house
    with_verdicts(location, [verdict("CTH-T/D", "reversed", suggest="reverse", suggest_reversed=True)])
    client.force_login(installer)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    turned, setting = page.index("I turned the clamp"), page.index("Set “reversed” in the configuration")
    assert turned < setting
    assert "The manual advises never to rely on “reversed”" in page


def test_it_restarts_the_check_when_the_clamp_was_turned(
    client, house, installer, resets, django_capture_on_commit_callbacks
):
    location, _ = house
    with_verdicts(location, [verdict("CTH-T/D", "reversed", suggest="reverse", suggest_reversed=True)])
    client.force_login(installer)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/locations/{location.pk}/validate/fix/", fix_data("CTH-T/D", "turned"))
    load_ct = LoadCt.objects.get(ct_input__letter="D")
    assert (load_ct.phase, load_ct.reversed) == ("L1", False)
    event = Event.objects.get(kind=Event.VALIDATION)
    assert event.message == (
        "CTH-T/D (Heat pump): clamp turned around by installer (suggested by validation, confidence 0.90); "
        "the check starts again."
    )
    assert resets == [location.pk]


def test_it_sets_reversed_in_the_configuration(client, house, installer, django_capture_on_commit_callbacks):
    location, _ = house
    with_verdicts(location, [verdict("CTH-T/D", "reversed", suggest="reverse", suggest_reversed=True, confidence=0.87)])
    client.force_login(installer)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/locations/{location.pk}/validate/fix/", fix_data("CTH-T/D", "reverse", flip=True))
    assert LoadCt.objects.get(ct_input__letter="D").reversed is True
    assert Event.objects.get(kind=Event.CONFIGURATION).message == (
        "CTH-T/D (Heat pump) set reversed by installer (suggested by validation, confidence 0.87)."
    )


def test_it_moves_and_reverses_when_the_check_says_both(client, house, staff, django_capture_on_commit_callbacks):
    location, _ = house
    with_verdicts(location, [verdict("CTH-T/D", "phase", suggest="L2", suggest_reversed=True)])
    client.force_login(staff)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    assert "Move to L2 and set “reversed”" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/locations/{location.pk}/validate/fix/", fix_data("CTH-T/D", "phase", "L2", flip=True))
    load_ct = LoadCt.objects.get(ct_input__letter="D")
    assert (load_ct.phase, load_ct.reversed) == ("L2", True)
    assert "moved from L1 to L2 and set reversed by staff" in Event.objects.get(kind=Event.CONFIGURATION).message


# ----------------------------------------------------------------------------- troubleshooting


def test_it_explains_a_gateway_that_never_sent_with_its_lights(client, house, installer):
    location, _ = house
    client.force_login(installer)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    assert "No data from the gateway yet" in page
    assert "The light of the Genius" in page and "Red flashing" in page
    assert "The gateway is not connected to port B of the Power Box." in page


def test_it_uses_the_connect_lights_for_a_connect(client, house, installer):
    location, _ = house
    location.gateway.model = "connect"
    location.gateway.save()
    client.force_login(installer)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    assert "The light of the Connect" in page and "Green breathing, never activates" in page


def test_it_diagnoses_an_offline_gateway_a_missing_module_and_data_gaps(client, house, installer):
    location, _ = house
    with_verdicts(location, [], t=time.time() - 120)
    Event.objects.create(location=location, kind=Event.GATEWAY_OFFLINE, module="GW-T", message="offline")
    Event.objects.create(
        location=location,
        kind=Event.DIAGNOSIS,
        module="CTH-T",
        message="missing",
        data={"diagnosis": "module_missing", "module": "CTH-T"},
    )
    Event.objects.create(location=location, kind=Event.DATA_GAP, module="PB-T", message="Data gap: 3 frames missing")
    client.force_login(installer)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    assert "Gateway offline" in page and "No data from gateway GW-T since" in page
    assert "CT module CTH-T missing from the frames" in page and "bus termination plug" in page
    assert "1 data gap in the last 24 hours" in page and "Data gap: 3 frames missing" in page


def test_it_forgets_a_missing_module_once_it_is_back(client, house, installer):
    location, _ = house
    for diagnosis in ("module_missing", "module_back"):
        Event.objects.create(
            location=location,
            kind=Event.DIAGNOSIS,
            module="CTH-T",
            message=diagnosis,
            data={"diagnosis": diagnosis, "module": "CTH-T"},
        )
    client.force_login(installer)
    assert "missing from the frames" not in client.get(f"/locations/{location.pk}/validate/").content.decode()


def test_it_diagnoses_a_ct_reading_nothing_and_a_dead_voltage(client, house, installer):
    location, _ = house
    with_verdicts(
        location,
        [
            verdict("", "no_voltage", reason="The L2 voltage input measures nothing (0.0 V): check its wire and fuse."),
            verdict("CTH-T/D", "no_current", reason="It reads no current."),
        ],
    )
    client.force_login(installer)
    page = client.get(f"/locations/{location.pk}/validate/").content.decode()
    trouble = page[page.index('id="card-troubleshooting"') :]
    assert "A voltage input measures nothing" in trouble and "The L2 voltage input measures nothing" in trouble
    assert "No real-time measurements of 1 CT" in trouble and "Heat pump, L1" in trouble
    assert "Check the connector of the CT into the CT Hub" in trouble and "Close the CT correctly." in trouble
    assert "Dead voltage input" in page  # and on the validation card


# ----------------------------------------------------------------------------- sign-off


def test_it_signs_off_with_the_verdicts_signer_and_time(client, house, installer):
    location, token = house
    stream(client, token, heat_pump_phase="L3")
    client.force_login(installer)
    response = client.post(f"/locations/{location.pk}/validate/sign-off/", {"notes": "Heat pump left for tomorrow."})
    report = CommissioningReport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/locations/{location.pk}/reports/{report.pk}/"
    assert report.signed_by == installer and report.signed_by_name == "installer"
    assert report.installation["location"]["id"] == location.pk
    assert {v["ct"] for v in report.verdicts} >= {"CTH-T/A", "CTH-T/B", "CTH-T/C", "CTH-T/D"}
    assert report.live["t"] == live.latest(location.pk)["t"]
    assert [f["ct"] for f in report.open_findings] == ["CTH-T/D"]
    assert (
        Event.objects.get(kind=Event.VALIDATION).message == "Installation signed off by installer with 1 open finding."
    )

    page = client.get(response["Location"]).content.decode()
    assert "Signed off with 1 open finding." in page
    assert '<dd class="signer">installer</dd>' in page
    signed_at = report.signed_at.astimezone(ZoneInfo("Europe/Brussels"))
    assert f"{signed_at.day} {signed_at:%B %Y, %H:%M:%S}</time> (Europe/Brussels)" in page
    assert "Heat pump left for tomorrow." in page
    row = re.search(r'<span class="ref">CTH-T/D</span>.*?</tr>\s*<tr class="report-reason">.*?</tr>', page, re.S).group(
        0
    )
    assert "wrong phase" in row and "it is on L3, not L1 as configured" in row
    assert re.search(r'<td class="num">\d+\.\d{3}</td>', row)  # the current at sign-off
    assert "GW-T" in page and "PB-T" in page and "AC-CT-100A" in page


def test_it_keeps_the_report_as_signed_when_the_installation_changes(client, house, installer):
    location, token = house
    stream(client, token, heat_pump_phase="L1")
    client.force_login(installer)
    client.post(f"/locations/{location.pk}/validate/sign-off/")
    report = CommissioningReport.objects.get()
    LoadCt.objects.filter(ct_input__letter="D").update(phase="L2")
    page = client.get(f"/locations/{location.pk}/reports/{report.pk}/").content.decode()
    assert "Signed off with no open finding." in page
    row = re.search(r'<span class="ref">CTH-T/D</span>.*?</tr>', page, re.S).group(0)
    assert "<td>L1</td>" in row


def test_it_lists_reports_on_the_check_and_the_reports_page(client, house, installer, owner):
    location, _ = house
    client.force_login(installer)
    client.post(f"/locations/{location.pk}/validate/sign-off/")
    report = CommissioningReport.objects.get()
    link = f'href="/locations/{location.pk}/reports/{report.pk}/"'
    assert link in client.get(f"/locations/{location.pk}/validate/").content.decode()
    client.force_login(owner)
    assert link in client.get(f"/locations/{location.pk}/reports/").content.decode()


# ----------------------------------------------------------------------------- pushes


@pytest.fixture
def sent(monkeypatch):
    """Messages handed to the channel layer's groups, as (group, html)."""
    messages: list[tuple[str, str]] = []
    monkeypatch.setattr(broadcast, "send_group", lambda group, html: messages.append((group, html)))
    return messages


def test_it_pushes_the_validate_cards_only_while_a_page_is_open(house, sent):
    location, _ = house
    with_verdicts(location, [verdict("CTH-T/D", "phase", suggest="L3", suggest_reversed=False)])
    assert broadcast.push_validate(location.pk, now=100.0) is False  # nobody watches
    broadcast.mark_watched(location.pk)
    assert broadcast.push_validate(location.pk, now=102.0) is True
    assert broadcast.push_validate(location.pk, now=102.5) is False  # coalesced like the live cards
    assert broadcast.push_validate(location.pk, now=102.6, at_once=True) is True
    groups = [group for group, _ in sent]
    assert groups == [f"validate.{location.pk}.fix", f"validate.{location.pk}.read"] * 2
    fix_variant, read_variant = sent[0][1], sent[1][1]
    for message in (fix_variant, read_variant):
        assert message.lstrip().startswith('<section id="card-validation"')
        assert '<section id="card-troubleshooting"' in message
        assert "csrfmiddlewaretoken" not in message  # the page sends the token as a header
    assert "Move to L3" in fix_variant and "Move to L3" not in read_variant


def socket(location_id: int, user=None, origin: bytes = b"http://testserver") -> WebsocketCommunicator:
    return browser_socket(f"/ws/locations/{location_id}/validate/", user, origin)


@pytest.mark.django_db(transaction=True)
def test_it_accepts_the_validate_socket_of_installers_owners_and_staff_only(
    house, owner, viewer, installer, staff, stranger
):
    location, _ = house
    assert try_connect(socket(location.pk)) is False
    assert try_connect(socket(location.pk, stranger)) is False
    assert try_connect(socket(location.pk, viewer)) is False
    assert try_connect(socket(location.pk, owner, origin=b"http://evil.example")) is False
    for user in (owner, installer, staff):
        assert try_connect(socket(location.pk, user)) is True


@pytest.mark.django_db(transaction=True)
def test_it_pushes_the_validation_card_over_the_socket_as_frames_arrive(client, house, installer, owner):
    location, token = house
    installer_socket = socket(location.pk, installer)
    owner_socket = socket(location.pk, owner)

    async def run():
        assert (await installer_socket.connect(timeout=5))[0]
        assert (await owner_socket.connect(timeout=5))[0]
        try:
            assert await sync_to_async(broadcast.watched)(location.pk)  # the sockets mark the page as open
            await sync_to_async(stream)(client, token, "L3", 24, time.time() - 30)
            await sync_to_async(broadcast.push_validate)(location.pk, at_once=True)  # the newest verdicts
            received = {"installer": [], "owner": []}
            for name, communicator in (("installer", installer_socket), ("owner", owner_socket)):
                while not await communicator.receive_nothing(timeout=0.2):
                    received[name].append(await communicator.receive_from(timeout=5))
            return received
        finally:
            await installer_socket.disconnect()
            await owner_socket.disconnect()

    received = async_to_sync(run)()
    # The first frame pushed (the rest came within the coalescing second), then the newest verdicts.
    assert len(received["installer"]) >= 2 and len(received["owner"]) >= 2
    for message in received["installer"] + received["owner"]:
        assert message.lstrip().startswith('<section id="card-validation"') and 'id="card-troubleshooting"' in message
    assert "wrong phase" in received["installer"][-1] and "Move to L3" in received["installer"][-1]
    assert "wrong phase" in received["owner"][-1] and "Move to L3" not in received["owner"][-1]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_validation_card_off_the_dashboard_socket(client, house, owner):
    location, token = house
    broadcast.mark_watched(location.pk)
    dashboard = WebsocketCommunicator(
        application,
        f"/ws/locations/{location.pk}/",
        headers=[(b"origin", b"http://testserver"), (b"cookie", session_cookie(owner))],
    )

    async def run():
        assert (await dashboard.connect(timeout=5))[0]
        try:
            await sync_to_async(ingest)(client, token, star_frame(t=time.time() - 1))
            messages = [await dashboard.receive_from(timeout=5)]
            while not await dashboard.receive_nothing(timeout=0.3):
                messages.append(await dashboard.receive_from(timeout=5))
            return messages
        finally:
            await dashboard.disconnect()

    messages = async_to_sync(run)()
    assert any('id="card-live-values"' in m for m in messages)
    assert not any("card-validation" in m for m in messages)


def session_cookie(user) -> bytes:
    session = Client()
    session.force_login(user)
    return f"sessionid={session.cookies['sessionid'].value}".encode()


def test_it_renders_one_card_for_the_page_the_refresh_and_the_push(client, house, installer):
    location, token = house
    stream(client, token, heat_pump_phase="L3")
    client.force_login(installer)
    partial = client.get(
        f"/locations/{location.pk}/validate/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="card-validation"
    )
    assert partial.content.decode().lstrip().startswith('<section id="card-validation"')
    pushed = broadcast.render_validate_cards(location, live.latest(location.pk))[True]

    def strip(text: str) -> str:  # the per-request CSRF fields and render time aside
        return re.sub(r'<input type="hidden" name="csrfmiddlewaretoken"[^>]*>|data-rendered="[^"]*"|\s+', "", text)

    card = pushed[: pushed.index('<section id="card-troubleshooting"')]
    assert strip(partial.content.decode()) == strip(card)
    assert cards.VALIDATE_TEMPLATES["card-validation"] == "dashboard/_card_validation.html"


def test_it_exports_the_report_as_a_pdf(client, house, installer, viewer):
    pytest.importorskip("weasyprint")
    location, token = house
    stream(client, token, heat_pump_phase="L3")
    client.force_login(installer)
    client.post(f"/locations/{location.pk}/validate/sign-off/")
    report = CommissioningReport.objects.get()
    assert f'href="/locations/{location.pk}/reports/{report.pk}.pdf"' in (
        client.get(f"/locations/{location.pk}/reports/{report.pk}/").content.decode()
    )
    response = client.get(f"/locations/{location.pk}/reports/{report.pk}.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert (
        response["Content-Disposition"] == f'attachment; filename="commissioning-report-{location.pk}-{report.pk}.pdf"'
    )
    assert response.content.startswith(b"%PDF-") and len(response.content) > 5_000
    client.force_login(viewer)
    assert client.get(f"/locations/{location.pk}/reports/{report.pk}.pdf").status_code == 403


def test_it_lists_reports_in_the_admin_read_only(client, house, staff):
    location, _ = house
    report = a_report(location)
    client.force_login(staff)
    page = client.get("/admin/devices/commissioningreport/").content.decode()
    assert f'href="/locations/{location.pk}/reports/{report.pk}/"' in page
    assert client.get("/admin/devices/commissioningreport/add/").status_code == 403

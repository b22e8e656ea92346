"""Switching integrations on: the installation file's ``integrations`` and the admin; credentials stay hidden."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from devices.installation import InstallationError, export_installation, import_installation
from devices.models import Location
from devices.rules import MASKED_PASSWORD, check_installation

pytestmark = pytest.mark.django_db

DEMO = json.loads((Path(__file__).resolve().parents[2] / "devices" / "demo" / "demo_installation.json").read_text())
BROKER = {"url": "mqtt://ha.example.net:1883", "username": "infinity", "password": "s3cret-broker-pw"}


def demo_with(integrations: dict) -> dict:
    doc = copy.deepcopy(DEMO)
    doc["integrations"] = integrations
    return doc


def test_the_demo_gateway_is_a_genius_for_pysmappee():
    assert DEMO["gateway"]["serial"].startswith("50")


def test_integrations_are_off_unless_the_file_switches_them_on():
    location = import_installation(copy.deepcopy(DEMO)).location
    assert (location.smappee_mqtt, location.home_assistant, location.mqtt_broker_url) == (False, False, "")
    assert "integrations" not in export_installation(location)


def test_it_round_trips_integrations_with_the_password_masked():
    location = import_installation(
        demo_with({"smappee_mqtt": True, "home_assistant": True, "mqtt_broker": BROKER})
    ).location
    location.refresh_from_db()
    assert location.mqtt_broker_password == "s3cret-broker-pw"
    exported = export_installation(location)
    assert exported["integrations"] == {
        "smappee_mqtt": True,
        "home_assistant": True,
        "mqtt_broker": {"url": BROKER["url"], "username": "infinity", "password": MASKED_PASSWORD},
    }
    assert "s3cret" not in json.dumps(exported)
    # The export imported back changes nothing and keeps the stored password.
    result = import_installation(exported)
    assert result.changes == []
    location.refresh_from_db()
    assert location.mqtt_broker_password == "s3cret-broker-pw"


def test_a_masked_password_for_another_broker_is_refused():
    location = import_installation(demo_with({"smappee_mqtt": True, "mqtt_broker": BROKER})).location
    exported = export_installation(location)
    exported["integrations"]["mqtt_broker"]["url"] = "mqtt://elsewhere.example.net"
    with pytest.raises(InstallationError, match="give the password again"):
        import_installation(exported)
    location.refresh_from_db()
    assert location.mqtt_broker_url == BROKER["url"]


def test_a_masked_password_with_none_stored_is_refused():
    broker = {**BROKER, "password": MASKED_PASSWORD}
    with pytest.raises(InstallationError, match="none is stored"):
        import_installation(demo_with({"home_assistant": True, "mqtt_broker": broker}))
    assert not Location.objects.exists()


def test_switching_integrations_off_in_the_file_switches_them_off():
    location = import_installation(demo_with({"smappee_mqtt": True, "home_assistant": True})).location
    doc = export_installation(location)
    doc["integrations"] = {"smappee_mqtt": False}
    import_installation(doc)
    location.refresh_from_db()
    assert (location.smappee_mqtt, location.home_assistant) == (False, False)


@pytest.mark.parametrize(
    ("integrations", "path", "message"),
    [
        ({"smappee_mqtt": "yes"}, "integrations.smappee_mqtt", "Expected true or false"),
        ({"homeassistant": True}, "integrations.homeassistant", "Unknown key"),
        ({"mqtt_broker": {"url": "http://ha:1883"}}, "integrations.mqtt_broker.url", "mqtt:// or mqtts://"),
        ({"mqtt_broker": {"url": "mqtt://user:pw@ha:1883"}}, "integrations.mqtt_broker.url", "not in the URL"),
        ({"mqtt_broker": {"url": "mqtt://ha:99999"}}, "integrations.mqtt_broker.url", "Not a broker URL"),
        ({"mqtt_broker": {"url": "mqtt://ha/x"}}, "integrations.mqtt_broker.url", "without a path"),
        ({"mqtt_broker": {"url": "mqtt://"}}, "integrations.mqtt_broker.url", "names no host"),
        (
            {"mqtt_broker": {"url": "mqtt://ha", "password": "pw"}},
            "integrations.mqtt_broker.username",
            "needs a username",
        ),
        (
            {"mqtt_broker": {"url": "mqtt://ha", "password": "p" * 129}},
            "integrations.mqtt_broker.password",
            "At most 128",
        ),
        ({"mqtt_broker": {"url": "mqtt://" + "h" * 300}}, "integrations.mqtt_broker.url", "At most 200"),
        ({"mqtt_broker": {"username": "u"}}, "integrations.mqtt_broker.url", 'Missing "url"'),
        ([], "integrations", "Expected an object"),
    ],
)
def test_it_refuses_bad_integrations_with_a_clear_error(integrations, path, message):
    violations = check_installation(demo_with(integrations))
    assert [v.path for v in violations if v.is_error] == [path], violations
    assert message in violations[0].message
    with pytest.raises(InstallationError):
        import_installation(demo_with(integrations))
    assert not Location.objects.exists()


def test_the_admin_switches_integrations_on_and_never_shows_the_password(admin_client):
    location = import_installation(demo_with({"mqtt_broker": BROKER})).location
    url = f"/admin/devices/location/{location.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "s3cret" not in html and MASKED_PASSWORD in html
    assert 'name="smappee_mqtt"' in html and 'name="home_assistant"' in html

    form_class = admin_form_class()
    data = {
        "name": location.name,
        "address": location.address,
        "timezone": location.timezone,
        "topology": location.topology,
        "frequency_hz": location.frequency_hz,
        "smappee_mqtt": "on",
        "home_assistant": "on",
        "mqtt_broker_url": BROKER["url"],
        "mqtt_broker_username": "infinity",
        "mqtt_broker_password": "",
    }
    form = form_class(data, instance=Location.objects.get(pk=location.pk))
    assert form.is_valid(), form.errors
    form.save()
    location.refresh_from_db()
    assert (location.smappee_mqtt, location.home_assistant) == (True, True)
    assert location.mqtt_broker_password == "s3cret-broker-pw"  # left empty: the stored one is kept

    # Another broker without the password again is refused (the old password would go to it).
    form = form_class({**data, "mqtt_broker_url": "mqtt://elsewhere.example.net"}, instance=location)
    assert not form.is_valid()
    assert "give the password again" in str(form.errors["mqtt_broker_password"])
    # A bad URL gets the installation rule's message.
    form = form_class({**data, "mqtt_broker_url": "http://x", "mqtt_broker_password": "new"}, instance=location)
    assert not form.is_valid() and "mqtt:// or mqtts://" in str(form.errors)


def admin_form_class():
    from django.contrib import admin
    from django.test import RequestFactory

    from devices.admin import LocationAdmin

    request = RequestFactory().get("/")
    request.user = type("Admin", (), {"is_active": True, "is_staff": True, "has_perm": lambda *a: True})()
    return LocationAdmin(Location, admin.site).get_form(request, obj=None)

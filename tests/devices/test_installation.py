"""Installation files against the database: import, update, identity, export, round trip."""

from __future__ import annotations

import pytest

from devices.installation import (
    InstallationError,
    export_installation,
    import_installation,
    location_violations,
    validate_installation,
)
from devices.models import (
    CtInput,
    CtModule,
    DigitalInput,
    Event,
    Gateway,
    InputModule,
    Load,
    LoadCt,
    Location,
    Membership,
    OutputModule,
    PowerBox,
    Relay,
    hash_token,
)
from tests.devices.conftest import base_doc

pytestmark = pytest.mark.django_db

MODELS = (Location, Gateway, PowerBox, CtModule, CtInput, InputModule, DigitalInput, OutputModule, Relay, Load, LoadCt)


def row_ids() -> dict[str, list[int]]:
    """The ids of every installation row, per model."""
    return {model.__name__: sorted(model.objects.values_list("pk", flat=True)) for model in MODELS}


def row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (*MODELS, Event, Membership)}


def other_house(serial_prefix: str = "X") -> dict:
    doc = base_doc()
    doc["location"]["name"] = "Old house"
    doc["gateway"]["serial"] = f"GW-{serial_prefix}"
    doc["powerbox"]["serial"] = f"PB-{serial_prefix}"
    doc["ct_hubs"][0]["serial"] = f"CTH-{serial_prefix}"
    for load in doc["loads"]:
        for ct in load["cts"]:
            ct["ct"] = ct["ct"].replace("CTH-0001", f"CTH-{serial_prefix}")
    doc["input_modules"][0]["serial"] = f"INP-{serial_prefix}"
    doc["output_modules"][0]["serial"] = f"OUT-{serial_prefix}"
    return doc


def test_it_creates_a_location_with_every_module():
    result = import_installation(base_doc())

    location = result.location
    assert result.created and result.changed
    assert (location.name, location.topology, location.frequency_hz) == ("Demo house", "3P+N", 50)
    assert location.gateway.serial == "GW-0001"
    assert location.powerbox.serial == "PB-0001"
    assert [i.ref for i in CtInput.objects.filter(module__powerbox__location=location)] == [
        "CTH-0001/A",
        "CTH-0001/B",
        "CTH-0001/C",
        "CTH-0001/D",
    ]
    grid = location.loads.get(name="Grid")
    assert [(lc.ct_input.ref, lc.phase) for lc in grid.cts.all()] == [
        ("CTH-0001/A", "L1"),
        ("CTH-0001/B", "L2"),
        ("CTH-0001/C", "L3"),
    ]
    gas = DigitalInput.objects.get(module__serial="INP-0001", number="1")
    assert (gas.name, gas.mode, gas.unit, gas.pulses_per_unit) == ("Gas", "pulse", "m3", 100.0)
    assert sorted(Relay.objects.values_list("number", "name")) == [("1", "Boiler"), ("2", "Pump")]


def test_it_issues_a_token_for_a_new_gateway_and_keeps_only_its_hash():
    result = import_installation(base_doc())

    gateway = result.location.gateway
    assert result.gateway_token
    assert gateway.token_hash == hash_token(result.gateway_token)
    assert result.gateway_token not in gateway.token_hash
    assert Gateway.for_token(result.gateway_token) == gateway


def test_it_logs_a_configuration_event_when_it_changes_something():
    location = import_installation(base_doc()).location

    event = Event.objects.get(location=location)
    assert event.kind == Event.CONFIGURATION
    assert event.message == "Installation 'Demo house' created from an installation file."
    assert "added load 'Grid'" in event.data["changes"]


def test_it_changes_nothing_when_the_same_file_is_imported_twice():
    first = import_installation(base_doc())
    ids, token_hash, events = row_ids(), Gateway.objects.get().token_hash, Event.objects.count()

    second = import_installation(base_doc())

    assert (second.location.pk, second.created, second.changed, second.gateway_token) == (
        first.location.pk,
        False,
        False,
        None,
    )
    assert row_ids() == ids
    assert Gateway.objects.get().token_hash == token_hash
    assert Event.objects.count() == events


def test_it_exports_the_imported_file_with_the_location_id():
    doc = base_doc()
    location = import_installation(doc).location

    exported = export_installation(location)

    doc["location"]["id"] = location.pk
    assert exported == doc
    assert list(exported["location"]) == ["id", "name", "address", "timezone", "topology", "frequency"]


def test_it_round_trips_import_export_import():
    doc = base_doc()
    doc["gateway"].update(connectivity="wifi", wifi={"ssid": "HomeNet", "password": "s3cret!"})
    doc["powerbox"].update(bus_a_length_m=2.5, bus_b_length_m=40)
    doc["solid_core_cts"] = [{"serial": "SC-0001", "inputs": {"A": "AC-CT-S-50A", "B": "AC-CT-S-50A"}}]
    doc["input_modules"][0]["inputs"]["2"] = {"name": "Door", "mode": "status"}
    doc["loads"].append(
        {"name": "Solar", "kind": "solar", "cts": [{"ct": "SC-0001/B", "phase": "L2", "reversed": True}]}
    )
    first = import_installation(doc)
    ids = row_ids()

    exported = export_installation(first.location)
    again = import_installation(exported)

    assert exported == {**doc, "location": {"id": first.location.pk, **doc["location"]}}
    assert (again.location.pk, again.changed, again.gateway_token) == (first.location.pk, False, None)
    assert row_ids() == ids
    assert export_installation(again.location) == exported


def test_it_omits_empty_optional_fields_on_export():
    doc = base_doc()
    del doc["location"]["address"]
    doc["input_modules"][0]["inputs"]["1"] = {"name": "Door", "mode": "status"}
    location = import_installation(doc).location

    exported = export_installation(location)

    assert "address" not in exported["location"]
    assert "wifi" not in exported["gateway"]
    assert exported["powerbox"] == {"serial": "PB-0001"}
    assert exported["input_modules"][0]["inputs"] == {"1": {"name": "Door", "mode": "status"}}
    assert all("reversed" not in ct for load in exported["loads"] for ct in load["cts"])


def test_it_updates_a_location_to_match_the_file_keeping_ids_of_unchanged_rows():
    location = import_installation(base_doc()).location
    grid_cts = {lc.ct_input.ref: lc.pk for lc in LoadCt.objects.filter(load__name="Grid")}
    grid, heat_pump = Load.objects.get(name="Grid"), Load.objects.get(name="Heat pump")
    hub = CtModule.objects.get()
    token_hash = Gateway.objects.get().token_hash

    doc = base_doc()
    doc["location"]["id"] = location.pk
    doc["ct_hubs"][0]["inputs"]["D"] = "AC-CT-200A"
    doc["ct_hubs"].append({"serial": "CTH-0002", "inputs": {"A": "AC-CT-50A"}})
    doc["loads"][1] = {"name": "Solar", "kind": "solar", "cts": [{"ct": "CTH-0001/D", "phase": "L2"}]}
    doc["loads"].append({"name": "Kitchen", "kind": "circuit", "cts": [{"ct": "CTH-0002/A", "phase": "L3"}]})
    doc["input_modules"][0]["inputs"]["1"]["name"] = "Gas meter"
    doc["output_modules"] = []
    result = import_installation(doc)

    assert (result.location.pk, result.created, result.changed, result.gateway_token) == (
        location.pk,
        False,
        True,
        None,
    )
    assert Load.objects.get(name="Grid").pk == grid.pk
    assert {lc.ct_input.ref: lc.pk for lc in LoadCt.objects.filter(load__name="Grid")} == grid_cts
    assert not Load.objects.filter(pk=heat_pump.pk).exists()
    assert CtModule.objects.get(serial="CTH-0001").pk == hub.pk
    assert CtInput.objects.get(module=hub, letter="D").ct_type == "AC-CT-200A"
    assert [m.serial for m in CtModule.objects.order_by("position")] == ["CTH-0001", "CTH-0002"]
    assert DigitalInput.objects.get().name == "Gas meter"
    assert not OutputModule.objects.exists() and not Relay.objects.exists()
    assert [load.name for load in Load.objects.order_by("position")] == ["Grid", "Solar", "Kitchen"]
    assert Gateway.objects.get().token_hash == token_hash
    assert export_installation(location) == doc
    event = Event.objects.filter(location=location).first()
    assert event.message.startswith("Installation updated from an installation file: ")
    assert "removed load 'Heat pump'" in event.data["changes"]
    assert "removed Output module OUT-0001" in event.data["changes"]


def test_it_moves_a_ct_input_from_one_load_to_another():
    location = import_installation(base_doc()).location
    doc = export_installation(location)
    doc["loads"][0]["cts"].pop()  # CTH-0001/C leaves the grid…
    doc["loads"][1]["cts"].append({"ct": "CTH-0001/C", "phase": "L3"})  # …and joins the heat pump

    import_installation(doc)

    assert LoadCt.objects.get(ct_input__letter="C").load.name == "Heat pump"
    assert export_installation(location) == doc


def test_it_writes_nothing_when_a_rule_is_broken():
    location = import_installation(base_doc()).location
    before, ids = row_counts(), row_ids()
    doc = export_installation(location)
    doc["location"]["name"] = "Renamed"
    doc["loads"].append({"name": "Sauna", "kind": "appliance", "cts": [{"ct": "CTH-0001/A", "phase": "L1"}]})

    with pytest.raises(InstallationError) as raised:
        import_installation(doc)

    assert [str(v) for v in raised.value.errors] == [
        "loads[2].cts[0].ct: CT input CTH-0001/A is used by two loads, 'Grid' and 'Sauna'; a CT measures one load only."
    ]
    assert row_counts() == before and row_ids() == ids
    assert Location.objects.get().name == "Demo house"


def test_it_writes_nothing_for_a_new_location_with_errors():
    doc = base_doc()
    doc["gateway"]["model"] = "connect"

    with pytest.raises(InstallationError) as raised:
        import_installation(doc)

    assert {v.path for v in raised.value.errors} == {"input_modules[0]", "output_modules[0]"}
    assert all(count == 0 for count in row_counts().values())


def test_it_reports_every_violation_at_once():
    doc = base_doc()
    doc["location"]["frequency"] = 55
    doc["gateway"].update(connectivity="wifi", wifi={"ssid": "My Home", "password": ""})
    doc["loads"][1]["cts"][0]["phase"] = "L5"

    with pytest.raises(InstallationError) as raised:
        import_installation(doc)

    assert [v.path for v in raised.value.violations] == [
        "location.frequency",
        "gateway.wifi.ssid",
        "gateway.wifi.password",
        "loads[1].cts[0].phase",
    ]
    assert "4 errors" in str(raised.value)


def test_it_returns_warnings_and_imports_anyway():
    doc = base_doc()
    doc["loads"][1]["cts"][0]["reversed"] = True

    result = import_installation(doc)

    assert [v.path for v in result.warnings] == ["loads[1].cts[0].reversed"]
    assert LoadCt.objects.get(ct_input__letter="D").reversed


def test_it_updates_the_location_that_owns_the_gateway_when_the_file_has_no_id():
    location = import_installation(base_doc()).location
    doc = base_doc()
    doc["location"]["name"] = "Demo house (renovated)"

    result = import_installation(doc)

    assert (result.location.pk, result.created, result.changed) == (location.pk, False, True)
    assert Location.objects.get().name == "Demo house (renovated)"


def test_it_updates_the_location_named_by_its_id_even_with_a_new_gateway():
    location = import_installation(base_doc()).location
    old_token_hash = Gateway.objects.get().token_hash
    doc = export_installation(location)
    doc["gateway"]["serial"] = "GW-0002"

    result = import_installation(doc)

    gateway = Gateway.objects.get()
    assert (result.location.pk, gateway.location_id, gateway.serial) == (location.pk, location.pk, "GW-0002")
    assert result.gateway_token and gateway.token_hash == hash_token(result.gateway_token) != old_token_hash


def test_it_refuses_a_gateway_that_belongs_to_another_location():
    old = import_installation(other_house()).location
    location = import_installation(base_doc()).location
    doc = export_installation(location)
    doc["gateway"]["serial"] = "GW-X"
    before = row_counts()

    with pytest.raises(InstallationError) as raised:
        import_installation(doc)

    assert [str(v) for v in raised.value.errors] == [
        f"gateway.serial: Gateway GW-X is installed at location 'Old house' (id {old.pk}). A gateway belongs to one "
        "location at a time: remove it there and factory-reset it before installing it here."
    ]
    assert row_counts() == before


def test_it_refuses_a_module_that_belongs_to_another_location():
    old = import_installation(other_house()).location
    doc = base_doc()
    doc["ct_hubs"].append({"serial": "CTH-X", "inputs": {}})

    violations = validate_installation(doc)

    assert [str(v) for v in violations] == [
        f"ct_hubs[1].serial: CT Hub CTH-X is installed at location 'Old house' (id {old.pk}). A module belongs to "
        "one location at a time: remove it there before installing it here."
    ]


def test_it_refuses_an_unknown_location_id():
    doc = base_doc()
    doc["location"]["id"] = 999

    with pytest.raises(InstallationError) as raised:
        import_installation(doc)

    assert [v.path for v in raised.value.errors] == ["location.id"]
    assert not Location.objects.exists()


def test_it_rotates_the_token_on_request_and_the_old_one_stops_working():
    first = import_installation(base_doc())

    second = import_installation(base_doc(), rotate_token=True)

    assert second.gateway_token and second.gateway_token != first.gateway_token
    assert second.changed is False
    assert Gateway.for_token(first.gateway_token) is None
    assert Gateway.for_token(second.gateway_token) == first.location.gateway
    assert (
        "issued a new ingest token for gateway GW-0001"
        in Event.objects.filter(location=first.location).first().data["changes"]
    )


def test_it_keeps_a_location_per_gateway():
    import_installation(other_house())
    import_installation(base_doc())
    import_installation(base_doc())

    assert sorted(Location.objects.values_list("name", flat=True)) == ["Demo house", "Old house"]


def test_it_lists_the_violations_of_a_stored_location():
    location = import_installation(base_doc()).location
    LoadCt.objects.filter(ct_input__letter="D").update(phase="L3", reversed=True)
    Location.objects.filter(pk=location.pk).update(topology="2P+N")

    findings = [str(v) for v in location_violations(Location.objects.get())]

    assert findings == [
        "loads[0].cts[2].phase: Phase L3 does not exist in a 2P+N installation (split phase 2×120 V, Americas): "
        "use L1 or L2.",
        "loads[1].cts[0].phase: Phase L3 does not exist in a 2P+N installation (split phase 2×120 V, Americas): "
        "use L1 or L2.",
        "loads[1].cts[0].reversed: CT CTH-0001/D of load 'Heat pump' is marked reversed: the manual advises never "
        "to rely on 'reversed': turn the clamp so its arrow points with the current (K → L).",
    ]


def test_it_imports_the_demo_installation():
    import json

    from devices.management.commands.load_demo import DEMO_FILE

    doc = json.loads(DEMO_FILE.read_text())
    result = import_installation(doc)

    assert validate_installation(doc) == []
    assert result.location.name == "Demo house"
    assert list(result.location.loads.values_list("name", flat=True)) == [
        "Grid",
        "Solar",
        "EV charger",
        "Heat pump",
        "Kitchen",
    ]
    assert export_installation(result.location) == {**doc, "location": {"id": result.location.pk, **doc["location"]}}


def test_it_keeps_a_renamed_load_that_keeps_its_cts():
    location = import_installation(base_doc()).location
    heat_pump = Load.objects.get(name="Heat pump")
    doc = export_installation(location)
    doc["loads"][1]["name"] = "Air/water heat pump"

    result = import_installation(doc)

    assert result.changed
    assert Load.objects.get(name="Air/water heat pump").pk == heat_pump.pk
    assert "changed load 'Air/water heat pump' (name)" in result.changes

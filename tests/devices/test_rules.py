"""The manual's installation rules, one violating installation file per rule (no database)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devices import rules
from devices.rules import Context, Owner, Violation, check_installation
from tests.devices.conftest import base_doc

SSID_ALLOWED = "Allowed are a–z, A–Z, 0–9 and !#$%&'()*+-./:;<>?@[]^_`{|}~ (manual, Addendum 2)."
PASSWORD_ALLOWED = "Allowed are a–z, A–Z, 0–9 and !#$%&'()*+-./:;<>?@[]^_`{|}~\"\\ (manual, Addendum 2)."
TWO_WATTMETER = (
    "In a 3P installation (delta 3×230 V, no neutral) a three-phase load is measured with two CTs, on L1 and L2 "
    "(two-wattmeter method: P = P(L1) + P(L2))"
)


def hub(serial: str, letters: str = "ABCD", ct_type: str = "AC-CT-50A") -> dict:
    return {"serial": serial, "inputs": dict.fromkeys(letters, ct_type)}


def wifi(ssid: str = "HomeNet", password: str = "s3cret-key") -> dict:
    return {"ssid": ssid, "password": password}


def set_gateway(**values) -> Callable[[dict], None]:
    return lambda d: d["gateway"].update(values)


def set_location(**values) -> Callable[[dict], None]:
    return lambda d: d["location"].update(values)


def single_phase_loads(d: dict, *phases: str) -> None:
    """Grid on CTH-0001/A (L1) and one single-CT load per phase given, on B, C, D."""
    d["loads"] = [{"name": "Grid", "kind": "grid", "cts": [{"ct": "CTH-0001/A", "phase": "L1"}]}]
    for letter, phase in zip("BCD", phases, strict=False):
        d["loads"].append(
            {"name": f"Circuit {letter}", "kind": "circuit", "cts": [{"ct": f"CTH-0001/{letter}", "phase": phase}]}
        )


def delta(*phases: str) -> Callable[[dict], None]:
    """A delta installation whose grid has CTs on ``phases`` (on CTH-0001/A, B, C…)."""

    def mutate(d: dict) -> None:
        d["location"]["topology"] = "3P"
        d["loads"] = [
            {
                "name": "Grid",
                "kind": "grid",
                "cts": [
                    {"ct": f"CTH-0001/{letter}", "phase": phase} for letter, phase in zip("ABCD", phases, strict=False)
                ],
            }
        ]

    return mutate


def drop(section: str, key: str) -> Callable[[dict], None]:
    return lambda d: d[section].pop(key)


# (mutation of the base document, path, exact message) — every rule of SPEC sections 2–3.
CASES: dict[str, tuple[Callable[[dict], None], str, str]] = {
    "eight CT Hubs on a Power Box": (
        lambda d: d["ct_hubs"].extend(hub(f"CTH-10{i}") for i in range(7)),
        "ct_hubs[7]",
        "A Power Box takes at most 7 CT Hubs or Solid Core 3-Phase CTs on bus A; this installation has 8.",
    ),
    "CT Hubs and solid-core CTs count together": (
        lambda d: (
            d["ct_hubs"].extend(hub(f"CTH-10{i}") for i in range(5)),
            d["solid_core_cts"].extend(hub(f"SC-{i}", "ABC", "AC-CT-S-50A") for i in range(2)),
        ),
        "solid_core_cts[1]",
        "A Power Box takes at most 7 CT Hubs or Solid Core 3-Phase CTs on bus A; this installation has 8.",
    ),
    "eleven Input and Output modules": (
        lambda d: d["input_modules"].extend({"serial": f"INP-10{i}", "inputs": {}} for i in range(9)),
        "output_modules[0]",
        "A gateway takes at most 10 Input and Output modules on bus B; this installation has 11.",
    ),
    "Input modules with a Connect": (
        set_gateway(model="connect"),
        "input_modules[0]",
        "Input and Output modules only work with a Genius (MOD-GW-1) gateway; "
        "this installation's gateway is a Connect (MOD-GW-3).",
    ),
    "Output modules with a Wi-Fi Connect": (
        set_gateway(model="wifi-connect", connectivity="wifi", wifi=wifi()),
        "output_modules[0]",
        "Input and Output modules only work with a Genius (MOD-GW-1) gateway; "
        "this installation's gateway is a Wi-Fi Connect (MOD-GW-2).",
    ),
    "a Connect on 3G/4G": (
        set_gateway(model="connect", connectivity="cellular"),
        "gateway.connectivity",
        "A Connect (MOD-GW-3) connects over Ethernet (ethernet) or Wi-Fi (wifi) only; "
        "3G/4G dongle (cellular) needs a Genius (MOD-GW-1).",
    ),
    "a Wi-Fi Connect on Ethernet": (
        set_gateway(model="wifi-connect"),
        "gateway.connectivity",
        "A Wi-Fi Connect (MOD-GW-2) connects over Wi-Fi (wifi) only; "
        "Ethernet (ethernet) needs a Genius (MOD-GW-1) or Connect (MOD-GW-3).",
    ),
    "an unknown connectivity": (
        set_gateway(connectivity="lte"),
        "gateway.connectivity",
        "Unknown connectivity 'lte'; use ethernet (Ethernet), wifi (Wi-Fi) or cellular (3G/4G dongle).",
    ),
    "an unknown gateway model": (
        set_gateway(model="smart"),
        "gateway.model",
        "Unknown gateway model 'smart'; use genius for a Genius (MOD-GW-1), connect for a Connect (MOD-GW-3) "
        "or wifi-connect for a Wi-Fi Connect (MOD-GW-2).",
    ),
    "Wi-Fi without an SSID": (
        set_gateway(connectivity="wifi"),
        "gateway.wifi.ssid",
        "The gateway connects over Wi-Fi: give the SSID of the (visible, 2.4 GHz) network.",
    ),
    "Wi-Fi without a password (an open network)": (
        set_gateway(connectivity="wifi", wifi={"ssid": "HomeNet"}),
        "gateway.wifi.password",
        "The gateway connects over Wi-Fi: give the network's WPA/WPA2 password; "
        "open networks without security are not supported (manual, Addendum 2).",
    ),
    "an SSID with a space": (
        set_gateway(connectivity="wifi", wifi=wifi(ssid="My Home")),
        "gateway.wifi.ssid",
        f"The SSID contains a character the gateway does not accept: ' ' (space). {SSID_ALLOWED}",
    ),
    "an SSID with a double quote and an accent": (
        set_gateway(connectivity="wifi", wifi=wifi(ssid='Café"5')),
        "gateway.wifi.ssid",
        f"The SSID contains characters the gateway does not accept: 'é', '\"' (double quote). {SSID_ALLOWED}",
    ),
    "a password with an accent": (
        set_gateway(connectivity="wifi", wifi=wifi(password="pässwort")),
        "gateway.wifi.password",
        f"The Wi-Fi password contains a character the gateway does not accept: 'ä'. {PASSWORD_ALLOWED}",
    ),
    "a WPA2 key over 20 characters": (
        set_gateway(connectivity="wifi", wifi=wifi(password="a" * 21)),
        "gateway.wifi.password",
        "The Wi-Fi password has 21 characters; the gateway takes a WPA2 key of at most 20 characters "
        "(manual, Addendum 2).",
    ),
    "a CT bus over 100 m": (
        lambda d: d["powerbox"].update(bus_a_length_m=120),
        "powerbox.bus_a_length_m",
        "The CT bus (A) may be at most 100 m long in total (manual, section 13); this one is 120 m.",
    ),
    "a gateway bus over 500 m": (
        lambda d: d["powerbox"].update(bus_b_length_m=512.5),
        "powerbox.bus_b_length_m",
        "The gateway–Power Box bus (B) may be at most 500 m long (manual, section 13); this one is 512.5 m.",
    ),
    "a negative cable length": (
        lambda d: d["powerbox"].update(bus_a_length_m=-1),
        "powerbox.bus_a_length_m",
        "A cable length cannot be negative; got -1 m.",
    ),
    "one CT input for two loads": (
        lambda d: d["loads"][1]["cts"].__setitem__(0, {"ct": "CTH-0001/A", "phase": "L1"}),
        "loads[1].cts[0].ct",
        "CT input CTH-0001/A is used by two loads, 'Grid' and 'Heat pump'; a CT measures one load only.",
    ),
    "one CT input twice in a load": (
        lambda d: d["loads"][0]["cts"].__setitem__(2, {"ct": "CTH-0001/A", "phase": "L3"}),
        "loads[0].cts[2].ct",
        "CT input CTH-0001/A appears twice in load 'Grid'.",
    ),
    "a CT of an unknown module": (
        lambda d: d["loads"][1]["cts"][0].update(ct="CTH-9999/D"),
        "loads[1].cts[0].ct",
        "'CTH-9999/D' names no module of this installation: there is no CT Hub or Solid Core 3-Phase CT "
        "with serial 'CTH-9999' in ct_hubs or solid_core_cts.",
    ),
    "a CT reference without a letter": (
        lambda d: d["loads"][1]["cts"][0].update(ct="CTH-0001D"),
        "loads[1].cts[0].ct",
        "A CT reference is <module serial>/<input letter>, e.g. 'CTH-0001/A'; got 'CTH-0001D'.",
    ),
    "a CT on input E of a hub": (
        lambda d: d["loads"][1]["cts"][0].update(ct="CTH-0001/E"),
        "loads[1].cts[0].ct",
        "A CT Hub has inputs A, B, C and D; there is no input 'E'.",
    ),
    "a CT on input D of a solid-core CT": (
        lambda d: (
            d["solid_core_cts"].append(hub("SC-0001", "ABC", "AC-CT-S-100A")),
            d["loads"][1]["cts"][0].update(ct="SC-0001/D"),
        ),
        "loads[1].cts[0].ct",
        "A Solid Core 3-Phase CT has inputs A, B and C; there is no input 'D'.",
    ),
    "a CT on an input without a configured CT": (
        lambda d: d["ct_hubs"][0]["inputs"].pop("D"),
        "loads[1].cts[0].ct",
        'Input D of CT Hub CTH-0001 has no CT configured: add "D" with its CT type to ct_hubs[0].inputs.',
    ),
    "a hub input E": (
        lambda d: d["ct_hubs"][0]["inputs"].update(E="AC-CT-50A"),
        "ct_hubs[0].inputs.E",
        "A CT Hub has inputs A, B, C and D; there is no input 'E'.",
    ),
    "a solid-core CT input D": (
        lambda d: d["solid_core_cts"].append(hub("SC-0001", "ABCD", "AC-CT-S-100A")),
        "solid_core_cts[0].inputs.D",
        "A Solid Core 3-Phase CT has inputs A, B and C; there is no input 'D'.",
    ),
    "a CT type the manual does not list": (
        lambda d: d["ct_hubs"][0]["inputs"].update(D="AC-CT-75A"),
        "ct_hubs[0].inputs.D",
        "'AC-CT-75A' is not a CT type from the manual; use one of AC-CT-50A, AC-CT-100A, AC-CT-200A, AC-CT-400A, "
        "AC-CT-S-50A, AC-CT-S-100A, AC-CT-S-200A, AC-RSCT-12CM, AC-RSCT-19CM.",
    ),
    "L2 in a single-phase installation": (
        lambda d: (set_location(topology="1P")(d), single_phase_loads(d, "L2")),
        "loads[1].cts[0].phase",
        "Phase L2 does not exist in a 1P installation (single phase 1×230 V): use L1.",
    ),
    "L3 in a split-phase installation": (
        lambda d: (set_location(topology="2P+N", frequency=60)(d), single_phase_loads(d, "L1", "L3")),
        "loads[2].cts[0].phase",
        "Phase L3 does not exist in a 2P+N installation (split phase 2×120 V, Americas): use L1 or L2.",
    ),
    "a phase that does not exist anywhere": (
        lambda d: d["loads"][1]["cts"][0].update(phase="L4"),
        "loads[1].cts[0].phase",
        "A CT's phase is L1, L2 or L3; got 'L4'.",
    ),
    "two CTs of a load on one phase": (
        lambda d: d["loads"][0]["cts"][2].update(phase="L1"),
        "loads[0].cts[2].phase",
        "Load 'Grid' has two CTs on phase L1; each CT of a load measures a different phase.",
    ),
    "two CTs of a load on one phase in delta": (
        delta("L1", "L1"),
        "loads[0].cts[1].phase",
        "Load 'Grid' has two CTs on phase L1; each CT of a load measures a different phase.",
    ),
    "a delta three-phase load on L1 and L3": (
        delta("L1", "L3"),
        "loads[0].cts[1].phase",
        f"{TWO_WATTMETER}; load 'Grid' has a CT on L3. A single-phase load powered by L1 and L2 has one CT, "
        "clamped around L1 and configured on L3.",
    ),
    "a delta load with three CTs": (
        delta("L1", "L2", "L3"),
        "loads[0].cts[2]",
        f"{TWO_WATTMETER}; load 'Grid' has 3 CTs. Keep the CTs on L1 and L2 only.",
    ),
    "a gateway installed at another location": (
        lambda d: None,
        "gateway.serial",
        "Gateway GW-0001 is installed at location 'Old house' (id 3). A gateway belongs to one location at a time: "
        "remove it there and factory-reset it before installing it here.",
    ),
    "a module installed at another location": (
        lambda d: None,
        "ct_hubs[0].serial",
        "CT Hub CTH-0001 is installed at location 'Old house' (id 3). A module belongs to one location at a time: "
        "remove it there before installing it here.",
    ),
    "an unknown location id": (
        set_location(id=99),
        "location.id",
        "No location with id 99 exists. Remove location.id to create a new location.",
    ),
    "an input module input 5": (
        lambda d: d["input_modules"][0]["inputs"].update({"5": {"name": "Water", "mode": "status"}}),
        "input_modules[0].inputs.5",
        "An Input module has inputs 1, 2, 3 and 4; there is no input '5'.",
    ),
    "a pulse input without unit": (
        lambda d: d["input_modules"][0]["inputs"]["1"].pop("unit"),
        "input_modules[0].inputs.1.unit",
        "Input 'Gas' counts pulses: give the unit it counts, e.g. m3, l or kWh.",
    ),
    "a pulse input without pulses per unit": (
        lambda d: d["input_modules"][0]["inputs"]["1"].pop("pulses_per_unit"),
        "input_modules[0].inputs.1.pulses_per_unit",
        "Input 'Gas' counts pulses: give pulses_per_unit, e.g. 100 pulses per m3.",
    ),
    "a pulse input with zero pulses per unit": (
        lambda d: d["input_modules"][0]["inputs"]["1"].update(pulses_per_unit=0),
        "input_modules[0].inputs.1.pulses_per_unit",
        "Input 'Gas' counts pulses: pulses_per_unit must be more than 0; got 0.",
    ),
    "an unknown input mode": (
        lambda d: d["input_modules"][0]["inputs"]["1"].update(mode="analog"),
        "input_modules[0].inputs.1.mode",
        "An input counts pulses (pulse) or reports its state, low or high (status); got 'analog'.",
    ),
    "an output 3": (
        lambda d: d["output_modules"][0]["outputs"].update({"3": {"name": "Gate"}}),
        "output_modules[0].outputs.3",
        "An Output module has outputs 1 and 2; there is no output '3'.",
    ),
    "an unknown output mode": (
        lambda d: d["output_modules"][0].update(mode="parallel"),
        "output_modules[0].mode",
        "An Output module's relays are used separately, outputs 1 and 2 (separate), or together, 1 & 2 "
        "(combined); got 'parallel'.",
    ),
    "two modules with one serial": (
        lambda d: d["input_modules"][0].update(serial="CTH-0001"),
        "input_modules[0].serial",
        "Serial 'CTH-0001' is used twice (also at ct_hubs[0].serial); every module has its own serial.",
    ),
    "a serial with a slash": (
        lambda d: d["powerbox"].update(serial="PB/1"),
        "powerbox.serial",
        "A serial cannot contain '/' ('PB/1'): CT and input references are written <serial>/<input>.",
    ),
    "an unknown topology": (
        set_location(topology="3PN"),
        "location.topology",
        "Unknown topology '3PN'; use 1P (single phase 1×230 V), 3P+N (star 3×400 V with neutral), "
        "3P (delta 3×230 V, no neutral), 2P+N (split phase 2×120 V, Americas) "
        "or 3P+N-208 (star 3×208 V with neutral, Americas).",
    ),
    "a frequency of 55 Hz": (
        set_location(frequency=55),
        "location.frequency",
        "The nominal frequency is 50 or 60 Hz; got 55.",
    ),
    "an unknown time zone": (
        set_location(timezone="Europe/Bruxelles"),
        "location.timezone",
        "'Europe/Bruxelles' is not a time zone name such as Europe/Brussels.",
    ),
    "an unknown load kind": (
        lambda d: d["loads"][1].update(kind="heater"),
        "loads[1].kind",
        "Unknown load kind 'heater'; use one of grid, solar, battery, consumption, circuit, appliance.",
    ),
    "two loads with one name": (
        lambda d: d["loads"][1].update(name="Grid"),
        "loads[1].name",
        "Two loads are named 'Grid'; every load of a location needs its own name.",
    ),
    # Structure.
    "a missing location name": (
        drop("location", "name"),
        "location.name",
        'Missing "name".',
    ),
    "a missing gateway": (
        lambda d: d.pop("gateway"),
        "gateway",
        'Missing "gateway".',
    ),
    "a frequency written as text": (
        set_location(frequency="50"),
        "location.frequency",
        "Expected a whole number, got a string.",
    ),
    "a misspelt key": (
        lambda d: d.update(ct_hub=[]),
        "ct_hub",
        "Unknown key 'ct_hub'; expected 'location', 'gateway', 'powerbox', 'ct_hubs', 'solid_core_cts', "
        "'input_modules', 'output_modules', 'loads' or 'integrations'.",
    ),
    "loads that are not a list": (
        lambda d: d.update(loads={"Grid": {}}),
        "loads",
        "Expected a list, got an object.",
    ),
    "an empty serial": (
        set_gateway(serial=" "),
        "gateway.serial",
        "Must not be empty.",
    ),
    "a reversed flag written as text": (
        lambda d: d["loads"][1]["cts"][0].update(reversed="yes"),
        "loads[1].cts[0].reversed",
        "Expected true or false, got a string.",
    ),
}

CONTEXTS = {
    "a gateway installed at another location": Context(owners={("gateway", "GW-0001"): Owner(3, "Old house")}),
    "a module installed at another location": Context(owners={("ct", "CTH-0001"): Owner(3, "Old house")}),
    "an unknown location id": Context(unknown_location_id=True),
}


def test_it_accepts_the_spec_example():
    assert check_installation(base_doc()) == []


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_it_reports_each_rule_with_its_path_and_message(case: str):
    mutate, path, message = CASES[case]
    doc = base_doc()
    mutate(doc)

    violations = check_installation(doc, CONTEXTS.get(case))

    assert Violation(path, message, "error") in violations, "\n".join(map(str, violations))


def test_it_warns_about_a_reversed_ct_but_accepts_it():
    doc = base_doc()
    doc["loads"][1]["cts"][0]["reversed"] = True

    violations = check_installation(doc)

    assert violations == [
        Violation(
            "loads[1].cts[0].reversed",
            "CT CTH-0001/D of load 'Heat pump' is marked reversed: the manual advises never to rely on 'reversed': "
            "turn the clamp so its arrow points with the current (K → L).",
            "warning",
        )
    ]


def test_it_warns_about_a_load_without_cts():
    doc = base_doc()
    doc["loads"].append({"name": "Sauna", "kind": "appliance", "cts": []})

    assert check_installation(doc) == [
        Violation(
            "loads[2].cts", "Load 'Sauna' has no CT yet: it measures nothing until a CT is mapped to it.", "warning"
        )
    ]


# The manual's table: powered by L1 & L3 → phase L1; L2 & L3 → L2; L1 & L2 → L3.
@pytest.mark.parametrize("phase", ["L1", "L2", "L3"], ids=["L1&L3", "L2&L3", "L1&L2"])
def test_it_accepts_single_phase_loads_in_delta_on_any_phase(phase: str):
    doc = base_doc()
    delta("L1", "L2")(doc)
    doc["loads"].append({"name": "Oven", "kind": "appliance", "cts": [{"ct": "CTH-0001/D", "phase": phase}]})

    assert check_installation(doc) == []


def test_it_accepts_a_delta_three_phase_load_on_l1_and_l2():
    doc = base_doc()
    delta("L2", "L1")(doc)

    assert check_installation(doc) == []


@pytest.mark.parametrize("topology", ["3P+N", "3P+N-208"])
def test_it_accepts_all_three_phases_in_star(topology: str):
    doc = base_doc()
    doc["location"]["topology"] = topology

    assert check_installation(doc) == []


def test_it_accepts_wifi_settings_within_the_rules():
    doc = base_doc()
    doc["gateway"].update(
        model="wifi-connect", connectivity="wifi", wifi=wifi(ssid="Home_Net-2.4", password='p@ss"w\\rd!{}')
    )
    doc["input_modules"] = doc["output_modules"] = []

    assert check_installation(doc) == []


def test_it_accepts_the_gateway_of_the_location_being_updated():
    context = Context(location_id=3, owners={("gateway", "GW-0001"): Owner(3, "Demo house")})

    assert check_installation(base_doc(), context) == []


def test_it_reports_all_violations_at_once_in_document_order():
    doc = base_doc()
    doc["location"]["topology"] = "1P"
    doc["gateway"].update(model="connect", connectivity="wifi", wifi=wifi(ssid="My Home", password="x" * 25))
    doc["powerbox"]["bus_a_length_m"] = 150
    doc["loads"][1]["cts"][0]["ct"] = "CTH-0001/A"

    violations = check_installation(doc)

    assert [v.path for v in violations] == [
        "gateway.wifi.ssid",
        "gateway.wifi.password",
        "powerbox.bus_a_length_m",
        "input_modules[0]",
        "output_modules[0]",
        "loads[0].cts[1].phase",
        "loads[0].cts[2].phase",
        "loads[1].cts[0].ct",
    ]
    assert all(v.severity == "error" for v in violations)


def test_it_explains_a_document_that_is_not_an_object():
    assert check_installation(["location"]) == [Violation("$", "Expected an object, got a list.")]


def test_it_names_every_offending_wifi_character_once():
    [violation] = rules.check_wifi_ssid("wifi", "a b c\\d")

    assert violation.message.startswith(
        "The SSID contains characters the gateway does not accept: ' ' (space), '\\' (backslash)."
    )


def test_it_formats_a_violation_as_path_and_message():
    assert str(Violation("ct_hubs[7]", "Too many.")) == "ct_hubs[7]: Too many."

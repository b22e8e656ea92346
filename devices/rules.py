"""Every installation rule of the manual (SPEC sections 2–3), in one place.

The rules are small pure functions: they take plain values and the path where those values sit
in an installation file (SPEC 5.1), and return :class:`Violation` s worded for an installer.
Nothing here touches the database: whatever a rule needs to know about other locations comes in
through a :class:`Context` gathered by the caller.

:func:`check_installation` walks a whole installation document — checking its structure on the
way — and applies every rule. The import command, the admin forms (through the models' ``clean()``)
and the APIs all go through it, so an installer reads the same sentence wherever a rule bites.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import available_timezones

from devices import catalogue

Severity = Literal["error", "warning"]

REVERSED_ADVICE = (
    "the manual advises never to rely on 'reversed': turn the clamp so its arrow points with the current (K → L)"
)

CT_MODULE_LABELS = {"hub": "CT Hub", "solid-core": "Solid Core 3-Phase CT"}
CT_MODULE_LETTERS = {"hub": catalogue.CT_HUB_INPUTS, "solid-core": catalogue.SOLID_CORE_INPUTS}
# Labels of the things that carry a serial, keyed like Context.owners.
SERIAL_LABELS = {
    "gateway": "Gateway",
    "powerbox": "Power Box",
    "ct": "CT module",
    "input": "Input module",
    "output": "Output module",
}

_ASCII_ALNUM = frozenset(string.ascii_letters + string.digits)
SSID_CHARACTERS = _ASCII_ALNUM | frozenset(catalogue.WIFI_SSID_SPECIALS)
PASSWORD_CHARACTERS = _ASCII_ALNUM | frozenset(catalogue.WIFI_PASSWORD_SPECIALS)

# Lengths of the database columns the values end up in.
MAX_LENGTHS = {
    "location_name": 120,
    "address": 250,
    "timezone": 64,
    "serial": 64,
    "load_name": 80,
    "input_name": 80,
    "unit": 16,
    "ssid": 32,
    "password": 64,
    "broker_url": 200,
    "broker_username": 128,
    "broker_password": 128,
}
# An export shows the MQTT broker's password as this; importing it back keeps the stored one.
MASKED_PASSWORD = "********"


@dataclass(frozen=True)
class Violation:
    """A broken rule: where (a JSON path such as ``loads[1].cts[0].phase``), why, how bad."""

    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def error(path: str, message: str) -> Violation:
    return Violation(path, message, "error")


def warning(path: str, message: str) -> Violation:
    return Violation(path, message, "warning")


def errors_only(violations: Iterable[Violation]) -> list[Violation]:
    return [v for v in violations if v.is_error]


@dataclass(frozen=True)
class Owner:
    """The location that currently holds a gateway or module serial."""

    location_id: int
    location_name: str


@dataclass(frozen=True)
class Context:
    """What the rules need to know from outside the document.

    ``location_id`` is the location the document describes (None: a new one);
    ``unknown_location_id`` is set when the document's ``location.id`` names no location;
    ``owners`` maps ``(kind, serial)`` — kind one of ``SERIAL_LABELS`` — to the location holding it.
    """

    location_id: int | None = None
    unknown_location_id: bool = False
    owners: Mapping[tuple[str, str], Owner] = field(default_factory=dict)


# --- small helpers for wording -------------------------------------------------------------


def _quote(value: object) -> str:
    return f"'{value}'"


def _or(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _and(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _describe_char(char: str) -> str:
    names = {" ": "space", "\t": "tab", '"': "double quote", "\\": "backslash", "'": "quote"}
    if char in names:
        return f"{_quote(char)} ({names[char]})"
    return _quote(char)


def _bad_characters(value: str, allowed: frozenset[str]) -> list[str]:
    seen: list[str] = []
    for char in value:
        if char not in allowed and char not in seen:
            seen.append(char)
    return seen


def _topology_description(topology: str) -> str:
    """'delta 3×230 V, no neutral' for 3P."""
    name = catalogue.TOPOLOGIES[topology].replace(" (", ", ").replace(")", "")
    return f"{name[0].lower()}{name[1:]}"


def _topology_name(topology: str) -> str:
    """'3P installation (delta 3×230 V, no neutral)'."""
    return f"{topology} installation ({_topology_description(topology)})"


def _number(value: float) -> str:
    return f"{value:g}"


@lru_cache(maxsize=1)
def timezone_names() -> frozenset[str]:
    """The IANA time zone names this system knows (cached: reading them scans the disk)."""
    return frozenset(available_timezones())


# --- location --------------------------------------------------------------------------------


def check_location_id(location_id: int, *, known: bool, path: str = "location.id") -> list[Violation]:
    """``location.id`` (written by an export) must name an existing location."""
    if known:
        return []
    return [error(path, f"No location with id {location_id} exists. Remove location.id to create a new location.")]


def check_topology(topology: str, *, path: str = "location.topology") -> list[Violation]:
    if topology in catalogue.TOPOLOGIES:
        return []
    choices = _or([f"{code} ({_topology_description(code)})" for code in catalogue.TOPOLOGIES])
    return [error(path, f"Unknown topology {_quote(topology)}; use {choices}.")]


def check_frequency(frequency_hz: int, *, path: str = "location.frequency") -> list[Violation]:
    if frequency_hz in catalogue.FREQUENCIES_HZ:
        return []
    return [error(path, f"The nominal frequency is 50 or 60 Hz; got {frequency_hz}.")]


def check_timezone(name: str, *, path: str = "location.timezone") -> list[Violation]:
    if name in timezone_names():
        return []
    return [error(path, f"{_quote(name)} is not a time zone name such as Europe/Brussels.")]


# --- gateway ---------------------------------------------------------------------------------


def check_gateway_model(model: str, *, path: str = "gateway.model") -> list[Violation]:
    if model in catalogue.GATEWAY_MODELS:
        return []
    choices = _or([f"{code} for a {label}" for code, label in catalogue.GATEWAY_MODELS.items()])
    return [error(path, f"Unknown gateway model {_quote(model)}; use {choices}.")]


def check_connectivity(model: str, connectivity: str, *, path: str = "gateway.connectivity") -> list[Violation]:
    """Genius: Ethernet, Wi-Fi or a 3G/4G dongle; Connect: Ethernet or Wi-Fi; Wi-Fi Connect: Wi-Fi only."""
    if connectivity not in catalogue.CONNECTIVITY:
        choices = _or([f"{code} ({label})" for code, label in catalogue.CONNECTIVITY.items()])
        return [error(path, f"Unknown connectivity {_quote(connectivity)}; use {choices}.")]
    allowed = catalogue.GATEWAY_CONNECTIVITY.get(model)
    if allowed is None or connectivity in allowed:
        return []
    label = catalogue.GATEWAY_MODELS[model]
    options = _or([f"{catalogue.CONNECTIVITY[c]} ({c})" for c in allowed])
    able = [catalogue.GATEWAY_MODELS[m] for m, c in catalogue.GATEWAY_CONNECTIVITY.items() if connectivity in c]
    return [
        error(
            path,
            f"A {label} connects over {options} only; {catalogue.CONNECTIVITY[connectivity]} ({connectivity}) "
            f"needs a {_or(able)}.",
        )
    ]


def check_wifi_ssid(connectivity: str, ssid: str | None, *, path: str = "gateway.wifi.ssid") -> list[Violation]:
    """Wi-Fi needs a visible network's SSID, written with the characters of Addendum 2."""
    if not ssid:
        if connectivity == "wifi":
            return [error(path, "The gateway connects over Wi-Fi: give the SSID of the (visible, 2.4 GHz) network.")]
        return []
    bad = _bad_characters(ssid, SSID_CHARACTERS)
    if not bad:
        return []
    return [
        error(
            path,
            f"The SSID contains {_plural(len(bad), 'a character', 'characters')} the gateway does not accept: "
            f"{', '.join(_describe_char(c) for c in bad)}. Allowed are a–z, A–Z, 0–9 and "
            f"{catalogue.WIFI_SSID_SPECIALS} (manual, Addendum 2).",
        )
    ]


def check_wifi_password(
    connectivity: str, password: str | None, *, path: str = "gateway.wifi.password"
) -> list[Violation]:
    """WPA/WPA2 only (so a password is required), Addendum 2's characters, at most 20 characters."""
    if not password:
        if connectivity == "wifi":
            return [
                error(
                    path,
                    "The gateway connects over Wi-Fi: give the network's WPA/WPA2 password; "
                    "open networks without security are not supported (manual, Addendum 2).",
                )
            ]
        return []
    violations = []
    bad = _bad_characters(password, PASSWORD_CHARACTERS)
    if bad:
        violations.append(
            error(
                path,
                f"The Wi-Fi password contains {_plural(len(bad), 'a character', 'characters')} the gateway does not "
                f"accept: {', '.join(_describe_char(c) for c in bad)}. Allowed are a–z, A–Z, 0–9 and "
                f"{catalogue.WIFI_PASSWORD_SPECIALS} (manual, Addendum 2).",
            )
        )
    if len(password) > catalogue.WIFI_MAX_KEY_LENGTH:
        violations.append(
            error(
                path,
                f"The Wi-Fi password has {len(password)} characters; the gateway takes a WPA2 key of at most "
                f"{catalogue.WIFI_MAX_KEY_LENGTH} characters (manual, Addendum 2).",
            )
        )
    return violations


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


# --- Power Box and buses ---------------------------------------------------------------------


def check_bus_length(length_m: float, *, bus: Literal["A", "B"], path: str) -> list[Violation]:
    """Section 13: the CT bus (A) at most 100 m in total, the gateway–Power Box bus (B) at most 500 m."""
    if length_m < 0:
        return [error(path, f"A cable length cannot be negative; got {_number(length_m)} m.")]
    if bus == "A" and length_m > catalogue.MAX_CT_BUS_LENGTH_M:
        return [
            error(
                path,
                f"The CT bus (A) may be at most {_number(catalogue.MAX_CT_BUS_LENGTH_M)} m long in total "
                f"(manual, section 13); this one is {_number(length_m)} m.",
            )
        ]
    if bus == "B" and length_m > catalogue.MAX_GATEWAY_BUS_LENGTH_M:
        return [
            error(
                path,
                f"The gateway–Power Box bus (B) may be at most {_number(catalogue.MAX_GATEWAY_BUS_LENGTH_M)} m long "
                f"(manual, section 13); this one is {_number(length_m)} m.",
            )
        ]
    return []


def check_ct_module_count(count: int, *, path: str) -> list[Violation]:
    """At most 7 CT Hubs and Solid Core 3-Phase CTs together on bus A of a Power Box.

    ``path`` names the first module over the limit.
    """
    if count <= catalogue.MAX_CT_MODULES_PER_POWERBOX:
        return []
    return [
        error(
            path,
            f"A Power Box takes at most {catalogue.MAX_CT_MODULES_PER_POWERBOX} CT Hubs or Solid Core 3-Phase CTs "
            f"on bus A; this installation has {count}.",
        )
    ]


def check_serial(serial: str, *, path: str) -> list[Violation]:
    if "/" in serial:
        return [
            error(
                path,
                f"A serial cannot contain '/' ({_quote(serial)}): CT and input references are written <serial>/<input>.",
            )
        ]
    return []


def check_unique_serials(serials: Iterable[tuple[str, str]]) -> list[Violation]:
    """Every module of an installation has its own serial. ``serials``: (path, serial) pairs."""
    first: dict[str, str] = {}
    violations = []
    for path, serial in serials:
        if serial in first:
            violations.append(
                error(
                    path,
                    f"Serial {_quote(serial)} is used twice (also at {first[serial]}); every module has its own serial.",
                )
            )
        else:
            first[serial] = path
    return violations


def check_gateway_owner(
    serial: str, owner: Owner | None, location_id: int | None, *, path: str = "gateway.serial"
) -> list[Violation]:
    """A gateway belongs to one location at a time; moving it needs a factory reset (manual, sections 7 and 12)."""
    if owner is None or owner.location_id == location_id:
        return []
    return [
        error(
            path,
            f"Gateway {serial} is installed at location {_quote(owner.location_name)} (id {owner.location_id}). "
            "A gateway belongs to one location at a time: remove it there and factory-reset it before installing it here.",
        )
    ]


def check_module_owner(
    label: str, serial: str, owner: Owner | None, location_id: int | None, *, path: str
) -> list[Violation]:
    """A module (Power Box, CT module, Input or Output module) belongs to one location at a time."""
    if owner is None or owner.location_id == location_id:
        return []
    return [
        error(
            path,
            f"{label} {serial} is installed at location {_quote(owner.location_name)} (id {owner.location_id}). "
            "A module belongs to one location at a time: remove it there before installing it here.",
        )
    ]


# --- CT modules and inputs -------------------------------------------------------------------


def check_ct_letter(kind: str, letter: str, *, path: str) -> list[Violation]:
    """A CT Hub has inputs A–D, a Solid Core 3-Phase CT A–C."""
    letters = CT_MODULE_LETTERS[kind]
    if letter in letters:
        return []
    return [error(path, f"A {CT_MODULE_LABELS[kind]} has inputs {_and(letters)}; there is no input {_quote(letter)}.")]


def check_ct_type(ct_type: str, *, path: str) -> list[Violation]:
    if ct_type in catalogue.CT_TYPES:
        return []
    return [
        error(
            path,
            f"{_quote(ct_type)} is not a CT type from the manual; use one of {', '.join(catalogue.CT_TYPES)}.",
        )
    ]


@dataclass(frozen=True)
class CtModuleInfo:
    """What a CT reference is checked against: a module's kind, its configured inputs and where it sits."""

    kind: str
    letters: frozenset[str]
    path: str


def check_ct_reference(ref: str, modules: Mapping[str, CtModuleInfo], *, path: str) -> list[Violation]:
    """A load's CT ``<module serial>/<letter>`` names a CT module of the installation and one of its configured inputs."""
    serial, slash, letter = ref.rpartition("/")
    if not slash or not serial or not letter:
        return [error(path, f"A CT reference is <module serial>/<input letter>, e.g. 'CTH-0001/A'; got {_quote(ref)}.")]
    module = modules.get(serial)
    if module is None:
        return [
            error(
                path,
                f"{_quote(ref)} names no module of this installation: there is no CT Hub or Solid Core 3-Phase CT "
                f"with serial {_quote(serial)} in ct_hubs or solid_core_cts.",
            )
        ]
    wrong_letter = check_ct_letter(module.kind, letter, path=path)
    if wrong_letter:
        return wrong_letter
    if letter not in module.letters:
        return [
            error(
                path,
                f"Input {letter} of {CT_MODULE_LABELS[module.kind]} {serial} has no CT configured: "
                f'add "{letter}" with its CT type to {module.path}.inputs.',
            )
        ]
    return []


def check_ct_uses(uses: Iterable[tuple[str, str, str]]) -> list[Violation]:
    """A CT input measures one load. ``uses``: (path, CT reference, load name) in file order."""
    first: dict[str, str] = {}
    violations = []
    for path, ref, load in uses:
        if ref not in first:
            first[ref] = load
        elif first[ref] == load:
            violations.append(error(path, f"CT input {ref} appears twice in load {_quote(load)}."))
        else:
            violations.append(
                error(
                    path,
                    f"CT input {ref} is used by two loads, {_quote(first[ref])} and {_quote(load)}; a CT measures one load only.",
                )
            )
    return violations


# --- loads and phases ------------------------------------------------------------------------


def check_load_kind(kind: str, *, path: str) -> list[Violation]:
    if kind in catalogue.LOAD_KINDS:
        return []
    return [error(path, f"Unknown load kind {_quote(kind)}; use one of {', '.join(catalogue.LOAD_KINDS)}.")]


def check_unique_load_names(names: Iterable[tuple[str, str]]) -> list[Violation]:
    """Load names are unique within a location. ``names``: (path, name) pairs."""
    seen: set[str] = set()
    violations = []
    for path, name in names:
        if name in seen:
            violations.append(
                error(path, f"Two loads are named {_quote(name)}; every load of a location needs its own name.")
            )
        seen.add(name)
    return violations


def check_phase(topology: str, phase: str, *, path: str) -> list[Violation]:
    """The phase a CT is configured on exists in the topology (1P: L1; 2P+N: L1, L2; others L1–L3)."""
    allowed = catalogue.TOPOLOGY_PHASES[topology]
    if phase in allowed:
        return []
    if phase not in ("L1", "L2", "L3"):
        return [error(path, f"A CT's phase is L1, L2 or L3; got {_quote(phase)}.")]
    return [error(path, f"Phase {phase} does not exist in a {_topology_name(topology)}: use {_or(allowed)}.")]


def check_load_phases(topology: str, load: str, phases: Sequence[tuple[str, str]]) -> list[Violation]:
    """The CTs of one load: each on its own phase; in delta (3P) at most two, on L1 and L2.

    ``phases`` holds (path of the CT entry, phase) for the load's CTs, in file order; phases that
    :func:`check_phase` refuses are skipped here.

    Delta follows the manual (section 6): a three-phase load is measured with two CTs on L1 and
    L2 (two-wattmeter method, P = P(L1) + P(L2)); a single-phase load has one CT whose phase
    names its voltage reference (L1 & L3 → L1, L2 & L3 → L2, L1 & L2 → L3).
    """
    allowed = catalogue.TOPOLOGY_PHASES[topology]
    valid = [(path, phase) for path, phase in phases if phase in allowed]
    violations = []
    seen: set[str] = set()
    for path, phase in valid:
        if phase in seen:
            violations.append(
                error(
                    f"{path}.phase",
                    f"Load {_quote(load)} has two CTs on phase {phase}; each CT of a load measures a different phase.",
                )
            )
        seen.add(phase)
    if topology != "3P":
        return violations
    two_wattmeter = (
        f"In a {_topology_name('3P')} a three-phase load is measured with two CTs, on L1 and L2 "
        "(two-wattmeter method: P = P(L1) + P(L2))"
    )
    if len(phases) > 2:
        for path, _phase in phases[2:]:
            violations.append(
                error(
                    path, f"{two_wattmeter}; load {_quote(load)} has {len(phases)} CTs. Keep the CTs on L1 and L2 only."
                )
            )
    elif len(valid) == 2:
        for path, phase in valid:
            if phase == "L3":
                violations.append(
                    error(
                        f"{path}.phase",
                        f"{two_wattmeter}; load {_quote(load)} has a CT on L3. A single-phase load powered by L1 and L2 "
                        "has one CT, clamped around L1 and configured on L3.",
                    )
                )
    return violations


def check_reversed(is_reversed: bool, ref: str, load: str, *, path: str) -> list[Violation]:
    """'Reversed' is accepted, with the manual's advice against it."""
    if not is_reversed:
        return []
    return [warning(path, f"CT {ref} of load {_quote(load)} is marked reversed: {REVERSED_ADVICE}.")]


def check_load_has_cts(count: int, load: str, *, path: str) -> list[Violation]:
    if count:
        return []
    return [warning(path, f"Load {_quote(load)} has no CT yet: it measures nothing until a CT is mapped to it.")]


# --- integrations (docs/integrations.md) ---------------------------------------------------


def check_broker_url(url: str, *, path: str = "integrations.mqtt_broker.url") -> list[Violation]:
    """An MQTT broker is ``mqtt://host[:port]`` or ``mqtts://host[:port]``; credentials go in their own fields."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [error(path, f"Not a broker URL ({exc}); write mqtt://host:1883 or mqtts://host:8883.")]
    if parts.scheme not in ("mqtt", "mqtts"):
        return [error(path, f"A broker URL starts with mqtt:// or mqtts://; got {_quote(url)}.")]
    if not parts.hostname:
        return [error(path, "The broker URL names no host; write mqtt://host:1883.")]
    if parts.username is not None or parts.password is not None:
        return [
            error(
                path,
                "Put the broker's username and password in integrations.mqtt_broker.username and .password, "
                "not in the URL (the URL is shown back; the password is not).",
            )
        ]
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return [error(path, "A broker URL is only mqtt://host:port, without a path or query.")]
    if port is not None and not 1 <= port <= 65535:
        return [error(path, f"Port {port} is not between 1 and 65535.")]
    if any(c.isspace() for c in url):
        return [error(path, "The broker URL contains a space.")]
    return []


def check_broker_credentials(
    username: str | None, password: str | None, *, path: str = "integrations.mqtt_broker"
) -> list[Violation]:
    """MQTT sends a password only with a username."""
    if password and not username:
        return [error(f"{path}.username", "A broker password needs a username (MQTT sends none without one).")]
    return []


# --- Input and Output modules ----------------------------------------------------------------


def check_io_modules_gateway(gateway_model: str, *, path: str) -> list[Violation]:
    """Input and Output modules work with a Genius only (manual, sections 10 and 11)."""
    if gateway_model in catalogue.GATEWAYS_WITH_IO_MODULES or gateway_model not in catalogue.GATEWAY_MODELS:
        return []
    genius = _or([catalogue.GATEWAY_MODELS[m] for m in catalogue.GATEWAYS_WITH_IO_MODULES])
    return [
        error(
            path,
            f"Input and Output modules only work with a {genius} gateway; "
            f"this installation's gateway is a {catalogue.GATEWAY_MODELS[gateway_model]}.",
        )
    ]


def check_io_module_count(count: int, *, path: str) -> list[Violation]:
    """At most 10 Input and Output modules together per gateway. ``path`` names the first one over."""
    if count <= catalogue.MAX_IO_MODULES_PER_GATEWAY:
        return []
    return [
        error(
            path,
            f"A gateway takes at most {catalogue.MAX_IO_MODULES_PER_GATEWAY} Input and Output modules on bus B; "
            f"this installation has {count}.",
        )
    ]


def check_input_number(number: str, *, path: str) -> list[Violation]:
    if number in catalogue.INPUT_MODULE_INPUTS:
        return []
    return [
        error(
            path,
            f"An Input module has inputs {_and(catalogue.INPUT_MODULE_INPUTS)}; there is no input {_quote(number)}.",
        )
    ]


def check_input_mode(mode: str, *, path: str) -> list[Violation]:
    if mode in catalogue.INPUT_MODES:
        return []
    return [
        error(path, f"An input counts pulses (pulse) or reports its state, low or high (status); got {_quote(mode)}.")
    ]


def check_pulse_unit(mode: str, unit: str | None, name: str, *, path: str) -> list[Violation]:
    if mode != "pulse" or unit:
        return []
    return [error(path, f"Input {_quote(name)} counts pulses: give the unit it counts, e.g. m3, l or kWh.")]


def check_pulses_per_unit(mode: str, pulses_per_unit: float | None, name: str, *, path: str) -> list[Violation]:
    if mode != "pulse":
        return []
    if pulses_per_unit is None:
        return [error(path, f"Input {_quote(name)} counts pulses: give pulses_per_unit, e.g. 100 pulses per m3.")]
    if pulses_per_unit <= 0:
        return [
            error(
                path,
                f"Input {_quote(name)} counts pulses: pulses_per_unit must be more than 0; got {_number(pulses_per_unit)}.",
            )
        ]
    return []


def check_output_number(number: str, *, path: str) -> list[Violation]:
    if number in catalogue.OUTPUT_MODULE_OUTPUTS:
        return []
    return [
        error(
            path,
            f"An Output module has outputs {_and(catalogue.OUTPUT_MODULE_OUTPUTS)}; there is no output {_quote(number)}.",
        )
    ]


def check_output_mode(mode: str, *, path: str) -> list[Violation]:
    if mode in catalogue.OUTPUT_MODES:
        return []
    return [
        error(
            path,
            "An Output module's relays are used separately, outputs 1 and 2 (separate), or together, 1 & 2 "
            f"(combined); got {_quote(mode)}.",
        )
    ]


# --- the whole document ----------------------------------------------------------------------

_TOP_KEYS = (
    "location",
    "gateway",
    "powerbox",
    "ct_hubs",
    "solid_core_cts",
    "input_modules",
    "output_modules",
    "loads",
    "integrations",
)
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


class _Reader:
    """Reads a JSON document, noting structural problems (missing keys, wrong types) by path."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def problem(self, path: str, message: str) -> None:
        self.violations.append(error(path, message))

    def obj(self, value: Any, path: str, *, required: Sequence[str], optional: Sequence[str] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.problem(path, f"Expected an object, got {_json_type(value)}.")
            return None
        known = (*required, *optional)
        for key in value:
            if key not in known:
                self.problem(
                    _join(path, str(key)), f"Unknown key {_quote(key)}; expected {_or([repr(k) for k in known])}."
                )
        for key in required:
            if key not in value:
                self.problem(_join(path, key), f'Missing "{key}".')
        return value

    def mapping(self, parent: dict, key: str, path: str) -> dict | None:
        """An object whose keys are data (input letters or numbers)."""
        if key not in parent:
            return None
        value = parent[key]
        if not isinstance(value, dict):
            self.problem(path, f"Expected an object, got {_json_type(value)}.")
            return None
        return value

    def items(self, parent: dict, key: str, path: str) -> list:
        if key not in parent:
            return []
        value = parent[key]
        if not isinstance(value, list):
            self.problem(path, f"Expected a list, got {_json_type(value)}.")
            return []
        return value

    def text(
        self, parent: dict, key: str, path: str, *, max_length: int | None = None, blank: bool = False
    ) -> str | None:
        if key not in parent:
            return None
        value = parent[key]
        if not isinstance(value, str):
            self.problem(path, f"Expected a string, got {_json_type(value)}.")
            return None
        if not blank and not value.strip():
            self.problem(path, "Must not be empty.")
            return None
        if max_length is not None and len(value) > max_length:
            self.problem(path, f"At most {max_length} characters; got {len(value)}.")
            return None
        return value

    def integer(self, parent: dict, key: str, path: str) -> int | None:
        if key not in parent:
            return None
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"Expected a whole number, got {_json_type(value)}.")
            return None
        return value

    def number(self, parent: dict, key: str, path: str) -> float | None:
        if key not in parent or parent[key] is None:
            return None
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.problem(path, f"Expected a number, got {_json_type(value)}.")
            return None
        return value

    def boolean(self, parent: dict, key: str, path: str) -> bool | None:
        if key not in parent:
            return None
        value = parent[key]
        if not isinstance(value, bool):
            self.problem(path, f"Expected true or false, got {_json_type(value)}.")
            return None
        return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and path != "$" else key


def check_installation(doc: Any, context: Context | None = None) -> list[Violation]:
    """Every violation of an installation document (SPEC 5.1), structural ones included, at once.

    ``context`` tells which location the document will update and who holds its serials;
    without it the document is judged on its own (as a new location).
    """
    context = context or Context()
    r = _Reader()
    v: list[Violation] = []
    root = r.obj(doc, "$", required=("location", "gateway", "powerbox"), optional=_TOP_KEYS[3:])
    if root is None:
        return r.violations
    target = context.location_id

    # Location.
    topology = None
    location = r.obj(root.get("location"), "location", required=("name", "timezone", "topology", "frequency"),
                     optional=("id", "address")) if "location" in root else None  # fmt: skip
    if location is not None:
        if "id" in location:
            location_id = r.integer(location, "id", "location.id")
            if location_id is not None:
                v += check_location_id(location_id, known=not context.unknown_location_id)
        r.text(location, "name", "location.name", max_length=MAX_LENGTHS["location_name"])
        r.text(location, "address", "location.address", max_length=MAX_LENGTHS["address"], blank=True)
        tz = r.text(location, "timezone", "location.timezone", max_length=MAX_LENGTHS["timezone"])
        if tz is not None:
            v += check_timezone(tz)
        topology = r.text(location, "topology", "location.topology")
        if topology is not None:
            v += check_topology(topology)
            if topology not in catalogue.TOPOLOGIES:
                topology = None
        frequency = r.integer(location, "frequency", "location.frequency")
        if frequency is not None:
            v += check_frequency(frequency)

    serials: list[tuple[str, str]] = []  # (path, serial) of every module, for uniqueness

    def serial_of(obj: dict, path: str, kind: str, label: str) -> str | None:
        serial = r.text(obj, "serial", f"{path}.serial", max_length=MAX_LENGTHS["serial"])
        if serial is None:
            return None
        serials.append((f"{path}.serial", serial))
        nonlocal v
        v += check_serial(serial, path=f"{path}.serial")
        owner = context.owners.get((kind, serial))
        if kind == "gateway":
            v += check_gateway_owner(serial, owner, target, path=f"{path}.serial")
        else:
            v += check_module_owner(label, serial, owner, target, path=f"{path}.serial")
        return serial

    # Gateway.
    gateway_model = None
    gateway = r.obj(root.get("gateway"), "gateway", required=("model", "serial", "connectivity"),
                    optional=("wifi",)) if "gateway" in root else None  # fmt: skip
    if gateway is not None:
        gateway_model = r.text(gateway, "model", "gateway.model")
        if gateway_model is not None:
            v += check_gateway_model(gateway_model)
        serial_of(gateway, "gateway", "gateway", "Gateway")
        connectivity = r.text(gateway, "connectivity", "gateway.connectivity")
        if connectivity is not None and gateway_model is not None:
            v += check_connectivity(gateway_model, connectivity)
        wifi = {}
        if "wifi" in gateway:
            wifi = r.obj(gateway["wifi"], "gateway.wifi", required=(), optional=("ssid", "password")) or {}
        ssid = r.text(wifi, "ssid", "gateway.wifi.ssid", max_length=MAX_LENGTHS["ssid"], blank=True)
        password = r.text(wifi, "password", "gateway.wifi.password", max_length=MAX_LENGTHS["password"], blank=True)
        if connectivity is not None:
            # A value of the wrong type was reported above; don't also call it missing.
            if ssid is not None or "ssid" not in wifi:
                v += check_wifi_ssid(connectivity, ssid)
            if password is not None or "password" not in wifi:
                v += check_wifi_password(connectivity, password)

    # Power Box.
    powerbox = r.obj(root.get("powerbox"), "powerbox", required=("serial",),
                     optional=("bus_a_length_m", "bus_b_length_m")) if "powerbox" in root else None  # fmt: skip
    if powerbox is not None:
        serial_of(powerbox, "powerbox", "powerbox", "Power Box")
        for key, bus in (("bus_a_length_m", "A"), ("bus_b_length_m", "B")):
            length = r.number(powerbox, key, f"powerbox.{key}")
            if length is not None:
                v += check_bus_length(length, bus=bus, path=f"powerbox.{key}")

    # CT modules on bus A.
    ct_modules: dict[str, CtModuleInfo] = {}
    ct_module_paths: list[str] = []
    for list_key, kind in (("ct_hubs", "hub"), ("solid_core_cts", "solid-core")):
        for i, item in enumerate(r.items(root, list_key, list_key)):
            path = f"{list_key}[{i}]"
            ct_module_paths.append(path)
            module = r.obj(item, path, required=("serial",), optional=("inputs",))
            if module is None:
                continue
            serial = serial_of(module, path, "ct", CT_MODULE_LABELS[kind])
            inputs = r.mapping(module, "inputs", f"{path}.inputs") or {}
            letters = set()
            for letter, ct_type in inputs.items():
                input_path = f"{path}.inputs.{letter}"
                wrong_letter = check_ct_letter(kind, letter, path=input_path)
                v += wrong_letter
                if not wrong_letter:
                    letters.add(letter)
                if not isinstance(ct_type, str):
                    r.problem(input_path, f"Expected a CT type such as 'AC-CT-100A', got {_json_type(ct_type)}.")
                else:
                    v += check_ct_type(ct_type, path=input_path)
            if serial is not None and serial not in ct_modules:
                ct_modules[serial] = CtModuleInfo(kind, frozenset(letters), path)
    if len(ct_module_paths) > catalogue.MAX_CT_MODULES_PER_POWERBOX:
        v += check_ct_module_count(len(ct_module_paths), path=ct_module_paths[catalogue.MAX_CT_MODULES_PER_POWERBOX])

    # Input and Output modules on bus B.
    io_paths: list[str] = []
    for i, item in enumerate(r.items(root, "input_modules", "input_modules")):
        path = f"input_modules[{i}]"
        io_paths.append(path)
        module = r.obj(item, path, required=("serial",), optional=("inputs",))
        if module is None:
            continue
        serial_of(module, path, "input", "Input module")
        for number, spec in (r.mapping(module, "inputs", f"{path}.inputs") or {}).items():
            input_path = f"{path}.inputs.{number}"
            v += check_input_number(number, path=input_path)
            spec = r.obj(spec, input_path, required=("name", "mode"), optional=("unit", "pulses_per_unit"))
            if spec is None:
                continue
            name = r.text(spec, "name", f"{input_path}.name", max_length=MAX_LENGTHS["input_name"]) or f"{number}"
            mode = r.text(spec, "mode", f"{input_path}.mode")
            unit = r.text(spec, "unit", f"{input_path}.unit", max_length=MAX_LENGTHS["unit"], blank=True)
            unit_ok = unit is not None or "unit" not in spec
            pulses = r.number(spec, "pulses_per_unit", f"{input_path}.pulses_per_unit")
            pulses_ok = pulses is not None or spec.get("pulses_per_unit") is None
            if mode is not None:
                v += check_input_mode(mode, path=f"{input_path}.mode")
                if unit_ok:
                    v += check_pulse_unit(mode, unit, name, path=f"{input_path}.unit")
                if pulses_ok:
                    v += check_pulses_per_unit(mode, pulses, name, path=f"{input_path}.pulses_per_unit")
    for i, item in enumerate(r.items(root, "output_modules", "output_modules")):
        path = f"output_modules[{i}]"
        io_paths.append(path)
        module = r.obj(item, path, required=("serial", "mode"), optional=("outputs",))
        if module is None:
            continue
        serial_of(module, path, "output", "Output module")
        mode = r.text(module, "mode", f"{path}.mode")
        if mode is not None:
            v += check_output_mode(mode, path=f"{path}.mode")
        for number, spec in (r.mapping(module, "outputs", f"{path}.outputs") or {}).items():
            output_path = f"{path}.outputs.{number}"
            v += check_output_number(number, path=output_path)
            spec = r.obj(spec, output_path, required=("name",))
            if spec is not None:
                r.text(spec, "name", f"{output_path}.name", max_length=MAX_LENGTHS["input_name"])
    if gateway_model is not None:
        for list_key in ("input_modules", "output_modules"):
            first = next((p for p in io_paths if p.startswith(list_key)), None)
            if first is not None:
                v += check_io_modules_gateway(gateway_model, path=first)
    if len(io_paths) > catalogue.MAX_IO_MODULES_PER_GATEWAY:
        v += check_io_module_count(len(io_paths), path=io_paths[catalogue.MAX_IO_MODULES_PER_GATEWAY])

    v += check_unique_serials(serials)

    # Outgoing integrations.
    if "integrations" in root:
        integrations = r.obj(root["integrations"], "integrations", required=(),
                             optional=("smappee_mqtt", "home_assistant", "mqtt_broker"))  # fmt: skip
        if integrations is not None:
            r.boolean(integrations, "smappee_mqtt", "integrations.smappee_mqtt")
            r.boolean(integrations, "home_assistant", "integrations.home_assistant")
            if "mqtt_broker" in integrations:
                broker = r.obj(integrations["mqtt_broker"], "integrations.mqtt_broker", required=("url",),
                               optional=("username", "password"))  # fmt: skip
                if broker is not None:
                    url = r.text(broker, "url", "integrations.mqtt_broker.url", max_length=MAX_LENGTHS["broker_url"])
                    if url is not None:
                        v += check_broker_url(url)
                    username = r.text(broker, "username", "integrations.mqtt_broker.username",
                                      max_length=MAX_LENGTHS["broker_username"], blank=True)  # fmt: skip
                    password = r.text(broker, "password", "integrations.mqtt_broker.password",
                                      max_length=MAX_LENGTHS["broker_password"], blank=True)  # fmt: skip
                    v += check_broker_credentials(username, password)

    # Loads and their CTs.
    names: list[tuple[str, str]] = []
    uses: list[tuple[str, str, str]] = []
    for i, item in enumerate(r.items(root, "loads", "loads")):
        path = f"loads[{i}]"
        load = r.obj(item, path, required=("name", "kind"), optional=("cts",))
        if load is None:
            continue
        name = r.text(load, "name", f"{path}.name", max_length=MAX_LENGTHS["load_name"])
        if name is not None:
            names.append((f"{path}.name", name))
        label = name or f"#{i + 1}"
        kind = r.text(load, "kind", f"{path}.kind")
        if kind is not None:
            v += check_load_kind(kind, path=f"{path}.kind")
        cts = r.items(load, "cts", f"{path}.cts")
        if isinstance(load.get("cts", []), list):
            v += check_load_has_cts(len(cts), label, path=f"{path}.cts")
        phases: list[tuple[str, str]] = []
        for j, entry in enumerate(cts):
            ct_path = f"{path}.cts[{j}]"
            entry = r.obj(entry, ct_path, required=("ct", "phase"), optional=("reversed",))
            if entry is None:
                continue
            ref = r.text(entry, "ct", f"{ct_path}.ct")
            if ref is not None:
                v += check_ct_reference(ref, ct_modules, path=f"{ct_path}.ct")
                uses.append((f"{ct_path}.ct", ref, label))
            phase = r.text(entry, "phase", f"{ct_path}.phase")
            if phase is not None and topology is not None:
                v += check_phase(topology, phase, path=f"{ct_path}.phase")
                phases.append((ct_path, phase))
            if r.boolean(entry, "reversed", f"{ct_path}.reversed"):
                v += check_reversed(True, ref or "?", label, path=f"{ct_path}.reversed")
        if topology is not None:
            v += check_load_phases(topology, label, phases)
    v += check_unique_load_names(names)
    v += check_ct_uses(uses)

    return _ordered(r.violations + v)


def _ordered(violations: list[Violation]) -> list[Violation]:
    """Violations in document order (section, then list indexes), duplicates dropped."""
    rank = {key: i for i, key in enumerate(("$", *_TOP_KEYS))}

    def key(v: Violation) -> tuple:
        head = re.split(r"[.\[]", v.path, maxsplit=1)[0]
        return (rank.get(head, len(rank)), tuple(int(i) for i in re.findall(r"\[(\d+)\]", v.path)))

    return sorted(dict.fromkeys(violations), key=key)


def summarize(violations: Iterable[Violation]) -> str:
    counts = Counter(v.severity for v in violations)
    parts = []
    if counts["error"]:
        parts.append(f"{counts['error']} {_plural(counts['error'], 'error', 'errors')}")
    if counts["warning"]:
        parts.append(f"{counts['warning']} {_plural(counts['warning'], 'warning', 'warnings')}")
    return " and ".join(parts) or "no problems"

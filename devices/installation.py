"""Installation files (SPEC 5.1): validate, import, export — and the same rules for pending edits.

An installation file describes one location with all its modules and loads. Importing it creates
or updates that location so that the database matches the file; exporting writes the same JSON
back. Every rule lives in :mod:`devices.rules`; this module gathers what those rules need from the
database and applies the result.

Admin forms and other editors reuse the file format as the common language: a :class:`Snapshot`
holds an installation's rows, pending (unsaved) edits can be laid over it, and
:func:`pending_errors` reports the rule violations an edit would add.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction

from devices import rules
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
    OutputModule,
    PowerBox,
    Relay,
)
from devices.rules import Context, Owner, Violation

# Each part of an installation and the foreign key to the part it belongs to.
PARENT_FIELD: dict[type[models.Model], str] = {
    Gateway: "location",
    PowerBox: "location",
    CtModule: "powerbox",
    CtInput: "module",
    InputModule: "location",
    DigitalInput: "module",
    OutputModule: "location",
    Relay: "module",
    Load: "location",
    LoadCt: "load",
}

# A violation's path below an object, mapped to the model field that holds the value.
FIELD_FOR_PATH = {
    "frequency": "frequency_hz",
    "wifi.ssid": "wifi_ssid",
    "wifi.password": "wifi_password",
    "ct": "ct_input",
}


class InstallationError(Exception):
    """An installation file breaks rules; nothing was written. ``violations`` holds all findings."""

    def __init__(self, violations: Iterable[Violation]):
        self.violations = list(violations)
        super().__init__(
            f"The installation file has {rules.summarize(self.violations)}:\n"
            + "\n".join(str(v) for v in self.violations)
        )

    @property
    def errors(self) -> list[Violation]:
        return rules.errors_only(self.violations)


@dataclass
class ImportResult:
    location: Location
    created: bool
    changed: bool
    gateway_token: str | None
    warnings: list[Violation] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


# --- validation ------------------------------------------------------------------------------


def validate_installation(doc: Any) -> list[Violation]:
    """Every violation of an installation document (errors and warnings), judged against the database."""
    return _validate(doc)[0]


def _validate(doc: Any) -> tuple[list[Violation], Location | None]:
    target, unknown_id = _target_of(doc)
    context = Context(
        location_id=target.pk if target else None,
        unknown_location_id=unknown_id,
        owners=serial_owners(doc),
    )
    violations = rules.check_installation(doc, context) + _masked_password_violations(doc, target)
    return violations, target


def _masked_password_violations(doc: Any, target: Location | None) -> list[Violation]:
    """An export's masked broker password means "keep the stored one": only for the same broker."""
    broker = _broker_spec(doc)
    if broker.get("password") != rules.MASKED_PASSWORD:
        return []
    path = "integrations.mqtt_broker.password"
    if target is None or not target.mqtt_broker_password:
        return [
            rules.error(
                path, f"{rules.MASKED_PASSWORD!r} stands for a stored password, and none is stored: give the password."
            )
        ]
    if broker.get("url") != target.mqtt_broker_url or broker.get("username", "") != target.mqtt_broker_username:
        return [
            rules.error(
                path,
                "The broker or its username changed: give the password again (the stored one belongs to the old broker).",
            )
        ]
    return []


def _integrations_spec(doc: Any) -> dict:
    value = doc.get("integrations") if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def _broker_spec(doc: Any) -> dict:
    value = _integrations_spec(doc).get("mqtt_broker")
    return value if isinstance(value, dict) else {}


def _target_of(doc: Any) -> tuple[Location | None, bool]:
    """The location a document updates (SPEC 5.1 identity), and whether its ``location.id`` is unknown."""
    if not isinstance(doc, dict):
        return None, False
    location = doc.get("location")
    if isinstance(location, dict) and "id" in location:
        location_id = location["id"]
        if isinstance(location_id, int) and not isinstance(location_id, bool):
            target = Location.objects.filter(pk=location_id).first()
            return target, target is None
        return None, False
    gateway = doc.get("gateway")
    serial = gateway.get("serial") if isinstance(gateway, dict) else None
    if isinstance(serial, str):
        owned = Gateway.objects.select_related("location").filter(serial=serial).first()
        if owned is not None:
            return owned.location, False
    return None, False


def _serials_in(doc: Any) -> dict[str, set[str]]:
    """The serials a document names, by kind (as keyed in :attr:`rules.Context.owners`)."""
    found: dict[str, set[str]] = {kind: set() for kind in rules.SERIAL_LABELS}
    if not isinstance(doc, dict):
        return found

    def add(kind: str, item: Any) -> None:
        if isinstance(item, dict) and isinstance(item.get("serial"), str):
            found[kind].add(item["serial"])

    add("gateway", doc.get("gateway"))
    add("powerbox", doc.get("powerbox"))
    for key, kind in (
        ("ct_hubs", "ct"),
        ("solid_core_cts", "ct"),
        ("input_modules", "input"),
        ("output_modules", "output"),
    ):
        items = doc.get(key)
        for item in items if isinstance(items, list) else []:
            add(kind, item)
    return found


def serial_owners(doc: Any) -> dict[tuple[str, str], Owner]:
    """Which location holds each serial the document names."""
    serials = _serials_in(doc)
    queries = {
        "gateway": (Gateway.objects, "location"),
        "powerbox": (PowerBox.objects, "location"),
        "ct": (CtModule.objects, "powerbox__location"),
        "input": (InputModule.objects, "location"),
        "output": (OutputModule.objects, "location"),
    }
    owners: dict[tuple[str, str], Owner] = {}
    for kind, (manager, location) in queries.items():
        if not serials[kind]:
            continue
        rows = manager.filter(serial__in=serials[kind]).values_list("serial", f"{location}__id", f"{location}__name")
        for serial, location_id, name in rows:
            owners[(kind, serial)] = Owner(location_id, name)
    return owners


# --- import ----------------------------------------------------------------------------------


def import_installation(doc: Any, *, rotate_token: bool = False) -> ImportResult:
    """Create or update the location a document describes so that the database matches it.

    Identity (SPEC 5.1): ``location.id`` names the location to update; without it, the location
    owning the gateway serial; else a new location. Modules, inputs and loads are matched by
    serial, letter/number and name: rows that did not change keep their ids, rows gone from the
    file are deleted. Importing the same file twice changes nothing. A new gateway (or a changed
    gateway serial) gets an ingest token, returned once; ``rotate_token`` issues a new one anyway.

    Raises :class:`InstallationError` — writing nothing — when any rule is broken.
    """
    with transaction.atomic():
        violations, target = _validate(doc)
        if rules.errors_only(violations):
            raise InstallationError(violations)
        writer = _Writer(doc, target)
        writer.write()
        token = None
        notes = list(writer.changes)
        if writer.needs_token or rotate_token:
            token = writer.gateway.rotate_token()
            if not writer.needs_token:
                notes.append(f"issued a new ingest token for gateway {writer.gateway.serial}")
        if notes:
            Event.objects.create(
                location=writer.location,
                kind=Event.CONFIGURATION,
                message=_event_message(writer.location, writer.created, notes),
                data={"source": "installation file", "changes": notes},
            )
    return ImportResult(
        location=writer.location,
        created=writer.created,
        changed=bool(writer.changes),
        gateway_token=token,
        warnings=[v for v in violations if not v.is_error],
        changes=writer.changes,
    )


def _event_message(location: Location, created: bool, notes: list[str]) -> str:
    if created:
        return f"Installation {location.name!r} created from an installation file."
    shown = "; ".join(notes[:8])
    more = f"; and {len(notes) - 8} more" if len(notes) > 8 else ""
    return f"Installation updated from an installation file: {shown}{more}."


class _Writer:
    """Writes a valid document into the database, noting every change in words."""

    def __init__(self, doc: dict, target: Location | None):
        self.doc = doc
        self.location = target or Location()
        self.created = target is None
        self.changes: list[str] = []
        self.needs_token = False
        self.gateway: Gateway

    def sync(self, obj: models.Model, label: str, **values: Any) -> bool:
        """Give ``obj`` these field values, saving (and noting) only what differs."""
        if obj.pk is None:
            for name, value in values.items():
                setattr(obj, name, value)
            obj.save()
            self.changes.append(f"added {label}")
            return True
        changed = [name for name, value in values.items() if getattr(obj, name) != value]
        if not changed:
            return False
        for name in changed:
            setattr(obj, name, values[name])
        obj.save(update_fields=changed)
        self.changes.append(f"changed {label} ({', '.join(changed)})")
        return True

    def delete(self, obj: models.Model, label: str) -> None:
        obj.delete()
        self.changes.append(f"removed {label}")

    def remove_unlisted(
        self, stored: dict[Any, models.Model], listed: Container, label: Callable[[models.Model], str]
    ) -> None:
        """Delete the stored rows (by key) whose key the file no longer lists."""
        for key, obj in stored.items():
            if key not in listed:
                self.delete(obj, label(obj))

    def write(self) -> None:
        self.write_location()
        self.write_gateway()
        powerbox = self.write_powerbox()
        self.write_ct_modules(powerbox)
        self.write_input_modules()
        self.write_output_modules()
        self.write_loads(powerbox)

    def write_location(self) -> None:
        spec = self.doc["location"]
        self.sync(
            self.location,
            f"location {spec['name']!r}",
            name=spec["name"],
            address=spec.get("address", ""),
            timezone=spec["timezone"],
            topology=spec["topology"],
            frequency_hz=spec["frequency"],
            **self.integrations(),
        )

    def integrations(self) -> dict[str, Any]:
        """The location's integration fields as the file sets them (all off without ``integrations``)."""
        spec, broker = _integrations_spec(self.doc), _broker_spec(self.doc)
        password = broker.get("password", "")
        if password == rules.MASKED_PASSWORD:  # an export's mask: keep the stored one (checked: same broker)
            password = self.location.mqtt_broker_password
        return {
            "smappee_mqtt": spec.get("smappee_mqtt", False),
            "home_assistant": spec.get("home_assistant", False),
            "mqtt_broker_url": broker.get("url", ""),
            "mqtt_broker_username": broker.get("username", ""),
            "mqtt_broker_password": password,
        }

    def write_gateway(self) -> None:
        spec = self.doc["gateway"]
        wifi = spec.get("wifi") or {}
        gateway = Gateway.objects.filter(location=self.location).first() or Gateway(location=self.location)
        self.needs_token = gateway.pk is None or gateway.serial != spec["serial"]
        self.sync(
            gateway,
            f"gateway {spec['serial']}",
            model=spec["model"],
            serial=spec["serial"],
            connectivity=spec["connectivity"],
            wifi_ssid=wifi.get("ssid", ""),
            wifi_password=wifi.get("password", ""),
        )
        self.gateway = gateway

    def write_powerbox(self) -> PowerBox:
        spec = self.doc["powerbox"]
        powerbox = PowerBox.objects.filter(location=self.location).first() or PowerBox(location=self.location)
        self.sync(
            powerbox,
            f"Power Box {spec['serial']}",
            serial=spec["serial"],
            bus_a_length_m=spec.get("bus_a_length_m"),
            bus_b_length_m=spec.get("bus_b_length_m"),
        )
        return powerbox

    def write_ct_modules(self, powerbox: PowerBox) -> None:
        wanted = [(spec, CtModule.HUB) for spec in self.doc.get("ct_hubs", [])]
        wanted += [(spec, CtModule.SOLID_CORE) for spec in self.doc.get("solid_core_cts", [])]
        existing = {m.serial: m for m in CtModule.objects.filter(powerbox=powerbox)}
        self.remove_unlisted(
            existing,
            {spec["serial"] for spec, _kind in wanted},
            lambda m: f"{rules.CT_MODULE_LABELS[m.kind]} {m.serial}",
        )
        for position, (spec, kind) in enumerate(wanted, start=1):
            serial = spec["serial"]
            module = existing.get(serial) or CtModule(powerbox=powerbox)
            self.sync(module, f"{rules.CT_MODULE_LABELS[kind]} {serial}", serial=serial, kind=kind, position=position)
            inputs = spec.get("inputs", {})
            current = {i.letter: i for i in module.inputs.all()}
            self.remove_unlisted(current, inputs, lambda i: f"CT input {i.ref}")
            for letter, ct_type in sorted(inputs.items()):
                ct_input = current.get(letter) or CtInput(module=module, letter=letter)
                self.sync(ct_input, f"CT input {serial}/{letter}", ct_type=ct_type)

    def write_input_modules(self) -> None:
        specs = self.doc.get("input_modules", [])
        existing = {m.serial: m for m in InputModule.objects.filter(location=self.location)}
        self.remove_unlisted(existing, {spec["serial"] for spec in specs}, lambda m: f"Input module {m.serial}")
        for spec in specs:
            serial = spec["serial"]
            module = existing.get(serial) or InputModule(location=self.location)
            self.sync(module, f"Input module {serial}", serial=serial)
            inputs = spec.get("inputs", {})
            current = {i.number: i for i in module.inputs.all()}
            self.remove_unlisted(current, inputs, lambda i: f"input {i.ref} {i.name!r}")
            for number, input_spec in sorted(inputs.items()):
                digital_input = current.get(number) or DigitalInput(module=module, number=number)
                self.sync(
                    digital_input,
                    f"input {serial}/{number} {input_spec['name']!r}",
                    name=input_spec["name"],
                    mode=input_spec["mode"],
                    unit=input_spec.get("unit", ""),
                    pulses_per_unit=input_spec.get("pulses_per_unit"),
                )

    def write_output_modules(self) -> None:
        specs = self.doc.get("output_modules", [])
        existing = {m.serial: m for m in OutputModule.objects.filter(location=self.location)}
        self.remove_unlisted(existing, {spec["serial"] for spec in specs}, lambda m: f"Output module {m.serial}")
        for spec in specs:
            serial = spec["serial"]
            module = existing.get(serial) or OutputModule(location=self.location)
            self.sync(module, f"Output module {serial}", serial=serial, mode=spec["mode"])
            outputs = spec.get("outputs", {})
            current = {r.number: r for r in module.relays.all()}
            self.remove_unlisted(current, outputs, lambda r: f"output {r.ref} {r.name!r}")
            for number, output_spec in sorted(outputs.items()):
                relay = current.get(number) or Relay(module=module, number=number)
                self.sync(relay, f"output {serial}/{number} {output_spec['name']!r}", name=output_spec["name"])

    def match_loads(self, specs: list[dict]) -> dict[int, Load]:
        """The stored load each file entry updates, by index: same name, else (a rename) same kind and CTs.

        Keeping a renamed load's row keeps the history recorded for it.
        """
        existing = list(Load.objects.filter(location=self.location).prefetch_related("cts__ct_input__module"))
        by_name = {load.name: load for load in existing}
        matched = {i: by_name[spec["name"]] for i, spec in enumerate(specs) if spec["name"] in by_name}
        free = [load for load in existing if load not in matched.values()]
        for i, spec in enumerate(specs):
            refs = {ct["ct"] for ct in spec.get("cts", [])}
            if i in matched or not refs:
                continue
            same = next(
                (
                    load
                    for load in free
                    if load.kind == spec["kind"] and {lc.ct_input.ref for lc in load.cts.all()} == refs
                ),
                None,
            )
            if same is not None:
                matched[i] = same
                free.remove(same)
        return matched

    def write_loads(self, powerbox: PowerBox) -> None:
        specs = self.doc.get("loads", [])
        matched = self.match_loads(specs)
        kept = {load.pk for load in matched.values()}
        for load in Load.objects.filter(location=self.location).exclude(pk__in=kept):
            self.delete(load, f"load {load.name!r}")
        inputs = {i.ref: i for i in CtInput.objects.filter(module__powerbox=powerbox).select_related("module")}
        wanted: dict[int, tuple[Load, str, bool, int]] = {}
        for position, spec in enumerate(specs):
            load = matched.get(position) or Load(location=self.location)
            self.sync(load, f"load {spec['name']!r}", name=spec["name"], kind=spec["kind"], position=position)
            for ct_position, ct in enumerate(spec.get("cts", [])):
                wanted[inputs[ct["ct"]].pk] = (load, ct["phase"], bool(ct.get("reversed", False)), ct_position)
        current = {lc.ct_input_id: lc for lc in LoadCt.objects.filter(load__location=self.location)}
        self.remove_unlisted(current, wanted, lambda lc: f"CT {lc.ct_input.ref} of load {lc.load.name!r}")
        refs = {i.pk: ref for ref, i in inputs.items()}
        for input_id, (load, phase, is_reversed, position) in wanted.items():
            load_ct = current.get(input_id) or LoadCt(ct_input_id=input_id)
            self.sync(
                load_ct,
                f"CT {refs[input_id]} of load {load.name!r}",
                load_id=load.pk,
                phase=phase,
                reversed=is_reversed,
                position=position,
            )


def rotate_gateway_token(gateway: Gateway, *, reason: str = "") -> str:
    """Issue a new ingest token for ``gateway`` (the old one stops working) and log it. Returns it once."""
    token = gateway.rotate_token()
    Event.objects.create(
        location=gateway.location,
        kind=Event.CONFIGURATION,
        module=gateway.serial,
        message=f"A new ingest token was issued for gateway {gateway.serial}{f' ({reason})' if reason else ''}; "
        "the previous token no longer works.",
    )
    return token


# --- export ----------------------------------------------------------------------------------


def export_installation(location: Location) -> dict:
    """The installation file of a stored location, ``location.id`` included (SPEC 5.1)."""
    doc, _paths = build_document(Snapshot.of(location), with_id=True)
    return doc


def _number(value: float | None) -> float | int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --- snapshots: an installation's rows, with pending edits laid over them ----------------------


def row_key(obj: models.Model) -> tuple:
    """Identity of a row: its primary key once saved, the Python object before."""
    label = obj._meta.label
    return (label, "pk", obj.pk) if obj.pk is not None else (label, "new", id(obj))


def _related_key(obj: models.Model, name: str) -> tuple | None:
    """The identity of the row a foreign key points at, without querying when it is cached."""
    fk = obj._meta.get_field(name)
    if fk.is_cached(obj):
        related = fk.get_cached_value(obj)
        return None if related is None else row_key(related)
    value = getattr(obj, fk.attname)
    return None if value is None else (fk.related_model._meta.label, "pk", value)


def _parent(obj: models.Model) -> models.Model | None:
    fk = obj._meta.get_field(PARENT_FIELD[type(obj)])
    if fk.is_cached(obj):
        return fk.get_cached_value(obj)
    if getattr(obj, fk.attname) is None:
        return None
    return getattr(obj, fk.name)


def location_of(obj: models.Model) -> Location | None:
    """The location a part of an installation belongs to (None while it is not attached yet)."""
    while obj is not None and not isinstance(obj, Location):
        obj = _parent(obj)
    return obj


def _ancestors(obj: models.Model) -> list[models.Model]:
    """The in-memory parents of ``obj`` (nearest first): pending edits of those count too."""
    chain = []
    while type(obj) in PARENT_FIELD:
        fk = obj._meta.get_field(PARENT_FIELD[type(obj)])
        if not fk.is_cached(obj):
            break
        obj = fk.get_cached_value(obj)
        if obj is None:
            break
        chain.append(obj)
    return chain


@dataclass
class Snapshot:
    """The rows of one installation in memory. ``put`` and ``remove`` lay pending edits over them."""

    location: Location
    parts: dict[type[models.Model], list[models.Model]]

    @classmethod
    def of(cls, location: Location | None) -> Snapshot:
        """The stored state of ``location`` (an empty installation if it is not saved)."""
        stored = Location.objects.filter(pk=location.pk).first() if location and location.pk else None
        if stored is None:
            return cls(Location(), {model: [] for model in PARENT_FIELD})
        return cls(
            stored,
            {
                Gateway: list(Gateway.objects.filter(location=stored)),
                PowerBox: list(PowerBox.objects.filter(location=stored)),
                CtModule: list(CtModule.objects.filter(powerbox__location=stored)),
                CtInput: list(CtInput.objects.filter(module__powerbox__location=stored)),
                InputModule: list(InputModule.objects.filter(location=stored)),
                DigitalInput: list(DigitalInput.objects.filter(module__location=stored)),
                OutputModule: list(OutputModule.objects.filter(location=stored)),
                Relay: list(Relay.objects.filter(module__location=stored)),
                Load: list(Load.objects.filter(location=stored)),
                LoadCt: list(LoadCt.objects.filter(load__location=stored).select_related("ct_input__module")),
            },
        )

    def copy(self) -> Snapshot:
        return Snapshot(self.location, {model: list(objs) for model, objs in self.parts.items()})

    def put(self, obj: models.Model) -> None:
        """Add ``obj`` or replace the row it is a pending edit of."""
        if isinstance(obj, Location):
            self.location = obj
            return
        objs = self.parts[type(obj)]
        key = row_key(obj)
        for i, other in enumerate(objs):
            if row_key(other) == key:
                objs[i] = obj
                return
        objs.append(obj)

    def put_with_ancestors(self, obj: models.Model) -> None:
        for ancestor in reversed(_ancestors(obj)):
            self.put(ancestor)
        self.put(obj)

    def remove(self, obj: models.Model) -> None:
        """Drop ``obj`` and, like the database's cascade, everything that belongs to it."""
        if isinstance(obj, Location):
            return
        key = row_key(obj)
        self.parts[type(obj)] = [o for o in self.parts[type(obj)] if row_key(o) != key]
        for model, name in PARENT_FIELD.items():
            if model._meta.get_field(name).related_model is type(obj):
                for child in [c for c in self.parts[model] if _related_key(c, name) == key]:
                    self.remove(child)
        if isinstance(obj, CtInput):
            for load_ct in [c for c in self.parts[LoadCt] if _related_key(c, "ct_input") == key]:
                self.remove(load_ct)

    def children(self, model: type[models.Model], parent: models.Model | None) -> list[models.Model]:
        if parent is None:
            return []
        key = row_key(parent)
        return [o for o in self.parts[model] if _related_key(o, PARENT_FIELD[model]) == key]


def _ordered(objs: list[models.Model], *fields: str) -> list[models.Model]:
    return sorted(objs, key=lambda o: (*(getattr(o, f) for f in fields), o.pk is None, o.pk or 0))


def build_document(snapshot: Snapshot, *, with_id: bool = False) -> tuple[dict, dict[tuple, str]]:
    """The installation file of a snapshot, and the JSON path of each row in it (by row identity)."""
    paths: dict[tuple, str] = {}
    location = snapshot.location
    paths[row_key(location)] = "location"
    loc: dict[str, Any] = {"id": location.pk} if with_id and location.pk else {}
    loc["name"] = location.name
    if location.address:
        loc["address"] = location.address
    loc.update(timezone=location.timezone, topology=location.topology, frequency=location.frequency_hz)
    doc: dict[str, Any] = {"location": loc}

    gateways = snapshot.children(Gateway, location)
    if gateways:
        gateway = gateways[0]
        paths[row_key(gateway)] = "gateway"
        doc["gateway"] = {"model": gateway.model, "serial": gateway.serial, "connectivity": gateway.connectivity}
        if gateway.wifi_ssid or gateway.wifi_password:
            doc["gateway"]["wifi"] = {"ssid": gateway.wifi_ssid, "password": gateway.wifi_password}

    powerboxes = snapshot.children(PowerBox, location)
    powerbox = powerboxes[0] if powerboxes else None
    if powerbox is not None:
        paths[row_key(powerbox)] = "powerbox"
        doc["powerbox"] = {"serial": powerbox.serial}
        for name in ("bus_a_length_m", "bus_b_length_m"):
            if getattr(powerbox, name) is not None:
                doc["powerbox"][name] = _number(getattr(powerbox, name))

    refs: dict[tuple, str] = {}
    modules = _ordered(snapshot.children(CtModule, powerbox), "position")
    for list_key, kind in (("ct_hubs", CtModule.HUB), ("solid_core_cts", CtModule.SOLID_CORE)):
        doc[list_key] = []
        for module in (m for m in modules if m.kind == kind):
            path = f"{list_key}[{len(doc[list_key])}]"
            paths[row_key(module)] = path
            inputs = {}
            for ct_input in _ordered(snapshot.children(CtInput, module), "letter"):
                inputs[ct_input.letter] = ct_input.ct_type
                paths[row_key(ct_input)] = f"{path}.inputs.{ct_input.letter}"
                refs[row_key(ct_input)] = f"{module.serial}/{ct_input.letter}"
            doc[list_key].append({"serial": module.serial, "inputs": inputs})

    doc["input_modules"] = []
    for i, module in enumerate(_ordered(snapshot.children(InputModule, location), "serial")):
        path = f"input_modules[{i}]"
        paths[row_key(module)] = path
        inputs = {}
        for digital_input in _ordered(snapshot.children(DigitalInput, module), "number"):
            spec: dict[str, Any] = {"name": digital_input.name, "mode": digital_input.mode}
            if digital_input.unit:
                spec["unit"] = digital_input.unit
            if digital_input.pulses_per_unit is not None:
                spec["pulses_per_unit"] = _number(digital_input.pulses_per_unit)
            inputs[digital_input.number] = spec
            paths[row_key(digital_input)] = f"{path}.inputs.{digital_input.number}"
        doc["input_modules"].append({"serial": module.serial, "inputs": inputs})

    doc["output_modules"] = []
    for i, module in enumerate(_ordered(snapshot.children(OutputModule, location), "serial")):
        path = f"output_modules[{i}]"
        paths[row_key(module)] = path
        outputs = {}
        for relay in _ordered(snapshot.children(Relay, module), "number"):
            outputs[relay.number] = {"name": relay.name}
            paths[row_key(relay)] = f"{path}.outputs.{relay.number}"
        doc["output_modules"].append({"serial": module.serial, "mode": module.mode, "outputs": outputs})

    doc["loads"] = []
    for i, load in enumerate(_ordered(snapshot.children(Load, location), "position")):
        path = f"loads[{i}]"
        paths[row_key(load)] = path
        cts = []
        for load_ct in _ordered(snapshot.children(LoadCt, load), "position"):
            input_key = _related_key(load_ct, "ct_input")
            if input_key is None:
                continue
            ref = refs.get(input_key) or load_ct.ct_input.ref  # a CT input of another installation
            entry: dict[str, Any] = {"ct": ref, "phase": load_ct.phase}
            if load_ct.reversed:
                entry["reversed"] = True
            paths[row_key(load_ct)] = f"{path}.cts[{len(cts)}]"
            cts.append(entry)
        doc["loads"].append({"name": load.name, "kind": load.kind, "cts": cts})

    integrations = integrations_document(location)
    if integrations:
        doc["integrations"] = integrations
    return doc, paths


def integrations_document(location: Location) -> dict[str, Any]:
    """The ``integrations`` of an installation file; empty when none is set. The password is masked."""
    doc: dict[str, Any] = {}
    if location.smappee_mqtt:
        doc["smappee_mqtt"] = True
    if location.home_assistant:
        doc["home_assistant"] = True
    if location.mqtt_broker_url:
        broker = {"url": location.mqtt_broker_url}
        if location.mqtt_broker_username:
            broker["username"] = location.mqtt_broker_username
        if location.mqtt_broker_password:
            broker["password"] = rules.MASKED_PASSWORD
        doc["mqtt_broker"] = broker
    return doc


def snapshot_violations(snapshot: Snapshot) -> tuple[list[Violation], dict[tuple, str]]:
    """Every violation of a snapshot's installation, and the path of each row."""
    doc, paths = build_document(snapshot)
    context = Context(location_id=snapshot.location.pk, owners=serial_owners(doc))
    return rules.check_installation(doc, context), paths


def location_violations(location: Location) -> list[Violation]:
    """Every rule a stored location breaks (errors and warnings)."""
    return snapshot_violations(Snapshot.of(location))[0]


def pending_errors(
    changed: Sequence[models.Model] = (), deleted: Sequence[models.Model] = ()
) -> tuple[list[Violation], dict[tuple, str]]:
    """The rule errors that saving ``changed`` and deleting ``deleted`` would add to their installation.

    The objects' in-memory parents (say the Load a new LoadCt is attached to in a form) count as
    pending edits too, but their own problems are not reported here: errors already present
    without the objects are left out, so each edit is blamed only for what it breaks.
    Returns the new errors and the JSON path of every row (see :func:`build_document`).
    """
    anchor = next(iter([*changed, *deleted]), None)
    location = location_of(anchor) if anchor is not None else None
    if location is None:
        return [], {}
    before = Snapshot.of(location)
    for obj in [*changed, *deleted]:
        for ancestor in reversed(_ancestors(obj)):
            before.put(ancestor)
    after = before.copy()
    for obj in deleted:
        after.remove(obj)
    for obj in changed:
        after.put(obj)
    known = {v.message for v in snapshot_violations(before)[0]}
    found, paths = snapshot_violations(after)
    return [v for v in found if v.is_error and v.message not in known], paths


def field_for(violation: Violation, path: str | None) -> str | None:
    """The model field a violation is about, when it is about the row at ``path``."""
    if not path or not violation.path.startswith(f"{path}."):
        return None
    rest = violation.path[len(path) + 1 :]
    return FIELD_FOR_PATH.get(rest, rest)


def clean_with_rules(obj: models.Model) -> None:
    """``obj.full_clean()`` and the installation rules (:func:`check_pending`), their errors
    raised together: the check for code that edits rows directly. The admin's forms do the same
    (:class:`devices.admin.RulesModelForm`)."""
    errors: dict = {}
    for check in (obj.full_clean, lambda: check_pending(obj)):
        try:
            check()
        except ValidationError as problem:
            errors = problem.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)


def check_pending(obj: models.Model) -> None:
    """Raise the ValidationError an edit of ``obj`` deserves under the installation rules.

    Used by :func:`clean_with_rules` and the admin's forms. The errors are non-field errors (the form showing them may
    not have every field); each carries ``params={"field": ...}`` naming the model field it is
    about, when there is one, so forms can show it next to that field.
    """
    if location_of(obj) is None:
        return
    errors, paths = pending_errors(changed=[obj])
    if not errors:
        return
    path = paths.get(row_key(obj))
    fields = {f.name for f in obj._meta.get_fields()}
    raise ValidationError(
        {
            NON_FIELD_ERRORS: [
                ValidationError(
                    v.message.replace("%", "%%"),
                    code="installation_rule",
                    params={"field": f if (f := field_for(v, path)) in fields else None, "path": v.path},
                )
                for v in errors
            ]
        }
    )

"""A location's automations: list, read, create (optionally from a ready-made template), update, delete.

Validation is the automations page's own, :class:`metering.automations.forms.AutomationForm`
(field bounds, the location's relays, loads and inputs only, and ``Automation.clean``), so the
API refuses exactly what the page refuses, with the same messages, and stores nothing then.
Every member lists them; owners, installers and support staff change them, as on the page
(:func:`dashboard.automations.may_edit`). A disabled or deleted automation stops at once (the
runner forgets it on save and delete).
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Literal

from django.forms.models import model_to_dict
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status

from dashboard.api.errors import ApiError
from dashboard.api.locations import ERRORS, location_for
from dashboard.api.schemas import ErrorOut
from dashboard.automations import REFUSED, may_edit, record_support_change
from devices.models import Location
from metering.automations.forms import FIELDS, AutomationForm
from metering.automations.models import QUANTITY_CHOICES, Automation
from metering.automations.presets import PRESETS

router = Router(tags=["automations"])

Quantity = Literal[tuple(key for key, _ in QUANTITY_CHOICES)]
Template = Literal[tuple(PRESETS)]
WRITE_ERRORS = {403: ErrorOut, **ERRORS}


class AutomationFields(Schema):
    """What an automation says: "when <quantity> is <direction> <threshold> for <duration_s>, switch <relay> <action>"."""

    name: str = Field(description="Unique within the location, at most 80 characters.")
    enabled: bool = True
    quantity: Quantity = Field(description="What is watched (grid_export, load_power, input_state, clock, ...).")
    load: int | None = Field(None, description="Load id, for load_power.")
    input: int | None = Field(None, description="Input id, for input_state and input_rate.")
    direction: Literal["above", "below"] = "above"
    threshold: float = Field(0.0, description="In the quantity's unit: W, A, or the input's unit per hour.")
    release: float | None = Field(None, description="Hysteresis: the rule ends only past this value.")
    duration_s: int = Field(0, description="How long the condition, and its end, must last (s), at most 86400.")
    hours_from: time | None = Field(None, description="Only from this local time (HH:MM).")
    hours_until: time | None = Field(None, description="Until this local time; may be past midnight.")
    relay: int = Field(description="Relay id of one of the location's Output modules.")
    action: Literal["on", "off"] = "on"
    on_minutes: int | None = Field(None, description="Switch on for 5, 15, 30 or 60 minutes only.")
    revert: bool = Field(False, description="Switch back when the condition ends.")
    min_on_minutes: int = 0
    min_off_minutes: int = 0
    may_override_manual: bool = Field(False, description="Else it leaves a relay alone that was switched by hand.")
    manual_window_minutes: int = 60


class AutomationCreateIn(Schema):
    """Every field of an automation; with ``template`` the template's values fill in those not given."""

    template: Template | None = Field(None, description="Start from a ready-made template.")
    name: str | None = None
    enabled: bool | None = None
    quantity: Quantity | None = None
    load: int | None = None
    input: int | None = None
    direction: Literal["above", "below"] | None = None
    threshold: float | None = None
    release: float | None = None
    duration_s: int | None = None
    hours_from: time | None = None
    hours_until: time | None = None
    relay: int | None = None
    action: Literal["on", "off"] | None = None
    on_minutes: int | None = None
    revert: bool | None = None
    min_on_minutes: int | None = None
    min_off_minutes: int | None = None
    may_override_manual: bool | None = None
    manual_window_minutes: int | None = None


class AutomationPatchIn(AutomationCreateIn):
    """Only the fields to change (``{"enabled": false}`` disables it)."""

    template: None = Field(None, description="Not for an update.")


class AutomationOut(AutomationFields):
    id: int
    template: str
    sentence: str = Field(description="The automation in words, with units.")
    last_fired_at: datetime | None = Field(description="When it last asked for a switch.")
    created_at: datetime
    updated_at: datetime


def _out(automation: Automation) -> dict:
    state = getattr(automation, "state", None)
    fired = datetime.fromtimestamp(state.fired_at, UTC) if state is not None and state.fired_at else None
    return {
        **model_to_dict(automation, fields=FIELDS),
        "id": automation.pk,
        "template": automation.template,
        "sentence": automation.sentence(),
        "last_fired_at": fired,
        "created_at": automation.created_at,
        "updated_at": automation.updated_at,
    }


def _editable(request: HttpRequest, location_id: int) -> tuple[Location, str | None]:
    """The location and the caller's role there, if they may change its automations (else 403)."""
    location = location_for(request, location_id)
    role = location.role_of(request.auth)
    if not may_edit(request, role):
        raise ApiError(REFUSED, None, 403)
    return location, role


def _automation(location: Location, automation_id: int) -> Automation:
    return get_object_or_404(
        Automation.objects.select_related("relay__module", "load", "input__module", "location", "state"),
        pk=automation_id,
        location=location,
    )


def _form_data(values: dict) -> dict:
    """JSON values as the form reads posted values (an absent checkbox is false, None is empty)."""
    data = {}
    for name, value in values.items():
        if value is None:
            data[name] = ""
        elif isinstance(value, bool):
            data[name] = value
        elif isinstance(value, time):
            data[name] = value.strftime("%H:%M:%S")
        else:
            data[name] = str(value)
    return data


def _save(location: Location, values: dict, instance: Automation | None = None) -> Automation:
    form = AutomationForm(_form_data(values), location=location, instance=instance)
    if not form.is_valid():
        errors = form.errors.get_json_data()
        field = next(iter(errors))
        message = "; ".join(f"{name}: {e['message']}" for name, found in errors.items() for e in found)
        raise ApiError(message, None if field == "__all__" else field)
    return form.save()


@router.get(
    "/locations/{location_id}/automations", response={200: list[AutomationOut], **ERRORS}, summary="Automations"
)
def automations(request: HttpRequest, location_id: int):
    location = location_for(request, location_id)
    rows = location.automations.select_related("relay__module", "load", "input__module", "location", "state")
    return [_out(automation) for automation in rows]


@router.get(
    "/locations/{location_id}/automations/{automation_id}",
    response={200: AutomationOut, **ERRORS},
    summary="One automation",
)
def automation(request: HttpRequest, location_id: int, automation_id: int):
    return _out(_automation(location_for(request, location_id), automation_id))


@router.post(
    "/locations/{location_id}/automations",
    response={201: AutomationOut, **WRITE_ERRORS},
    summary="Create an automation",
    description="Validated as on the automations page. With `template` (self-consumption, "
    "ev-surplus, ev-off-peak, overload), the template's values fill in the fields not given.",
)
def create_automation(request: HttpRequest, location_id: int, body: AutomationCreateIn):
    location, role = _editable(request, location_id)
    given = body.dict(exclude_unset=True)
    template = given.pop("template", None)
    defaults = AutomationFields.model_fields
    values = {field: None if defaults[field].is_required() else defaults[field].get_default() for field in FIELDS}
    if template:
        values.update(PRESETS[template].initial(location))
    values.update(given)
    automation = _save(location, values)
    automation.template = template or ""
    automation.save(update_fields=["template"])
    record_support_change(request.auth, location, role, automation.name, "created")
    return Status(201, _out(_automation(location, automation.pk)))


@router.patch(
    "/locations/{location_id}/automations/{automation_id}",
    response={200: AutomationOut, **WRITE_ERRORS},
    summary="Change an automation",
)
def update_automation(request: HttpRequest, location_id: int, automation_id: int, body: AutomationPatchIn):
    location, role = _editable(request, location_id)
    current = _automation(location, automation_id)
    values = {**model_to_dict(current, fields=FIELDS), **body.dict(exclude_unset=True, exclude={"template"})}
    saved = _save(location, values, instance=current)
    record_support_change(request.auth, location, role, saved.name, "changed")
    return _out(_automation(location, automation_id))


@router.delete(
    "/locations/{location_id}/automations/{automation_id}",
    response={204: None, **WRITE_ERRORS},
    summary="Delete an automation",
)
def delete_automation(request: HttpRequest, location_id: int, automation_id: int):
    location, role = _editable(request, location_id)
    automation = _automation(location, automation_id)
    automation.delete()
    record_support_change(request.auth, location, role, automation.name, "deleted")
    return Status(204, None)

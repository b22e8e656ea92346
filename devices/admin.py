"""Django admin for installations: locations with their modules and loads, gateways, events.

Every form applies the installation rules of :mod:`devices.rules` — :class:`RulesModelForm` for
each object (:func:`devices.installation.check_pending`), :class:`RulesInlineFormSet` for what only shows across the rows of an inline (two
CTs of one load on the same phase, say) — so an admin reads the message the import command prints.

Actions on locations: *Export installation file* downloads ``installation-<id>-<name>.json``
for one selected location, or ``installations.zip`` holding one such file per location when
several are selected (each file can be fed to ``import_installation``). *Rotate gateway token*
issues a new ingest token and shows it once in a message; only its hash is stored.
"""

from __future__ import annotations

import io
import json
import zipfile

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.text import slugify

from devices import catalogue
from devices.installation import (
    check_pending,
    export_installation,
    field_for,
    location_violations,
    pending_errors,
    rotate_gateway_token,
    row_key,
)
from devices.models import (
    CommissioningReport,
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
)
from devices.rules import MASKED_PASSWORD

# --- forms that show rule errors where they belong ---------------------------------------------


class RulesModelForm(forms.ModelForm):
    """A model form that checks its object against the installation rules and shows each error
    at its field.

    :func:`devices.installation.check_pending` raises rule errors as non-field errors naming
    their field in ``params`` (it cannot know which fields a form has); this form knows.
    """

    def _post_clean(self) -> None:
        super()._post_clean()
        try:  # even beside field errors, as Django runs a model's clean()
            check_pending(self.instance)
        except ValidationError as problem:
            self._update_errors(problem)
        errors = self._errors.get(NON_FIELD_ERRORS) if self._errors else None
        if not errors:
            return
        keep, move = [], []
        for error in errors.as_data():
            field = (error.params or {}).get("field") if error.code == "installation_rule" else None
            if field in self.fields:
                move.append((field, error))
            else:
                keep.append(error)
        if not move:
            return
        if keep:
            self._errors[NON_FIELD_ERRORS] = self.error_class(keep, error_class="nonfield", renderer=self.renderer)
        else:
            del self._errors[NON_FIELD_ERRORS]
        for field, error in move:
            self.add_error(field, error)


class RulesInlineFormSet(BaseInlineFormSet):
    """An inline formset that checks its rows together against the installation rules."""

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        # Attach the parent object itself, pending edits included (Django sets only its id).
        self.fk.set_cached_value(form.instance, self.instance)
        return form

    def clean(self) -> None:
        super().clean()
        kept = [form for form in self.forms if not (self.can_delete and self._should_delete_form(form))]
        if any(form.errors for form in kept):
            return  # each row's own rule errors are already on it
        changed = [form for form in kept if form.has_changed()]
        deleted = [form.instance for form in self.forms if form not in kept and form.instance.pk is not None]
        if not changed and not deleted:
            return
        errors, paths = pending_errors(changed=[form.instance for form in changed], deleted=deleted)
        unplaced = []
        for violation in errors:
            form, path = _form_at(violation.path, changed, paths)
            if form is None:
                unplaced.append(violation.message)
                continue
            field = field_for(violation, path)
            form.add_error(field if field in form.fields else None, violation.message)
        if unplaced:
            raise ValidationError(unplaced)


def _form_at(path: str, forms_: list[forms.ModelForm], paths: dict[tuple, str]) -> tuple[forms.ModelForm | None, str]:
    """The form whose row sits deepest above ``path`` in the installation document."""
    best, best_path = None, ""
    for form in forms_:
        row_path = paths.get(row_key(form.instance), "")
        if row_path and len(row_path) > len(best_path):
            if path == row_path or path.startswith((f"{row_path}.", f"{row_path}[")):
                best, best_path = form, row_path
    return best, best_path


class RulesInline:
    form = RulesModelForm
    formset = RulesInlineFormSet


def _choice_field(values: tuple[str, ...], label: str) -> forms.ChoiceField:
    return forms.ChoiceField(choices=[(v, v) for v in values], label=label)


class CtInputForm(RulesModelForm):
    letter = _choice_field(catalogue.CT_HUB_INPUTS, "input")

    class Meta:
        model = CtInput
        fields = ("letter", "ct_type")


class DigitalInputForm(RulesModelForm):
    number = _choice_field(catalogue.INPUT_MODULE_INPUTS, "input")

    class Meta:
        model = DigitalInput
        fields = ("number", "name", "mode", "unit", "pulses_per_unit")


class RelayForm(RulesModelForm):
    number = _choice_field(catalogue.OUTPUT_MODULE_OUTPUTS, "output")

    class Meta:
        model = Relay
        fields = ("number", "name")


def _announce_token(request: HttpRequest, gateway: Gateway, token: str) -> None:
    messages.warning(
        request,
        f"New ingest token for gateway {gateway.serial} ({gateway.location.name}): {token} — "
        "copy it now: only its hash is stored, it will not be shown again.",
    )


class TokenStatus:
    """Shows whether a gateway has an ingest token — never the token's hash."""

    @admin.display(description="ingest token")
    def token_status(self, gateway: Gateway) -> str:
        if not gateway.pk or not gateway.token_hash:
            return "none yet — use the “Rotate gateway token” action to issue one"
        issued = f" (issued {gateway.token_created_at:%Y-%m-%d %H:%M} UTC)" if gateway.token_created_at else ""
        return f"set{issued}; only its hash is stored"


class ParentReadonlyOnChange:
    """The object's place (location, Power Box, module) is chosen once; move a module by deleting it."""

    parent_field = "location"

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, self.parent_field) if obj is not None else fields


# --- locations -------------------------------------------------------------------------------


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


class GatewayInline(TokenStatus, RulesInline, admin.StackedInline):
    model = Gateway
    extra = 0
    max_num = 1
    fields = ("model", "serial", "connectivity", "wifi_ssid", "wifi_password", "token_status", "last_seen_at")
    readonly_fields = ("token_status", "last_seen_at")


class PowerBoxInline(RulesInline, admin.StackedInline):
    model = PowerBox
    extra = 0
    max_num = 1
    fields = ("serial", "bus_a_length_m", "bus_b_length_m")


class LoadInline(RulesInline, admin.TabularInline):
    model = Load
    extra = 0
    fields = ("name", "kind", "position", "ct_summary")
    readonly_fields = ("ct_summary",)
    show_change_link = True

    @admin.display(description="CTs (edit on the load's page)")
    def ct_summary(self, load: Load) -> str:
        if not load.pk:
            return "—"
        return ", ".join(f"{lc.ct_input.ref} {lc.phase}" for lc in load.cts.select_related("ct_input__module")) or "—"


class LocationForm(RulesModelForm):
    """A location, with its MQTT broker's password never shown back: empty keeps the stored one."""

    mqtt_broker_password = forms.CharField(
        label="MQTT broker password",
        required=False,
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_mqtt_broker_password = forms.BooleanField(label="Remove the stored password", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_password = self.instance.mqtt_broker_password if self.instance.pk else ""
        self.initial["mqtt_broker_password"] = ""
        self.fields["mqtt_broker_password"].help_text = (
            f"Stored: {MASKED_PASSWORD}. Leave empty to keep it." if self.stored_password else "No password stored."
        )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_mqtt_broker_password"):
            cleaned["mqtt_broker_password"] = ""
        elif not cleaned.get("mqtt_broker_password"):
            stored = self.instance.pk and Location.objects.filter(pk=self.instance.pk).first()
            if (
                self.stored_password
                and stored
                and (
                    cleaned.get("mqtt_broker_url") != stored.mqtt_broker_url
                    or cleaned.get("mqtt_broker_username") != stored.mqtt_broker_username
                )
            ):
                self.add_error(
                    "mqtt_broker_password",
                    "The broker or its username changed: give the password again "
                    "(the stored one belongs to the old broker), or remove it.",
                )
            cleaned["mqtt_broker_password"] = self.stored_password
        return cleaned


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    form = LocationForm
    list_display = ("name", "topology", "gateway_serial", "address", "created_at")
    list_filter = ("topology",)
    search_fields = ("name", "address", "gateway__serial")
    readonly_fields = ("installation_check", "uuid")
    fieldsets = (
        (None, {"fields": ("name", "address", "timezone", "topology", "frequency_hz", "installation_check")}),
        (
            "Integrations (docs/integrations.md)",
            {
                "fields": (
                    "smappee_mqtt",
                    "home_assistant",
                    "mqtt_broker_url",
                    "mqtt_broker_username",
                    "mqtt_broker_password",
                    "clear_mqtt_broker_password",
                    "uuid",
                )
            },
        ),
    )
    inlines = [MembershipInline, GatewayInline, PowerBoxInline, LoadInline]
    actions = ["export_installations", "rotate_gateway_tokens"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("gateway")

    @admin.display(description="gateway", ordering="gateway__serial")
    def gateway_serial(self, location: Location) -> str:
        gateway = getattr(location, "gateway", None)
        return gateway.serial if gateway else "—"

    @admin.display(description="installation check")
    def installation_check(self, location: Location) -> str:
        if not location.pk:
            return "—"
        violations = location_violations(location)
        if not violations:
            return "No rule of the manual is broken."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li>{} <code>{}</code>: {}</li>", ((v.severity, v.path, v.message) for v in violations)
            ),
        )

    def save_formset(self, request, form, formset, change):
        """A gateway added here, or given another serial (another device), gets a new ingest token."""
        renamed = []
        if formset.model is Gateway:
            renamed = [
                f.instance
                for f in formset.initial_forms
                if "serial" in f.changed_data and not formset._should_delete_form(f)
            ]
        super().save_formset(request, form, formset, change)
        if formset.model is Gateway:
            for gateway in [*formset.new_objects, *renamed]:
                _announce_token(request, gateway, rotate_gateway_token(gateway, reason="gateway set in the admin"))

    @admin.action(description="Export installation file (JSON; a ZIP of files when several are selected)")
    def export_installations(self, request: HttpRequest, queryset: QuerySet[Location]) -> HttpResponse:
        locations = list(queryset)

        def file_name(location: Location) -> str:
            return f"installation-{location.pk}-{slugify(location.name) or 'location'}.json"

        def text(location: Location) -> str:
            return json.dumps(export_installation(location), indent=2, ensure_ascii=False) + "\n"

        if len(locations) == 1:
            response = HttpResponse(text(locations[0]), content_type="application/json; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{file_name(locations[0])}"'
            return response
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for location in locations:
                archive.writestr(file_name(location), text(location))
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="installations.zip"'
        return response

    @admin.action(description="Rotate gateway token (shows the new token once)", permissions=["change"])
    def rotate_gateway_tokens(self, request: HttpRequest, queryset: QuerySet[Location]) -> None:
        for location in queryset:
            gateway = Gateway.objects.filter(location=location).first()
            if gateway is None:
                messages.error(request, f"{location.name} has no gateway: add one first.")
                continue
            _announce_token(request, gateway, rotate_gateway_token(gateway, reason="rotated in the admin"))


# --- gateways and Power Boxes ----------------------------------------------------------------


@admin.register(Gateway)
class GatewayAdmin(TokenStatus, ParentReadonlyOnChange, admin.ModelAdmin):
    form = RulesModelForm
    list_display = ("serial", "model", "location", "connectivity", "token_status", "last_seen_at")
    list_filter = ("model", "connectivity")
    search_fields = ("serial", "location__name")
    fields = (
        "location",
        "model",
        "serial",
        "connectivity",
        "wifi_ssid",
        "wifi_password",
        "token_status",
        "last_seen_at",
    )
    readonly_fields = ("token_status", "last_seen_at")
    list_select_related = ("location",)
    actions = ["rotate_tokens"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change or "serial" in form.changed_data:
            _announce_token(request, obj, rotate_gateway_token(obj, reason="gateway set in the admin"))

    @admin.action(description="Rotate gateway token (shows the new token once)", permissions=["change"])
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[Gateway]) -> None:
        for gateway in queryset.select_related("location"):
            _announce_token(request, gateway, rotate_gateway_token(gateway, reason="rotated in the admin"))


@admin.register(PowerBox)
class PowerBoxAdmin(ParentReadonlyOnChange, admin.ModelAdmin):
    form = RulesModelForm
    list_display = ("serial", "location", "bus_a_length_m", "bus_b_length_m")
    search_fields = ("serial", "location__name")
    list_select_related = ("location",)


# --- modules ---------------------------------------------------------------------------------


class CtInputInline(RulesInline, admin.TabularInline):
    model = CtInput
    form = CtInputForm
    extra = 0


@admin.register(CtModule)
class CtModuleAdmin(ParentReadonlyOnChange, admin.ModelAdmin):
    form = RulesModelForm
    parent_field = "powerbox"
    list_display = ("serial", "kind", "location", "position")
    list_filter = ("kind",)
    search_fields = ("serial", "powerbox__serial", "powerbox__location__name")
    list_select_related = ("powerbox__location",)
    inlines = [CtInputInline]

    @admin.display(description="location", ordering="powerbox__location__name")
    def location(self, module: CtModule) -> Location:
        return module.powerbox.location


class DigitalInputInline(RulesInline, admin.TabularInline):
    model = DigitalInput
    form = DigitalInputForm
    extra = 0


@admin.register(InputModule)
class InputModuleAdmin(ParentReadonlyOnChange, admin.ModelAdmin):
    form = RulesModelForm
    list_display = ("serial", "location")
    search_fields = ("serial", "location__name")
    list_select_related = ("location",)
    inlines = [DigitalInputInline]


class RelayInline(RulesInline, admin.TabularInline):
    model = Relay
    form = RelayForm
    extra = 0
    readonly_fields = ("is_on", "changed_at")


@admin.register(OutputModule)
class OutputModuleAdmin(ParentReadonlyOnChange, admin.ModelAdmin):
    form = RulesModelForm
    list_display = ("serial", "mode", "location")
    list_filter = ("mode",)
    search_fields = ("serial", "location__name")
    list_select_related = ("location",)
    inlines = [RelayInline]


# --- loads -----------------------------------------------------------------------------------


class LoadCtInline(RulesInline, admin.TabularInline):
    model = LoadCt
    extra = 0
    fields = ("ct_input", "phase", "reversed", "position")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        if obj is not None and "ct_input" in formset.form.base_fields:
            field = formset.form.base_fields["ct_input"]
            field.queryset = CtInput.objects.filter(module__powerbox__location=obj.location).select_related("module")
        return formset


@admin.register(Load)
class LoadAdmin(ParentReadonlyOnChange, admin.ModelAdmin):
    form = RulesModelForm
    list_display = ("name", "kind", "location", "ct_summary")
    list_filter = ("kind", "location")
    search_fields = ("name", "location__name")
    list_select_related = ("location",)
    inlines = [LoadCtInline]

    @admin.display(description="CTs")
    def ct_summary(self, load: Load) -> str:
        return ", ".join(f"{lc.ct_input.ref} {lc.phase}" for lc in load.cts.select_related("ct_input__module")) or "—"


# --- events ----------------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Events are history: readable, not editable."""

    list_display = ("time", "location", "kind", "module", "message")
    list_filter = ("kind", "location")
    search_fields = ("message", "module")
    date_hierarchy = "time"
    list_select_related = ("location",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CommissioningReport)
class CommissioningReportAdmin(admin.ModelAdmin):
    """Sign-offs are records: readable (with a link to the printable page), not editable."""

    list_display = ("signed_at", "location", "signed_by_name", "open_findings_count", "report_link")
    list_filter = ("location",)
    search_fields = ("signed_by_name", "notes", "location__name")
    date_hierarchy = "signed_at"
    list_select_related = ("location",)

    @admin.display(description="open findings")
    def open_findings_count(self, obj: CommissioningReport) -> int:
        return len(obj.open_findings)

    @admin.display(description="report")
    def report_link(self, obj: CommissioningReport) -> str:
        from django.urls import reverse

        return format_html(
            '<a href="{}">Printable report</a>', reverse("dashboard:report", args=[obj.location_id, obj.pk])
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

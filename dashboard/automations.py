"""The automations page of a location: list, create from a template, edit, enable or disable, delete.

Every member sees the list; owners, installers and support staff change it (viewers get 403,
someone else's location 404). The forms post and redirect, so the page works without
JavaScript; with htmx, enabling or disabling swaps just that automation's row. Validation is
:class:`metering.automations.forms.AutomationForm`'s, the same as the API's.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from dashboard.access import location_and_role
from devices.models import SUPPORT, Event, Location, Membership, Relay, support_note, supports_all_locations
from metering.automations.forms import AutomationForm
from metering.automations.models import Automation
from metering.automations.presets import PRESETS

REFUSED = "Only the owner or the installer of this location changes its automations."


def may_edit(request: HttpRequest, role: str | None) -> bool:
    """Owners, installers and support staff change automations; viewers only see them."""
    return role in (Membership.OWNER, Membership.INSTALLER) or bool(role and supports_all_locations(request.user))


def record_support_change(user, location: Location, role: str | None, name: str, what: str) -> None:
    """Support staff changing the automations of a location they are no member of are named in an
    Event, as for their other actions there (docs/security.md, "Access")."""
    if role != SUPPORT:
        return
    Event.objects.create(
        location=location,
        kind=Event.CONFIGURATION,
        message=f"Automation “{name}” {what} by {support_note(user)}.",
        data={"automation": name, "by": user.get_username(), "support": True},
    )


def _get_automation(location: Location, automation_id: int) -> Automation:
    return get_object_or_404(
        Automation.objects.select_related("relay__module", "load", "input__module", "location"),
        pk=automation_id,
        location=location,
    )


def _list_url(location: Location) -> str:
    return reverse("dashboard:automations", args=[location.pk])


def _row(automation: Automation) -> dict:
    state = getattr(automation, "state", None)
    fired = datetime.fromtimestamp(state.fired_at, UTC) if state and state.fired_at else None
    return {"automation": automation, "sentence": automation.sentence(), "state": state, "fired_at": fired}


@login_required
@require_safe
def automation_list(request: HttpRequest, pk: int) -> HttpResponse:
    location, role = location_and_role(request.user, pk)
    automations = location.automations.select_related("relay__module", "load", "input__module", "state", "location")
    return render(
        request,
        "dashboard/automations.html",
        {
            "location": location,
            "role": role,
            "can_edit": may_edit(request, role),
            "rows": [_row(automation) for automation in automations],
            "presets": PRESETS.values(),
            "has_relays": Relay.objects.filter(module__location=location).exists(),
        },
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def automation_new(request: HttpRequest, pk: int) -> HttpResponse:
    location, role = location_and_role(request.user, pk)
    if not may_edit(request, role):
        return HttpResponseForbidden(REFUSED)
    slug = request.POST.get("template") if request.method == "POST" else request.GET.get("template")
    preset = None
    if slug:
        preset = PRESETS.get(slug)
        if preset is None:
            raise Http404(f"There is no automation template {slug!r}.")
    if request.method == "POST":
        form = AutomationForm(request.POST, location=location)
        if form.is_valid():
            automation = form.save(commit=False)
            automation.template = preset.slug if preset else ""
            automation.save()
            record_support_change(request.user, location, role, automation.name, "created")
            messages.success(request, f"Automation “{automation.name}” saved.")
            return redirect(_list_url(location))
    else:
        form = AutomationForm(initial=preset.initial(location) if preset else {}, location=location)
    return _form_page(request, location, role, form, preset=preset, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def automation_edit(request: HttpRequest, pk: int, automation_id: int) -> HttpResponse:
    location, role = location_and_role(request.user, pk)
    automation = _get_automation(location, automation_id)
    if not may_edit(request, role):
        return HttpResponseForbidden(REFUSED)
    if request.method == "POST":
        form = AutomationForm(request.POST, location=location, instance=automation)
        if form.is_valid():
            form.save()
            record_support_change(request.user, location, role, automation.name, "changed")
            messages.success(request, f"Automation “{automation.name}” saved.")
            return redirect(_list_url(location))
    else:
        form = AutomationForm(location=location, instance=automation)
    return _form_page(request, location, role, form, automation=automation, status=400 if form.errors else 200)


def _form_page(request, location, role, form, *, preset=None, automation=None, status=200) -> HttpResponse:
    context = {
        "location": location,
        "role": role,
        "form": form,
        "preset": preset,
        "automation": automation,
        "has_relays": form.fields["relay"].queryset.exists(),
    }
    return render(request, "dashboard/automations_form.html", context, status=status)


@login_required
@require_POST
def automation_toggle(request: HttpRequest, pk: int, automation_id: int) -> HttpResponse:
    """Enable or disable: ``enabled=1`` or ``0`` (what the button says, so a repeated post does not flip back)."""
    location, role = location_and_role(request.user, pk)
    automation = _get_automation(location, automation_id)
    if not may_edit(request, role):
        return HttpResponseForbidden(REFUSED)
    wanted = request.POST.get("enabled")
    if wanted not in ("0", "1"):
        return HttpResponse("Send enabled=1 or enabled=0.", status=400, content_type="text/plain; charset=utf-8")
    automation.enabled = wanted == "1"
    automation.save(update_fields=["enabled", "updated_at"])
    record_support_change(
        request.user, location, role, automation.name, "enabled" if automation.enabled else "disabled"
    )
    if request.htmx:
        automation = _get_automation(location, automation_id)  # with its fresh state
        return render(
            request,
            "dashboard/automations.html#automation-row",
            {"location": location, "row": _row(automation), "can_edit": True},
        )
    messages.success(request, f"Automation “{automation.name}” {'enabled' if automation.enabled else 'disabled'}.")
    return redirect(_list_url(location))


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def automation_delete(request: HttpRequest, pk: int, automation_id: int) -> HttpResponse:
    """GET asks for confirmation; POST deletes."""
    location, role = location_and_role(request.user, pk)
    automation = _get_automation(location, automation_id)
    if not may_edit(request, role):
        return HttpResponseForbidden(REFUSED)
    if request.method == "POST":
        name = automation.name
        automation.delete()
        record_support_change(request.user, location, role, name, "deleted")
        messages.success(request, f"Automation “{name}” deleted.")
        return redirect(_list_url(location))
    return render(
        request,
        "dashboard/automations_delete.html",
        {"location": location, "role": role, "automation": automation, "sentence": automation.sentence()},
    )

"""The installer's pages: validate the installation, apply the check's fixes, sign it off.

Manual section 9: "if loads are being measured, this does not automatically mean that the power
values are correct". The validation (:mod:`metering.validation`) judges every CT from the live
frames; this page shows its verdicts beside the live values, lets the installer apply a
suggested fix in one click and sign the installation off into a printable report.

Who may do what. As on the dashboard, a stranger gets 404 everywhere (never learns the location
exists) and a member without the right gets 403 (like a viewer asking to switch a relay):

============  =============  =================  ========  =======
role          validate page  apply a fix        sign off  reports
============  =============  =================  ========  =======
installer     yes            yes                yes       yes
support       yes            yes                yes       yes
owner         read-only      403                403       yes
viewer        403            403                403       403
stranger      404            404                404       404
============  =============  =================  ========  =======

*support* is a user with the ``devices.support_all_locations`` permission (superusers have it),
member or not; ``is_staff`` alone grants nothing here. The event a fix or a sign-off logs names
its user, and a support user who is no member of the location as such (``support=True``).

Live updates: the page's socket ``/ws/locations/<pk>/validate/`` joins one of two groups,
``validate.<pk>.fix`` (installer, support: the card has the fix buttons) or ``validate.<pk>.read``
(owner); :func:`dashboard.broadcast.push_validate` renders each variant once per location.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from dashboard import cards
from dashboard.access import location_and_role
from devices.models import SUPPORT, CommissioningReport, LoadCt, Location
from metering import live
from metering.installation_check import FixRefused, apply_fix, sign_off_installation

# ----------------------------------------------------------------------------- access


def _refuse_view() -> HttpResponse:
    return HttpResponseForbidden("Only the installer, the owner and support staff see the installation check.")


def _refuse_fix() -> HttpResponse:
    return HttpResponseForbidden("Only the installer and support staff change the installation or sign it off.")


# ----------------------------------------------------------------------------- forms


class FixForm(forms.Form):
    """One fix button of the validation card: which CT, what to do, and the state it was shown in."""

    ACTIONS = [
        ("phase", "Configure the suggested phase"),
        ("reverse", "Flip “reversed” in the configuration"),
        ("turned", "I turned the clamp"),
    ]

    ct = forms.CharField(max_length=80)
    action = forms.ChoiceField(choices=ACTIONS)
    phase = forms.CharField(max_length=2, required=False)
    flip = forms.BooleanField(required=False)
    from_phase = forms.CharField(max_length=2)
    from_reversed = forms.BooleanField(required=False)


class SignOffForm(forms.Form):
    notes = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Anything the next person should know (e.g. a load that could not be switched).",
    )


# ----------------------------------------------------------------------------- views


def _fix_result(request: HttpRequest, location: Location, notice: str | None, error: str | None) -> HttpResponse:
    """htmx: the outcome into ``#fix-result`` (outside the pushed card, so a push keeps it) and the
    card swapped out-of-band, so the change shows without waiting for the next push."""
    card = {**cards.validation_context(location, live.latest(location.pk)), "can_fix": True, "oob": True}
    return HttpResponse(
        render_to_string("dashboard/validate_fix_result.html", {"notice": notice, "error": error}, request)
        + render_to_string(cards.VALIDATE_TEMPLATES["card-validation"], card, request)
    )


@login_required
@require_safe
def validate_page(request: HttpRequest, pk: int) -> HttpResponse:
    location, role = location_and_role(request.user, pk)
    if not location.may_view_check(request.user, role):
        return _refuse_view()
    can_fix = location.may_fix(request.user, role)
    values = live.latest(location.pk)
    builders = {
        "card-validation": lambda: {**cards.validation_context(location, values), "can_fix": can_fix},
        "card-troubleshooting": lambda: cards.troubleshooting_context(location, values),
    }
    target = request.htmx.target if request.htmx else None
    if target in builders:
        return render(request, cards.VALIDATE_TEMPLATES[target], builders[target]())
    context = {
        "location": location,
        "role": role,
        "can_fix": can_fix,
        "reports": location.commissioning_reports.all()[:20],
        "sign_off_form": SignOffForm(),
    }
    for card_id, build in builders.items():
        context[card_id.removeprefix("card-")] = render_to_string(cards.VALIDATE_TEMPLATES[card_id], build(), request)
    return render(request, "dashboard/validate.html", context)


@login_required
@require_POST
def fix(request: HttpRequest, pk: int) -> HttpResponse:
    """Apply one fix of the validation card (htmx: the card comes back; without JS: redirect)."""
    location, role = location_and_role(request.user, pk)
    if not location.may_fix(request.user, role):
        return _refuse_fix()
    form = FixForm(request.POST)
    notice = error = None
    if not form.is_valid():
        error = "That fix could not be read; reload the page and try again."
    else:
        data = form.cleaned_data
        serial, _, letter = data["ct"].rpartition("/")
        load_ct = get_object_or_404(
            LoadCt.objects.select_related("load__location", "ct_input__module"),
            load__location=location,
            ct_input__module__serial=serial,
            ct_input__letter=letter,
        )
        try:
            event = apply_fix(
                load_ct,
                data["action"],
                phase=data["phase"],
                flip=data["flip"],
                user=request.user,
                values=live.latest(location.pk),
                support=role == SUPPORT,
                shown=(data["from_phase"], data["from_reversed"]),
            )
        except FixRefused as refused:
            error = str(refused)
        else:
            notice = event.message + " Switch loads on and off again: the check starts afresh."
    if request.htmx:
        # htmx swaps only successful responses, so a refused fix answers 200 with the message.
        return _fix_result(request, location, notice, error)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, notice)
    return redirect(reverse("dashboard:validate", args=[location.pk]) + "#card-validation")


@login_required
@require_POST
def sign_off(request: HttpRequest, pk: int) -> HttpResponse:
    location, role = location_and_role(request.user, pk)
    if not location.may_fix(request.user, role):
        return _refuse_fix()
    form = SignOffForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The notes are too long (4000 characters at most).")
        return redirect(reverse("dashboard:validate", args=[location.pk]) + "#sign-off")
    report = sign_off_installation(
        location, request.user, form.cleaned_data["notes"], live.latest(location.pk), support=role == SUPPORT
    )
    open_count = len(report.open_findings)
    messages.success(
        request,
        "Installation signed off"
        + (f" with {open_count} open finding{'s' if open_count != 1 else ''}." if open_count else "."),
    )
    return redirect("dashboard:report", location.pk, report.pk)


@login_required
@require_safe
def report_list(request: HttpRequest, pk: int) -> HttpResponse:
    location, role = location_and_role(request.user, pk)
    if not location.may_view_check(request.user, role):
        return _refuse_view()
    return render(
        request,
        "dashboard/report_list.html",
        {
            "location": location,
            "role": role,
            "reports": location.commissioning_reports.all(),
            "can_fix": location.may_fix(request.user, role),
        },
    )


@login_required
@require_safe
def report(request: HttpRequest, pk: int, report_pk: int) -> HttpResponse:
    location, role = location_and_role(request.user, pk)
    if not location.may_view_check(request.user, role):
        return _refuse_view()
    signed = get_object_or_404(CommissioningReport, pk=report_pk, location=location)
    return render(request, "dashboard/report.html", {**report_context(signed), "pdf_available": pdf_available()})


@login_required
@require_safe
def report_pdf(request: HttpRequest, pk: int, report_pk: int) -> HttpResponse:
    """The printable report as a PDF (WeasyPrint, with the page's print stylesheet)."""
    location, role = location_and_role(request.user, pk)
    if not location.may_view_check(request.user, role):
        return _refuse_view()
    signed = get_object_or_404(CommissioningReport, pk=report_pk, location=location)
    pdf = render_pdf(render_to_string("dashboard/report.html", report_context(signed), request))
    if pdf is None:
        return HttpResponse(
            "PDF export needs WeasyPrint and Pango on the server; print the report page instead.",
            status=501,
            content_type="text/plain; charset=utf-8",
        )
    response = HttpResponse(pdf, content_type="application/pdf")
    filename = f"commissioning-report-{location.pk}-{signed.pk}.pdf"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def pdf_available() -> bool:
    """WeasyPrint is installed and finds Pango (a system library)."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def render_pdf(html: str) -> bytes | None:
    """``html`` as a PDF with the project's stylesheet for print media; None without WeasyPrint.

    Nothing is fetched: the stylesheet is read from the static files, other URLs are not followed
    (the page's own ``<link>`` to the stylesheet has no base URL and is skipped).
    """
    if not pdf_available():
        return None
    import weasyprint

    stylesheet = weasyprint.CSS(filename=finders.find("css/app.css"))
    return weasyprint.HTML(string=html, media_type="print").write_pdf(stylesheets=[stylesheet])


def report_context(signed: CommissioningReport) -> dict:
    """The printable report, from what was stored at sign-off only."""
    doc = signed.installation or {}
    place = doc.get("location") or {}
    values = signed.live or {}
    ct_types = {
        f"{module['serial']}/{letter}": ct_type
        for module in [*doc.get("ct_hubs", []), *doc.get("solid_core_cts", [])]
        for letter, ct_type in (module.get("inputs") or {}).items()
    }
    measured = {phase["ct"]: phase for load in values.get("loads", []) for phase in load.get("phases", [])}
    per_ct = {v["ct"]: v for v in signed.verdicts if v.get("ct") and v.get("kind") in cards.CT_VERDICTS}
    loads = []
    for load in doc.get("loads", []):
        rows = []
        for entry in load.get("cts", []):
            verdict = per_ct.get(entry["ct"])
            rows.append(
                {
                    "ct": entry["ct"],
                    "ct_type": ct_types.get(entry["ct"], ""),
                    "phase": entry.get("phase"),
                    "reversed": bool(entry.get("reversed")),
                    "verdict": verdict,
                    "label": cards.CT_VERDICTS[verdict["kind"]][0] if verdict else "not judged",
                    "tone": cards.CT_VERDICTS[verdict["kind"]][1] if verdict else "muted",
                    "live": measured.get(entry["ct"]),
                }
            )
        loads.append({"name": load.get("name"), "kind": load.get("kind"), "rows": rows})
    location_findings = [
        {**v, "label": cards.LOCATION_VERDICTS[v["kind"]][0], "tone": cards.LOCATION_VERDICTS[v["kind"]][1]}
        for v in signed.verdicts
        if v.get("kind") in cards.LOCATION_VERDICTS
    ]
    return {
        "report": signed,
        "location": signed.location,
        "place": place,
        "timezone": place.get("timezone") or signed.location.timezone,
        "doc": doc,
        "loads": loads,
        "location_findings": location_findings,
        "open_findings": signed.open_findings,
        "values": values,
        "measured_at": datetime.fromtimestamp(values["t"], tz=UTC) if values.get("t") else None,
    }

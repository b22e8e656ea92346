"""Pages. Every view checks that the user belongs to the location it shows.

One view renders the dashboard; with htmx (``request.htmx``) and a card as the target it
renders just that card's partial, from the same context builder (:mod:`dashboard.cards`).
"""

from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from dashboard import cards, switching, usage
from dashboard.access import location_and_role
from dashboard.forms import DateOutOfRange, RelayForm, UsageForm
from devices.models import Location, Relay
from metering import live
from metering.relays import TIMED_MINUTES, CommandError


def _today(location: Location) -> date:
    return timezone.now().astimezone(location.zoneinfo).date()


def _usage(location: Location, params) -> dict:
    """The usage card's context; raises :class:`DateOutOfRange` for a date it does not show."""
    period_name, day = UsageForm(params, today=_today(location)).period_and_date()
    return cards.usage_context(location, period_name, day, params=params)


def _refuse_date(refused: DateOutOfRange) -> HttpResponse:
    return HttpResponseBadRequest(str(refused), content_type="text/plain; charset=utf-8")


@login_required
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    rows = []
    for location in Location.objects.visible_to(request.user):
        values = live.latest(location.pk)
        rows.append(
            {
                "location": location,
                "values": values,
                "totals": (values or {}).get("totals") or {},
                **cards.freshness(values and values.get("t"), timezone.now().timestamp()),
            }
        )
    return render(request, "dashboard/home.html", {"rows": rows})


@login_required
@require_safe
def location_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    location, role = location_and_role(request.user, pk)
    builders = {
        "card-live-values": lambda: cards.live_values_context(location, live.latest(location.pk)),
        "card-inputs": lambda: cards.inputs_context(location, live.latest(location.pk)),
        "card-relays": lambda: cards.relays_context(location, location.may_switch(request.user, role)),
        "card-usage": lambda: _usage(location, request.GET),
        "card-events": lambda: cards.events_context(
            location, request.GET.get("kind", ""), request.GET.get("page", 1), params=request.GET
        ),
    }
    target = request.htmx.target if request.htmx else None
    try:
        if target in builders:
            return render(request, cards.TEMPLATES[target], builders[target]())
        context = {"location": location, "role": role}
        for card_id, build in builders.items():
            # Rendered by the very templates a refresh or a push uses.
            context[card_id.removeprefix("card-").replace("-", "_")] = render_to_string(
                cards.TEMPLATES[card_id], build(), request
            )
    except DateOutOfRange as refused:
        return _refuse_date(refused)
    return render(request, "dashboard/location.html", context)


@login_required
@require_safe
def usage_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """Exactly the numbers the usage chart plots for the same ``period`` and ``date``."""
    location, _ = location_and_role(request.user, pk)
    try:
        context = _usage(location, request.GET)
    except DateOutOfRange as refused:
        return _refuse_date(refused)
    period = context["period"]
    response = HttpResponse(usage.usage_csv(context["table"], location), content_type="text/csv; charset=utf-8")
    filename = f"usage-{location.pk}-{period.name}-{period.first_day.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_POST
def switch_relay(request: HttpRequest, pk: int, relay_id: int) -> HttpResponse:
    """Ask the device to switch a relay. Its state changes when the device acknowledges."""
    location, role = location_and_role(request.user, pk)
    relay = get_object_or_404(Relay.objects.select_related("module"), pk=relay_id, module__location=location)
    if not location.may_switch(request.user, role):
        return HttpResponseForbidden("Only the owner of this location switches its relays.")
    form = RelayForm(request.POST)
    error = None
    if form.is_valid():
        on, minutes = form.switch()
        try:
            switching.switch(location, relay, on, minutes, request.user)
        except CommandError as problem:
            error = f"{relay.name}: {problem}"
    else:
        error = f"{relay.name}: choose on, off or a timed switch-on of {', '.join(map(str, TIMED_MINUTES))} minutes."
    if request.htmx:
        # htmx swaps only successful responses, so a refused request answers 200 with the message.
        return render(request, cards.TEMPLATES["card-relays"], {**cards.relays_context(location, True), "error": error})
    if error:
        messages.error(request, error)
    return redirect(reverse("dashboard:location", args=[location.pk]) + "#card-relays")

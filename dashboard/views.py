"""Pages. Every view checks that the user belongs to the location it shows."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from devices.models import Location


@login_required
def home(request: HttpRequest) -> HttpResponse:
    locations = Location.objects.visible_to(request.user)
    return render(request, "dashboard/home.html", {"locations": locations})

"""The API tokens page: a signed-in user creates and revokes their own tokens (docs/api.md).

A new token is shown once, in the answer to the form that created it, and never stored but as
its hash (so not in the session either, and the answer is marked ``no-store``).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.models import MAX_TOKENS_PER_USER, NAME_MAX_LENGTH, ApiToken


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=NAME_MAX_LENGTH,
        strip=True,
        help_text="What will use it, e.g. “Home Assistant” or “monthly export script”.",
    )


def _page(request: HttpRequest, form: ApiTokenForm, new_token: str | None = None, status: int = 200) -> HttpResponse:
    tokens = list(ApiToken.objects.for_user(request.user))
    context = {
        "form": form,
        "tokens": tokens,
        "new_token": new_token,
        "max_tokens": MAX_TOKENS_PER_USER,
        "at_limit": len(tokens) >= MAX_TOKENS_PER_USER,
        "docs_url": reverse("rest-api:openapi-view"),
    }
    return render(request, "dashboard/api_tokens.html", context, status=status)


@login_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request, ApiTokenForm())
    form = ApiTokenForm(request.POST)
    if form.is_valid():
        try:
            _, token = ApiToken.issue(request.user, form.cleaned_data["name"])
        except ValidationError as refused:
            form.add_error("name", refused)
        else:
            return _page(request, ApiTokenForm(), new_token=token, status=201)
    return _page(request, form, status=400)


@login_required
@require_POST
def revoke_api_token(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)  # never another user's
    token.delete()
    messages.success(request, f"Revoked the API token “{token.name}”: requests with it are refused from now on.")
    return redirect("api-tokens")

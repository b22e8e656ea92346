"""The :class:`ninja.NinjaAPI` of ``/api/``: operations under ``/api/v1/``, the OpenAPI
description at ``/api/v1/openapi.json`` and its Swagger UI at ``/api/docs/``.

The Swagger UI's script and styles are django-ninja's own copies, served as static files
(``ninja`` is in ``INSTALLED_APPS``; without it django-ninja would load them from a CDN).
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError

from dashboard.api import auth, automations, locations, relays
from dashboard.api.errors import ApiError

DESCRIPTION = """\
The Infinity Dashboard's REST API: your locations, their live values, energy history at the
aggregation levels 5min, hour, day, month and quarter (JSON and CSV), events, relay commands
and automations.

Authenticate with a personal API token, created on the *API tokens* page (`/account/api-tokens/`):
`Authorization: Bearer <token>`. A signed-in browser session works too (unsafe methods then need
the `X-CSRFToken` header). Errors are `{"error": "...", "field": "..."}` with a 4xx status.
See docs/api.md for examples.
"""

api = NinjaAPI(
    title="Infinity Dashboard API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="rest-api",
    auth=auth.USER,
    openapi_url="/v1/openapi.json",
    docs_url="/docs/",
    # No online validator: the page talks to this server only.
    docs=Swagger(settings={"validatorUrl": None}),
)


def error_response(request: HttpRequest, message: str, field: str | None, status: int) -> HttpResponse:
    response = api.create_response(request, {"error": message, "field": field}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, problem: ApiError) -> HttpResponse:
    return error_response(request, problem.message, problem.field, problem.status)


@api.exception_handler(AuthenticationError)
def on_not_authenticated(request: HttpRequest, problem: AuthenticationError) -> HttpResponse:
    message = str(problem)
    if message == "Unauthorized":  # ninja's own: no credentials at all
        message = "sign in, or send an API token as 'Authorization: Bearer <token>'"
    return error_response(request, message, "Authorization", 401)


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, problem: HttpError) -> HttpResponse:
    return error_response(request, str(problem), None, problem.status_code)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, problem: Http404) -> HttpResponse:
    return error_response(request, "not found", None, 404)


@api.exception_handler(ValidationError)
def on_invalid(request: HttpRequest, problem: ValidationError) -> HttpResponse:
    """Pydantic's findings as one 400 naming the first parameter at fault."""
    messages, field = [], None
    for finding in problem.errors:
        where = [str(part) for part in finding.get("loc", ()) if part not in ("query", "path", "body")]
        name = ".".join(where) or None
        field = field or name
        messages.append(f"{name}: {finding.get('msg')}" if name else str(finding.get("msg")))
    return error_response(request, "; ".join(messages) or "invalid request", field, 400)


api.add_router("/v1/", locations.router)
api.add_router("/v1/", relays.router)
api.add_router("/v1/", automations.router)

"""Who is calling: a user's API token, a signed-in browser session, or (for live values) a gateway.

An ``Authorization`` header decides on its own: a bad or revoked token is refused (401) even
when a session cookie came along, so a script never acts as whoever last signed in on the
machine. Without the header the session is used; it must then pass Django's CSRF check for
unsafe methods, as a form on the dashboard does.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import AuthenticationError, HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from dashboard.models import ApiToken
from metering.ingest.auth import gateway_for


class NotAuthenticated(AuthenticationError):
    """401 with the reason; the API's handler adds ``WWW-Authenticate``."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message)


def _bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None without the header.

    Raises :class:`NotAuthenticated` for a header in another form.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send the token as 'Authorization: Bearer <token>'")
    return token.strip()


class ApiTokenAuth(HttpBearer):
    """A user's API token (created on the API tokens page) as a bearer token.

    With ``gateways=True`` (the live values only) a location's gateway token is taken too (SPEC 5.3).
    One class either way, so the OpenAPI description has one bearer scheme.
    """

    def __init__(self, gateways: bool = False) -> None:
        super().__init__()
        self.gateways = gateways

    def __call__(self, request: HttpRequest):
        token = _bearer_token(request)
        if token is None:
            return None  # the session may still sign the request in
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str):
        user = ApiToken.user_for(token)
        if user is not None:
            request.user = user  # as a session would: code below the API reads request.user
            return user
        gateway = gateway_for(f"Bearer {token}") if self.gateways else None
        if gateway is None:
            raise NotAuthenticated("unknown or revoked API token")
        return gateway


class SessionAuth(APIKeyCookie):
    """The dashboard's session cookie; unsafe methods also need the CSRF token (``X-CSRFToken``)."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self) -> None:
        super().__init__(csrf=True)

    def _get_key(self, request: HttpRequest) -> str | None:
        # No CSRF check for a request no session signs in: it is refused with 401 anyway.
        if not request.user.is_authenticated:
            return None
        if check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken")
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None):
        return request.user if request.user.is_authenticated else None


USER = [ApiTokenAuth(), SessionAuth()]
USER_OR_GATEWAY = [ApiTokenAuth(gateways=True), SessionAuth()]

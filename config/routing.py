"""The WebSocket application: device routes authenticate with gateway tokens,
browser routes with the session and must come from the page's own origin.

- Device routes (:mod:`metering.routing`) come first; devices send no Origin header and the
  consumer checks their bearer token.
- Every other path goes through :class:`SameOriginValidator` (scheme, host *and* port) and the
  session; an unknown path from an allowed origin is accepted and closed at once with
  :data:`dashboard.access.UNKNOWN_PATH` (4404), from anywhere else refused at the handshake
  (HTTP 403). Never a "No route found" error.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host
from django.urls import re_path

from dashboard.access import UNKNOWN_PATH
from dashboard.routing import websocket_urlpatterns as browser_websocket_urlpatterns
from metering.routing import websocket_urlpatterns as device_websocket_urlpatterns

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_parts(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an ``http(s)://host[:port]`` origin, the port filled in; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path or parts.query or parts.username:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _allowed_hosts() -> list[str]:
    # As Django's HTTP side (and Channels' AllowedHostsOriginValidator): DEBUG with no
    # ALLOWED_HOSTS allows the local host names.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def _trusted(origin: str) -> bool:
    """``origin`` is in ``CSRF_TRUSTED_ORIGINS``, matched as Django's CSRF check does
    (exactly, or ``scheme://*.domain[:port]`` for its subdomains)."""
    scheme, _, netloc = origin.lower().partition("://")
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        entry_scheme, _, entry_netloc = entry.lower().partition("://")
        if entry_scheme != scheme:
            continue
        if entry_netloc == netloc or (entry_netloc.startswith("*.") and is_same_domain(netloc, entry_netloc[1:])):
            return True
    return False


def _secure(scope: dict, headers: dict[bytes, bytes]) -> bool:
    """The socket came in over TLS: ``wss``, or a trusted proxy says so (``SECURE_PROXY_SSL_HEADER``)."""
    if scope.get("scheme") == "wss":
        return True
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name, value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
        return headers.get(header, b"").decode("latin1").split(",")[0].strip() == value
    return False


def origin_allowed(scope: dict) -> bool:
    """The socket's Origin is the page's own: the scheme, host and port it was opened on.

    The Host header (whose name must be in ``ALLOWED_HOSTS``, as for HTTP) gives host and port,
    the connection (``wss``, or the proxy's header) the scheme. ``CSRF_TRUSTED_ORIGINS`` are
    allowed too. A client that sends no Host header (only test clients do) must come from an
    allowed host on its scheme's default port.
    """
    headers = dict(scope.get("headers", []))
    raw_origin = headers.get(b"origin")
    if not raw_origin:
        return False
    origin_text = raw_origin.decode("latin1")
    origin = _origin_parts(origin_text)
    if origin is None:
        return False
    if _trusted(origin_text):
        return True
    raw_host = headers.get(b"host")
    if raw_host is None:
        scheme, host, port = origin
        return port == DEFAULT_PORTS[scheme] and validate_host(host, _allowed_hosts())
    host_text = raw_host.decode("latin1")
    domain, _ = split_domain_port(host_text)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return False
    expected = _origin_parts(("https" if _secure(scope, headers) else "http") + "://" + host_text)
    return origin == expected


class SameOriginValidator:
    """ASGI middleware: passes browser sockets whose Origin :func:`origin_allowed`, refuses others."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


class UnknownPath(AsyncWebsocketConsumer):
    """No socket lives here: accept and close with 4404 (the page then does not retry)."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=UNKNOWN_PATH)


websocket_application = URLRouter(
    [
        *device_websocket_urlpatterns,
        re_path(
            r"^",
            SameOriginValidator(
                AuthMiddlewareStack(URLRouter([*browser_websocket_urlpatterns, re_path(r"", UnknownPath.as_asgi())]))
            ),
        ),
    ]
)

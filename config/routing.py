"""The WebSocket application: device routes authenticate with gateway tokens,
browser routes with the session and must come from an allowed origin."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import re_path

from dashboard.routing import websocket_urlpatterns as browser_websocket_urlpatterns
from metering.routing import websocket_urlpatterns as device_websocket_urlpatterns

websocket_application = URLRouter(
    [
        # Devices send no Origin header; the consumer checks their bearer token.
        *device_websocket_urlpatterns,
        re_path(r"^", AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(browser_websocket_urlpatterns)))),
    ]
)

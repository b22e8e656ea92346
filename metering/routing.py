"""Device WebSocket routes (token-authenticated, no browser origin check)."""

from django.urls import path

from metering.ingest.ws import IngestConsumer

websocket_urlpatterns = [path("ws/ingest/", IngestConsumer.as_asgi())]

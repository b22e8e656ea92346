"""Browser WebSocket routes (session-authenticated; config.routing adds the origin check)."""

from django.urls import path

from dashboard.consumers import LocationConsumer

websocket_urlpatterns = [path("ws/locations/<int:pk>/", LocationConsumer.as_asgi())]

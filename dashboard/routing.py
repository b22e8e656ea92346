"""Browser WebSocket routes (session-authenticated; config.routing adds the origin check)."""

from django.urls import path

from dashboard.consumers import LocationConsumer, ValidateConsumer

websocket_urlpatterns = [
    path("ws/locations/<int:pk>/", LocationConsumer.as_asgi()),
    path("ws/locations/<int:pk>/validate/", ValidateConsumer.as_asgi()),
]

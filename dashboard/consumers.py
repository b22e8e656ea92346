"""The browser's WebSocket for a location's live cards (``/ws/locations/<pk>/``).

Thin on purpose: check the signed-in user may see the location, join its group, forward the
HTML that :mod:`dashboard.broadcast` rendered once for everyone, leave on disconnect.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from dashboard.broadcast import group_name
from devices.models import Location


def _may_see(user, location_id: int) -> bool:
    return Location.objects.visible_to(user).filter(pk=location_id).exists()


class LocationConsumer(AsyncWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        location_id = self.scope["url_route"]["kwargs"]["pk"]
        if user is None or not user.is_authenticated or not await database_sync_to_async(_may_see)(user, location_id):
            await self.close()
            return
        self.group = group_name(location_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def card_update(self, event: dict) -> None:
        """Rendered card HTML from :func:`dashboard.broadcast.send`; the browser swaps it by id."""
        await self.send(text_data=event["html"])

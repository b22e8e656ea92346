"""The browser's WebSocket for a location's live cards (``/ws/locations/<pk>/``).

Thin on purpose: check the signed-in user may see the location, join its group, forward the
HTML that :mod:`dashboard.broadcast` rendered once for everyone, leave on disconnect.
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async

from config.consumers import WithoutConnectionHop
from dashboard.broadcast import WATCH_RENEW_S, group_name, mark_watched, validate_group
from devices.models import Location


def _may_see(user, location_id: int) -> bool:
    return Location.objects.visible_to(user).filter(pk=location_id).exists()


class CardConsumer(WithoutConnectionHop):
    """A socket that forwards rendered cards (``card.update`` events) to its browser."""

    no_connection_check = frozenset({"card.update"})  # forwarding a card touches no database

    async def card_update(self, event: dict) -> None:
        """Rendered card HTML from :func:`dashboard.broadcast.send`; the browser swaps it by id."""
        await self.send(text_data=event["html"])


class LocationConsumer(CardConsumer):
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


class ValidateConsumer(CardConsumer):
    """The installer's page socket (``/ws/locations/<pk>/validate/``).

    Joins the group of its variant (:func:`dashboard.broadcast.validate_group`: with the fix
    buttons for those who may fix, read-only for the owner) and, while open, marks the location
    as watched so that frames push the validate cards (:func:`dashboard.broadcast.push_validate`).
    """

    group: str | None = None
    heartbeat: asyncio.Task | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        location_id = self.scope["url_route"]["kwargs"]["pk"]
        access = None
        if user is not None and user.is_authenticated:
            access = await database_sync_to_async(_validate_access)(user, location_id)
        if access is None:
            await self.close()
            return
        self.location_id = location_id
        self.group = validate_group(location_id, can_fix=access)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.heartbeat = asyncio.create_task(self._keep_watching())

    async def _keep_watching(self) -> None:
        while True:
            await database_sync_to_async(mark_watched)(self.location_id)
            await asyncio.sleep(WATCH_RENEW_S)

    async def disconnect(self, code: int) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)


def _validate_access(user, location_id: int) -> bool | None:
    """None: may not see the validate page; else whether the user may apply fixes."""
    from dashboard.validate import may_fix, may_view

    location = Location.objects.visible_to(user).filter(pk=location_id).first()
    role = location.role_of(user) if location else None
    if not may_view(user, role):
        return None
    return may_fix(user, role)

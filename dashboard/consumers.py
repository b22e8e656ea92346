"""The browser's WebSockets for a location's live cards (``/ws/locations/<pk>/`` and its validate page).

Thin on purpose: check the signed-in user may see the location, join its group, forward the
HTML that :mod:`dashboard.broadcast` rendered once for everyone, leave on disconnect.

Access is checked again whenever it may have ended (:mod:`dashboard.access`): every socket
also joins its user's group and, told so, closes with ``4401`` (signed out) or ``4403``
(access revoked), after which it forwards nothing more.
"""

from __future__ import annotations

import asyncio
from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from config.consumers import WithoutConnectionHop
from dashboard.access import ACCESS_REVOKED, SIGNED_OUT, user_group
from dashboard.broadcast import WATCH_RENEW_S, group_name, mark_watched, validate_group
from devices.models import Location

SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
SESSION_ENDED = object()  # _current_access: the session no longer signs the user in


class CardConsumer(WithoutConnectionHop):
    """A signed-in user's socket that forwards rendered cards (``card.update`` events) to its browser.

    Subclasses say what access the user has (:meth:`access_of`, None for none) and which group
    that access reads (:meth:`group_for`).
    """

    # Forwarding a card and comparing a session key touch no database.
    no_connection_check = frozenset({"card.update", "access.signed_out"})
    group: str | None = None
    user_id: int | None = None
    session_key: str | None = None
    ended = False

    def access_of(self, user, location_id: int) -> object | None:
        raise NotImplementedError

    def group_for(self, location_id: int, access: object) -> str:
        raise NotImplementedError

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.location_id = self.scope["url_route"]["kwargs"]["pk"]
        if user is None or not user.is_authenticated:
            await self.close()
            return
        # Join the user's group before looking at the database, so a revocation committed
        # while this socket connects still reaches it.
        self.user_id = user.pk
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        access = await database_sync_to_async(self.access_of)(user, self.location_id)
        if access is None:
            await self.channel_layer.group_discard(user_group(user.pk), self.channel_name)
            self.user_id = None
            await self.close()
            return
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        self.group = self.group_for(self.location_id, access)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.user_id is not None:
            await self.channel_layer.group_discard(user_group(self.user_id), self.channel_name)

    async def card_update(self, event: dict) -> None:
        """Rendered card HTML from :func:`dashboard.broadcast.send`; the browser swaps it by id."""
        if not self.ended:
            await self.send(text_data=event["html"])

    async def access_check(self, event: dict) -> None:
        """A membership or permission of this user changed: close if the access ended."""
        if self.ended or self.group is None:
            return
        access = await database_sync_to_async(self._current_access)()
        if access is SESSION_ENDED:
            await self.end(SIGNED_OUT)
            return
        if access is None:
            await self.end(ACCESS_REVOKED)
            return
        group = self.group_for(self.location_id, access)
        if group != self.group:  # e.g. an installer who became the owner reads without fix buttons
            await self.channel_layer.group_add(group, self.channel_name)
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = group

    async def access_signed_out(self, event: dict) -> None:
        """The user signed out (this session, or every session when ``session_key`` is None)."""
        if self.group is not None and event.get("session_key") in (None, self.session_key):
            await self.end(SIGNED_OUT)

    async def end(self, code: int) -> None:
        """Close with ``code``; cards already queued for this socket are dropped."""
        self.ended = True
        await self.close(code=code)

    def _current_access(self) -> object | None:
        # Fresh from the database: the scope's user object caches its permissions.
        user = get_user_model().objects.filter(pk=self.user_id, is_active=True).first()
        if user is None:
            return None
        if not self._session_still_signs_in(user):
            return SESSION_ENDED
        return self.access_of(user, self.location_id)

    def _session_still_signs_in(self, user) -> bool:
        """Whether the socket's session still signs this user in, as Django checks on every
        request: it was not deleted (in the admin, by a sign-out elsewhere) and its auth hash
        still matches (a password change ends the other sessions)."""
        if not self.session_key:
            return True  # no session behind the scope (tests' own scopes)
        stored = SessionStore(self.session_key)
        if not stored.exists(self.session_key):
            return False
        hashed = stored.get(HASH_SESSION_KEY)
        return bool(hashed) and constant_time_compare(hashed, user.get_session_auth_hash())


class LocationConsumer(CardConsumer):
    """The dashboard's socket: any member (and support staff) of the location."""

    def access_of(self, user, location_id: int) -> bool | None:
        return Location.objects.visible_to(user).filter(pk=location_id).exists() or None

    def group_for(self, location_id: int, access: object) -> str:
        return group_name(location_id)


class ValidateConsumer(CardConsumer):
    """The installer's page socket (``/ws/locations/<pk>/validate/``).

    Joins the group of its variant (:func:`dashboard.broadcast.validate_group`: with the fix
    buttons for those who may fix, read-only for the owner) and, while open, marks the location
    as watched so that frames push the validate cards (:func:`dashboard.broadcast.push_validate`).
    """

    heartbeat: asyncio.Task | None = None

    def access_of(self, user, location_id: int) -> bool | None:
        """None: may not see the validate page; else whether the user may apply fixes."""
        location = Location.objects.visible_to(user).filter(pk=location_id).first()
        if location is None:
            return None
        role = location.role_of(user)
        if not location.may_view_check(user, role):
            return None
        return location.may_fix(user, role)

    def group_for(self, location_id: int, access: object) -> str:
        return validate_group(location_id, can_fix=bool(access))

    async def connect(self) -> None:
        await super().connect()
        if self.group is not None:
            self.heartbeat = asyncio.create_task(self._keep_watching())

    async def _keep_watching(self) -> None:
        while True:
            await database_sync_to_async(mark_watched)(self.location_id)
            await asyncio.sleep(WATCH_RENEW_S)

    async def disconnect(self, code: int) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        await super().disconnect(code)

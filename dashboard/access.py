"""Who may see a location's pages, and access that ends: open browser sockets follow their
user's memberships and sign-out.

Views and consumers find the location through :func:`location_and_role` (404 for anyone who may
not see it); what a role may do there are methods beside :meth:`devices.models.Location.role_of`
(``may_switch``, ``may_view_check``, ``may_fix``).

Every browser socket (:mod:`dashboard.consumers`) joins its user's group ``user.<pk>`` besides
its location's. When something may have taken access away, a message to that group tells each
of the user's sockets to act, after the change is committed:

- ``access.check`` (a membership saved or deleted, a user's permissions, groups or flags
  changed): the socket asks the database again and, if its user may no longer see what it
  shows, closes with :data:`ACCESS_REVOKED`.
- ``access.signed_out`` (the user signed out, was deactivated or deleted): with a
  ``session_key``, the sockets of that session close with :data:`SIGNED_OUT` (signing out ends
  that browser's session only, as Django's ``logout`` does); without one, all the user's sockets.

The close codes are the socket's part of the contract with the page (``static/js/live.js``
shows "Signed out" / "Access ended" and does not reconnect); docs/security.md lists them.

Support staff (:data:`devices.models.SUPPORT_PERMISSION`) acting on a location they are no
member of are named as such in the events their actions log (:func:`devices.models.support_note`).
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.shortcuts import get_object_or_404

from devices.models import Location, Membership

log = logging.getLogger(__name__)

# WebSocket close codes (4000-4999: for applications). Documented in docs/security.md.
SIGNED_OUT = 4401  # the session ended: signed out, deactivated or deleted
ACCESS_REVOKED = 4403  # still signed in, but no longer allowed to see this location (or page)
UNKNOWN_PATH = 4404  # no socket at this path (config.routing)


def location_and_role(user, pk: int) -> tuple[Location, str]:
    """The location if ``user`` may see it, else 404 (never someone else's data), and the user's
    role there ("owner", "viewer", "installer" or "support")."""
    location = get_object_or_404(Location.objects.visible_to(user), pk=pk)
    return location, location.role_of(user)


def user_group(user_id: int) -> str:
    """The channel-layer group of every open browser socket of one user."""
    return f"user.{user_id}"


def _send(user_id: int, message: dict) -> None:
    """Send ``message`` to the user's sockets once the current transaction commits.

    A revocation that cannot be sent (the channel layer is down) is logged, never raised into
    the sign-out or the admin form that caused it.
    """

    def send() -> None:
        try:
            async_to_sync(get_channel_layer().group_send)(user_group(user_id), message)
        except Exception:
            log.exception("could not tell the sockets of user %s that their access changed", user_id)

    transaction.on_commit(send)


def recheck(user_id: int) -> None:
    """Have the user's open sockets check their access again (closing with 4403 if it ended)."""
    _send(user_id, {"type": "access.check"})


def sign_out(user_id: int, session_key: str | None = None) -> None:
    """Close the sockets of the user's session ``session_key`` (all of them when None) with 4401."""
    _send(user_id, {"type": "access.signed_out", "session_key": session_key})


# ----------------------------------------------------------------------------- receivers


def on_membership_changed(sender, instance: Membership, **kwargs) -> None:
    recheck(instance.user_id)


def on_logged_out(sender, request, user, **kwargs) -> None:
    if user is None:
        return
    session = getattr(request, "session", None)
    sign_out(user.pk, session.session_key if session is not None else None)


def on_user_saved(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    if created or (update_fields is not None and set(update_fields) <= {"last_login", "password"}):
        return  # a new user has no sockets; signing in changes no access
    if not instance.is_active:
        sign_out(instance.pk)
    else:
        recheck(instance.pk)  # is_superuser may have changed


def on_user_deleted(sender, instance, **kwargs) -> None:
    sign_out(instance.pk)


def _affected(instance, action: str, reverse: bool, pk_set, related: str) -> list | None:
    """The objects on the far side of an ``m2m_changed`` whose access may have changed, or None.

    Forward (``instance`` is the user or group), ``instance`` itself. Reverse (``instance`` is
    the permission or group), the objects of ``pk_set``, or for a clear all of them, listed
    before they go (the recheck waits for the commit anyway).
    """
    if action in ("post_add", "post_remove"):
        return list(pk_set or ()) if reverse else [instance.pk]
    if action == "post_clear" and not reverse:
        return [instance.pk]
    if action == "pre_clear" and reverse:
        return list(getattr(instance, related).values_list("pk", flat=True))
    return None


def on_user_permissions_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """A user's permissions or groups changed (from either side of the relation)."""
    for user_id in _affected(instance, action, reverse, pk_set, "user_set") or ():
        recheck(user_id)


def on_group_permissions_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """A group gained or lost permissions: its members' access may have changed."""
    group_ids = _affected(instance, action, reverse, pk_set, "group_set")
    if group_ids:
        users = get_user_model().objects.filter(groups__in=group_ids).values_list("pk", flat=True).distinct()
        for user_id in users:
            recheck(user_id)


def connect_signals() -> None:
    user_model = get_user_model()
    post_save.connect(on_membership_changed, sender=Membership, dispatch_uid="dashboard.access.membership-saved")
    post_delete.connect(on_membership_changed, sender=Membership, dispatch_uid="dashboard.access.membership-deleted")
    user_logged_out.connect(on_logged_out, dispatch_uid="dashboard.access.logged-out")
    post_save.connect(on_user_saved, sender=user_model, dispatch_uid="dashboard.access.user-saved")
    post_delete.connect(on_user_deleted, sender=user_model, dispatch_uid="dashboard.access.user-deleted")
    for through in (user_model.user_permissions.through, user_model.groups.through):
        m2m_changed.connect(
            on_user_permissions_changed, sender=through, dispatch_uid=f"dashboard.access.{through.__name__}"
        )
    m2m_changed.connect(
        on_group_permissions_changed, sender=Group.permissions.through, dispatch_uid="dashboard.access.group-perms"
    )

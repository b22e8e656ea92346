"""Access ends with the user: open sockets close when a membership goes, on sign-out, on deactivation.

Through the real router and channel layer (in memory, or Redis with REDIS_URL): a socket told
its access ended closes with 4403 (access revoked) or 4401 (signed out) and forwards no card after.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client

from config.asgi import application
from dashboard import broadcast
from dashboard.access import ACCESS_REVOKED, SIGNED_OUT
from devices.models import Membership
from tests.dashboard.sockets import browser_socket, try_connect
from tests.dashboard.test_consumers import group_size

pytestmark = pytest.mark.django_db(transaction=True)

CARD = '<section id="card-live-values">hello</section>'


def session_socket(path: str, session: Client) -> WebsocketCommunicator:
    """A socket of the browser whose session is ``session`` (a signed-in test client)."""
    cookie = f"sessionid={session.cookies['sessionid'].value}".encode()
    return WebsocketCommunicator(application, path, headers=[(b"origin", b"http://testserver"), (b"cookie", cookie)])


def signed_in(user) -> Client:
    session = Client()
    session.force_login(user)
    return session


async def closed_with(communicator: WebsocketCommunicator) -> int | None:
    """The close code the server sent next (fails if it sent anything else)."""
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close", output
    return output.get("code")


def run_socket(communicator: WebsocketCommunicator, change, location_id: int) -> tuple[int | None, bool]:
    """Connect, make ``change`` (sync, in a thread), then: the close code, and whether a card
    sent after it stayed unforwarded."""

    async def run():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            await sync_to_async(change)()
            code = await closed_with(communicator)
            await sync_to_async(broadcast.send)(location_id, CARD)
            return code, await communicator.receive_nothing(timeout=0.3)
        finally:
            await communicator.disconnect()

    return async_to_sync(run)()


def test_it_closes_the_owners_socket_with_4403_when_the_membership_is_deleted(house, owner):
    location, _ = house
    communicator = browser_socket(f"/ws/locations/{location.pk}/", owner)
    code, quiet = run_socket(
        communicator, lambda: Membership.objects.get(location=location, user=owner).delete(), location.pk
    )
    assert code == ACCESS_REVOKED == 4403
    assert quiet


def test_it_closes_the_validate_socket_with_4403_when_the_installer_becomes_a_viewer(house, installer):
    location, _ = house
    communicator = browser_socket(f"/ws/locations/{location.pk}/validate/", installer)
    membership = Membership.objects.get(location=location, user=installer)

    def demote():
        membership.role = "viewer"
        membership.save()

    code, quiet = run_socket(communicator, demote, location.pk)
    assert code == ACCESS_REVOKED
    assert quiet


def test_it_keeps_the_socket_of_a_member_whose_role_changes_but_who_still_may_see(house, installer):
    location, _ = house
    communicator = browser_socket(f"/ws/locations/{location.pk}/validate/", installer)
    membership = Membership.objects.get(location=location, user=installer)

    read_only = broadcast.validate_group(location.pk, can_fix=False)
    layer = get_channel_layer()

    async def run():
        await communicator.connect(timeout=5)
        try:
            membership.role = "owner"
            await sync_to_async(membership.save)()
            for _ in range(50):  # the socket moves once it has looked at the database
                if await group_size(layer, read_only):
                    break
                await asyncio.sleep(0.1)
            await sync_to_async(broadcast.send_group)(read_only, CARD)
            return await communicator.receive_from(timeout=5)
        finally:
            await communicator.disconnect()

    # Still open, now in the owner's read-only group.
    assert async_to_sync(run)() == CARD


def test_it_closes_the_sockets_of_the_session_that_signs_out_with_4401(house, owner):
    location, _ = house
    leaving, staying = signed_in(owner), signed_in(owner)
    dashboard = session_socket(f"/ws/locations/{location.pk}/", leaving)
    validate = session_socket(f"/ws/locations/{location.pk}/validate/", leaving)
    other_browser = session_socket(f"/ws/locations/{location.pk}/", staying)

    async def run():
        for communicator in (dashboard, validate, other_browser):
            assert (await communicator.connect(timeout=5))[0]
        try:
            response = await sync_to_async(leaving.post)("/accounts/logout/")
            assert response.status_code == 302
            codes = [await closed_with(dashboard), await closed_with(validate)]
            await sync_to_async(broadcast.send)(location.pk, CARD)
            return codes, await other_browser.receive_from(timeout=5), await dashboard.receive_nothing(timeout=0.3)
        finally:
            for communicator in (dashboard, validate, other_browser):
                await communicator.disconnect()

    codes, other, quiet = async_to_sync(run)()
    assert codes == [SIGNED_OUT, SIGNED_OUT] == [4401, 4401]
    assert other == CARD  # signing out in one browser leaves the user's other sessions alone
    assert quiet


def test_it_closes_every_socket_of_a_deactivated_user_with_4401(house, owner):
    location, _ = house
    communicator = browser_socket(f"/ws/locations/{location.pk}/", owner)

    def deactivate():
        owner.is_active = False
        owner.save()

    code, quiet = run_socket(communicator, deactivate, location.pk)
    assert code == SIGNED_OUT
    assert quiet


def test_it_closes_the_sockets_of_a_session_a_password_change_ended_with_4401(house, owner):
    location, _ = house
    communicator = session_socket(f"/ws/locations/{location.pk}/", signed_in(owner))

    def change_password():
        owner.set_password("a-new-password")
        owner.save()

    code, quiet = run_socket(communicator, change_password, location.pk)
    assert code == SIGNED_OUT
    assert quiet


def test_it_closes_the_socket_of_support_staff_who_lose_the_permission(house, django_user_model):
    location, _ = house
    support = django_user_model.objects.create_user("support", password="pw")
    permission = Permission.objects.get(codename="support_all_locations")
    support.user_permissions.add(permission)
    communicator = browser_socket(f"/ws/locations/{location.pk}/", support)
    code, quiet = run_socket(communicator, lambda: support.user_permissions.remove(permission), location.pk)
    assert code == ACCESS_REVOKED
    assert quiet


def test_it_refuses_the_socket_of_staff_without_the_support_permission(house, django_user_model):
    location, _ = house
    staff_only = django_user_model.objects.create_user("admin-site-only", password="pw", is_staff=True)

    for path in (f"/ws/locations/{location.pk}/", f"/ws/locations/{location.pk}/validate/"):
        assert try_connect(browser_socket(path, staff_only)) is False, path

"""Browser-like WebSocket clients through the real ASGI router, for consumer tests."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application


def browser_socket(path: str, user=None, origin: bytes = b"http://testserver") -> WebsocketCommunicator:
    """A browser's socket to ``path``: signed in as ``user`` (its own session) or anonymous."""
    headers = [(b"origin", origin)]
    if user is not None:
        session = Client()
        session.force_login(user)
        headers.append((b"cookie", f"sessionid={session.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def try_connect(communicator: WebsocketCommunicator) -> bool:
    async def attempt():
        connected, _ = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return connected

    return async_to_sync(attempt)()

"""Device authentication: per-gateway bearer tokens, stored hashed.

Every frame carries its token, and the lookup (a two-table ORM query) cost more than storing a
small frame, so each process remembers the gateways of valid tokens. A remembered gateway is
dropped when any installation changes (a token rotated or revoked saves its gateway, which
bumps :func:`metering.installed.version` in the shared cache: this process sees it at once,
others with Redis within a second) and after :data:`REMEMBER_S` at the latest (a change made in
another process that only has its own local-memory cache). Unknown tokens are never remembered.
"""

from __future__ import annotations

import threading
import time

from devices.models import Gateway, hash_token
from metering import installed

REMEMBER_S = 30.0

_known: dict[str, tuple[float, int, Gateway]] = {}  # token hash -> (monotonic time, version, gateway)
_lock = threading.Lock()


def bearer_token(authorization: str | bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def gateway_for(authorization: str | bytes | None) -> Gateway | None:
    token = bearer_token(authorization)
    if not token:
        return None
    digest = hash_token(token)
    now, version = time.monotonic(), installed.version()
    hit = _known.get(digest)
    if hit is not None and hit[1] == version and now - hit[0] < REMEMBER_S:
        return hit[2]
    gateway = Gateway.objects.select_related("location").filter(token_hash=digest).first()
    with _lock:
        if hit is not None and hit[1] != version:
            _known.clear()  # tokens of an older version may be rotated away: forget them all
        if gateway is None:
            _known.pop(digest, None)
        else:
            _known[digest] = (now, version, gateway)
    return gateway

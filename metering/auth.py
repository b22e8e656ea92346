"""Device authentication: per-gateway bearer tokens, stored hashed.

Every frame carries its token, and the lookup (a two-table ORM query) cost more than storing a
small frame, so each process keeps the gateways of valid tokens (:class:`metering.installed.Kept`).
A kept gateway is dropped when any installation changes (a token rotated or revoked saves its
gateway, which bumps :func:`metering.installed.version` in the shared cache: this process sees
it at once, others with Redis within a second) and after :data:`REMEMBER_S` at the latest (a
change made in another process that only has its own local-memory cache). Unknown tokens are
never kept.
"""

from __future__ import annotations

from devices.models import Gateway, hash_token
from metering.installed import Kept

REMEMBER_S = 30.0

_gateways_by_token_hash = Kept(REMEMBER_S, keep_none=False, spread_s=REMEMBER_S / 3)


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
    return _gateways_by_token_hash.get(
        digest, lambda: Gateway.objects.select_related("location").filter(token_hash=digest).first()
    )

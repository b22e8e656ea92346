"""Device authentication: per-gateway bearer tokens, stored hashed."""

from __future__ import annotations

from devices.models import Gateway


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
    return Gateway.for_token(token) if token else None

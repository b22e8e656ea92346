"""Device authentication: per-gateway bearer tokens, stored hashed.

Every frame carries its token, and the lookup (a two-table ORM query) cost more than storing a
small frame, so each process keeps the gateways of valid tokens (:class:`metering.installed.Kept`,
dropped when any installation changes and after :data:`REMEMBER_S` at the latest). A kept
gateway is only used after one primary-key query confirms its token is still the current one:
a token rotated or revoked in any process — the admin, ``import_installation --rotate-token``
while the server runs, another server process without Redis — fails on its very next request
or WebSocket message. Unknown tokens are never kept.
"""

from __future__ import annotations

import functools

from django.db import connection

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


def token_hash_for(authorization: str | bytes | None) -> str | None:
    """The stored form of the header's token, or None without a bearer token."""
    token = bearer_token(authorization)
    return hash_token(token) if token else None


def gateway_for(authorization: str | bytes | None) -> Gateway | None:
    """The gateway whose current token the header carries, or None."""
    digest = token_hash_for(authorization)
    if digest is None:
        return None
    loaded = False

    def load() -> Gateway | None:
        nonlocal loaded
        loaded = True
        return Gateway.objects.select_related("location").filter(token_hash=digest).first()

    gateway = _gateways_by_token_hash.get(digest, load)
    if gateway is None or loaded or token_is_current(gateway, digest):
        return gateway
    return None


def token_is_current(gateway: Gateway, digest: str) -> bool:
    """Whether ``digest`` is still ``gateway``'s token hash in the database: one primary-key
    query, in SQL because the ORM's ``exists()`` took ten times as long (300 vs 35 us on SQLite;
    every frame asks: tools/bench_ingest.py)."""
    with connection.cursor() as cursor:
        cursor.execute(_current_token_sql(), [gateway.pk, digest])
        return cursor.fetchone() is not None


@functools.cache
def _current_token_sql() -> str:
    quote, meta = connection.ops.quote_name, Gateway._meta
    return (
        f"SELECT 1 FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s"
        f" AND {quote(meta.get_field('token_hash').column)} = %s"
    )


def kept_gateway_for(authorization: str | bytes | None) -> Gateway | None:
    """The gateway this process keeps for the header's token, without a query: None when the
    token is unknown here (never seen, wrong, or dropped since); not confirmed current."""
    digest = token_hash_for(authorization)
    return None if digest is None else _gateways_by_token_hash.peek(digest)

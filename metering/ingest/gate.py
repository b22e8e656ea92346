"""Ingest requests refused before their body is read: a missing or wrong token, or a body over the limit.

Daphne (Twisted) receives a whole request body before the application starts, and Django reads
it again before the view: a 200 MB POST without a token cost 200 MB of memory before its 401.
:class:`config.server.InfinityServer` asks this gate at the end of a request's headers, for the
ingest URLs, and sends its answer — the same JSON the views send — without reading the body.
A body that arrives chunked (no Content-Length) is refused with 413 as soon as it passes
:data:`metering.ingest.frames.MAX_FRAME_BYTES`, and not kept beyond it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse

from metering.ingest.auth import bearer_token, gateway_for, kept_gateway_for
from metering.ingest.frames import MAX_FRAME_BYTES
from metering.ingest.http import too_large, unauthorized
from metering.ingest.threads import on_gate_thread

Refusal = tuple[int, list[tuple[bytes, bytes]], bytes]


class IngestGate:
    limit_bytes = MAX_FRAME_BYTES

    @functools.cached_property
    def paths(self) -> tuple[bytes, ...]:
        return tuple(reverse(name).encode() for name in ("api:ingest-frames", "api:ingest-acks"))

    @functools.cached_property
    def other_limit_bytes(self) -> int:
        """The most any other request may send: what Django would read into memory anyway."""
        return settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    def applies(self, method: bytes, path: bytes) -> bool:
        """An ingest URL, also behind a root path (a ``Daphne-Root-Path`` header or
        ``--root-path``, which Django strips before it resolves the URL)."""
        return path.endswith(self.paths)

    def check(self, authorization: bytes | None, length: int | None) -> Refusal | Awaitable[Refusal | None] | None:
        """401 without a valid token, else 413 for a Content-Length over the limit, else None.

        A token this process already knows is answered at once, without a query: its body (at
        most the limit) is read, and the view confirms the token is still current. Any other
        token is looked up on the gate's thread while the connection waits.
        """
        if bearer_token(authorization) is None:
            return as_refusal(unauthorized())
        if kept_gateway_for(authorization) is None:  # no I/O: this runs on the event loop
            return self._looked_up(authorization, length)
        return self._size_refusal(length)

    async def _looked_up(self, authorization: bytes, length: int | None) -> Refusal | None:
        if await on_gate_thread(gateway_for)(authorization) is None:
            return as_refusal(unauthorized())
        return self._size_refusal(length)

    def _size_refusal(self, length: int | None) -> Refusal | None:
        return self.too_large(length) if length is not None and length > self.limit_bytes else None

    def too_large(self, size: int) -> Refusal:
        return as_refusal(too_large(size))


def as_refusal(response: HttpResponse) -> Refusal:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    return response.status_code, headers, response.content

"""Scale-out ingest: the web side hands frames to a stream, ingest workers meter and store them.

``stream()`` is this process's stream (Redis when ``REDIS_URL`` is set, else in process);
``stream().submit(gateway, frames, transport)`` returns the receipts after the commit, or
raises :class:`Refused` (already recorded) or :class:`Busy` (503). See docs/deploy.md.
"""

from __future__ import annotations

from metering.pipeline.stream import Busy, InProcessStream, RedisStream, Refused, shard_of, stream

__all__ = ["Busy", "InProcessStream", "RedisStream", "Refused", "shard_of", "stream"]

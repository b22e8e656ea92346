"""The device ingest WebSocket: JSON text frames or compact binary frames, one reply each."""

from __future__ import annotations

import orjson
from channels.db import database_sync_to_async

from config.consumers import WithoutConnectionHop
from metering import commands
from metering.api import on_ingest_threads
from metering.auth import gateway_for, token_hash_for, token_is_current
from metering.frames import FrameError, decode_binary, frames_from_dicts, parse_json
from metering.ingest import record_invalid_frame
from metering.pipeline.stream import Busy, Refused, stream

TOKEN_REFUSED = {"type": "error", "error": "gateway token rotated or revoked", "field": "Authorization", "seq": None}


def receive_frames(gateway, token_hash: str, text_data: str | None, bytes_data: bytes | None) -> list[dict] | None:
    """Decode, check and store what a device sent; the replies to send back, or None when the
    socket's token is no longer the gateway's (rotated or revoked since it connected)."""
    if not token_is_current(gateway, token_hash):
        return None
    seq = None
    try:
        if bytes_data is not None:
            frames = [decode_binary(bytes_data)]
        else:
            docs = parse_json(text_data or "")
            if len(docs) == 1 and docs[0].get("type") == "ack":
                return [acknowledge(gateway, docs[0])]
            frames = frames_from_dicts(docs, listed=len(docs) > 1)
        seq = frames[0].seq if len(frames) == 1 else None
        outcome = stream().submit(gateway, frames, "WebSocket", binary=bytes_data)
    except (Refused, Busy) as problem:  # a refusal is recorded where it was refused
        return [error_reply(problem, seq)]
    except FrameError as problem:
        record_invalid_frame(gateway, problem, "WebSocket")
        return [error_reply(problem, seq)]
    return [{"type": "ack", **receipt.as_dict()} for receipt in outcome.receipts]


def error_reply(problem: FrameError | Busy, seq: int | None) -> dict:
    return {"type": "error", **problem.as_dict(), "seq": seq, "status": problem.status}


def acknowledge(gateway, ack: dict) -> dict:
    try:
        relay = commands.acknowledge(gateway, ack)
    except commands.CommandError as problem:
        return {"type": "error", "error": str(problem), "field": "relay"}
    return {"type": "ack", "relay": relay.ref, "on": relay.is_on}


def gateway_group(gateway_id: int) -> str:
    return f"gateway.{gateway_id}"


class IngestConsumer(WithoutConnectionHop):
    # A frame's database work runs on the ingest threads, which check their connections
    # themselves (on_ingest_threads).
    no_connection_check = frozenset({"websocket.receive"})

    async def connect(self) -> None:
        authorization = dict(self.scope.get("headers", [])).get(b"authorization")
        self.gateway = await database_sync_to_async(gateway_for)(authorization)
        if self.gateway is None:
            await self.close(code=4401)
            return
        self.token_hash = token_hash_for(authorization)
        self.group = gateway_group(self.gateway.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Checking the token, decoding and storing in one hop to the ingest threads: each hop
        # costs more than decoding a binary frame, and with several threads one gateway's wait
        # for its commit does not hold up the others (Channels' database thread is one for all).
        reply = await on_ingest_threads(receive_frames)(self.gateway, self.token_hash, text_data, bytes_data)
        if reply is None:
            await self.send_json(TOKEN_REFUSED)
            await self.close(code=4401)
            return
        for message in reply:
            await self.send_json(message)

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=orjson.dumps(content).decode())

    async def device_command(self, event: dict) -> None:
        """A relay command for this gateway, forwarded as sent by the server."""
        await self.send_json(event["command"])

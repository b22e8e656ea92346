"""The device ingest WebSocket: JSON text frames or compact binary frames, one reply each.

A thin adapter over :mod:`metering.ingest.gateway`: it authenticates the socket, tells frames
from acknowledgements and turns outcomes into ``ack`` / ``error`` messages. Relay commands
arrive through the gateway's group (:func:`metering.ingest.broker.gateway_group`).
"""

from __future__ import annotations

import orjson
from channels.db import database_sync_to_async

from config.consumers import WithoutConnectionHop
from metering.ingest import gateway as gateways
from metering.ingest.auth import gateway_for, token_hash_for, token_is_current
from metering.ingest.broker import gateway_group
from metering.ingest.frames import FrameError, decode_binary, frames_from_dicts, parse_json
from metering.ingest.gateway import WEBSOCKET
from metering.ingest.threads import on_ingest_threads

TOKEN_REFUSED = {"type": "error", "error": "gateway token rotated or revoked", "field": "Authorization", "seq": None}


def receive_message(gateway, token_hash: str, text_data: str | None, bytes_data: bytes | None) -> list[dict] | None:
    """Decode, check and store what a device sent; the replies to send back, or None when the
    socket's token is no longer the gateway's (rotated or revoked since it connected)."""
    if not token_is_current(gateway, token_hash):
        return None
    if bytes_data is not None:
        received = gateways.receive_frames(gateway, WEBSOCKET, lambda: [decode_binary(bytes_data)], binary=bytes_data)
    else:
        try:
            docs = parse_json(text_data or "")
        except FrameError as problem:
            return [error_reply(gateways.refuse(gateway, problem, WEBSOCKET))]
        if len(docs) == 1 and docs[0].get("type") == "ack":
            acknowledged = gateways.acknowledge(gateway, docs[0])
            return [{"type": "ack" if acknowledged.problem is None else "error", **acknowledged.as_dict()}]
        received = gateways.receive_frames(gateway, WEBSOCKET, lambda: frames_from_dicts(docs, listed=len(docs) > 1))
    if received.problem is not None:
        return [error_reply(received)]
    return [{"type": "ack", **receipt.as_dict()} for receipt in received.receipts]


def error_reply(received: gateways.Received) -> dict:
    return {"type": "error", **received.problem.as_dict(), "seq": received.seq, "status": received.status}


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
        try:
            reply = await on_ingest_threads(receive_message)(self.gateway, self.token_hash, text_data, bytes_data)
        except gateways.UNAVAILABLE as problem:  # the token check, an Event or a relay: send it again
            reply = [error_reply(gateways.Received(problem=gateways.unavailable(problem)))]
        if reply is None:
            await self.send_json(TOKEN_REFUSED)
            await self.close(code=4401)
            return
        for message in reply:
            await self.send_json(message)

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=orjson.dumps(content).decode())

    async def device_command(self, event: dict) -> None:
        """A relay command for this gateway (:data:`metering.ingest.broker.DEVICE_COMMAND`), forwarded as sent."""
        await self.send_json(event["command"])

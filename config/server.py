"""Daphne as this project runs it: ``python -m config.server [daphne's options] config.asgi:application``.

Changes to stock daphne:

- The size of the pieces a request body reaches Django in. Daphne hands a body over in
  ``http.request`` messages of ``request_buffer_size`` bytes, 8 KiB by default, and offers no
  command-line option for it: a 1.5 MB JSON frame then crosses the event loop in about 190
  messages, each copied into Django's spooled body file, which costs more than decoding it. In
  1 MiB pieces the same frame takes two messages (``python -m tools.bench_ingest``: JSON
  ingest 35 -> 49 frames/s on this 2-core machine).
- WebSocket messages up to the frame limit (:data:`metering.ingest.frames.MAX_FRAME_BYTES`, 8 MiB)
  instead of daphne's 1 MiB, whatever a caller passes (daphne's ``runserver`` passes its own
  1 MiB default); a larger message is answered with a close frame (1009, "message too big")
  rather than a dropped connection.
- A request body can be refused before it is read (:class:`GatedRequest`): Twisted receives a
  whole body before daphne starts the application, and daphne then queues it all at once, so
  a 200 MB POST cost 200 MB of memory before Django could answer 401.
- Before serving, what the process loaded at startup is moved out of the garbage collector's
  way (:func:`settle_startup_objects`).

``manage.py runserver`` uses the same server (``config/management/commands/runserver.py``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import json
import logging
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Protocol
from urllib.parse import unquote_to_bytes

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from metering.ingest.frames import MAX_FRAME_BYTES

REQUEST_BUFFER_BYTES = 1 << 20
WEBSOCKET_MESSAGE_BYTES = MAX_FRAME_BYTES
GC_THRESHOLDS = (50_000, 20, 10)
# After refusing a body, what the client still sends is read and dropped for this long, so it
# reads the answer instead of a connection reset (closing with unread data sends a reset).
LINGER_S = 2.0

logger = logging.getLogger(__name__)

Refusal = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


class BodyGate(Protocol):
    """What decides, from a request's headers, whether its body is read at all."""

    limit_bytes: int
    other_limit_bytes: int  # the most any other request may send

    def applies(self, method: bytes, path: bytes) -> bool:
        """Whether requests to ``path`` (percent-decoded, without the query) are gated."""

    def check(self, authorization: bytes | None, length: int | None) -> Refusal | Awaitable[Refusal | None] | None:
        """The answer to send instead of reading the body, None to read it, or an awaitable of
        either when deciding takes a database query (the connection is not read meanwhile)."""

    def too_large(self, size: int) -> Refusal:
        """The answer to a body that passed :attr:`limit_bytes` while arriving (chunked)."""


class InfinityServer(Server):
    def __init__(
        self, *args, request_buffer_size: int = REQUEST_BUFFER_BYTES, gate: BodyGate | None = None, **kwargs
    ) -> None:
        kwargs["websocket_max_message_size"] = kwargs["websocket_max_frame_size"] = WEBSOCKET_MESSAGE_BYTES
        super().__init__(*args, request_buffer_size=request_buffer_size, **kwargs)
        self.gate = gate

    def run(self) -> None:
        if self.gate is None:
            self.gate = default_gate()
        settle_startup_objects()
        super().run()

    # Daphne's run() makes its factories and starts serving in one method; these setters adjust
    # them as they are made.
    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = GatedHTTPFactory(self) if type(factory) is HTTPFactory else factory

    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory) -> None:
        # Autobahn drops the TCP connection on a protocol failure (a message over the limit)
        # unless told otherwise: the device then learns nothing.
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory


def default_gate() -> BodyGate | None:
    """The ingest gate when the application is this project's Django one."""
    from django.conf import settings

    if not settings.configured:  # another ASGI application (tests/config/body_echo_asgi.py)
        return None
    from metering.ingest.gate import IngestGate

    return IngestGate()


class GatedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = GatedRequest
        channel = getattr(protocol, "_channel", None)  # Twisted's HTTP/1.1 channel behind its protocol switch
        if channel is not None:
            channel._respondToBadRequestAndDisconnect = functools.partial(respond_bad_request, channel)
        return protocol


GATE_FAILED = "the server cannot check this request now, try again"


class GatedRequest(WebRequest):
    """A request the server's gate may refuse at the end of its headers, before its body.

    While the gate decides, the connection is not read. A body that passes the gate's limit
    while arriving (chunked, no Content-Length) is refused as it does, and not stored beyond it.
    """

    gate: BodyGate | None = None
    limit_bytes = 0
    deciding = False
    refused = False
    received_bytes = 0

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        gate = self.server.gate
        # Twisted's channel holds the request line until the whole body is in.
        path = unquote_to_bytes(self.channel._path.split(b"?", 1)[0])
        if gate is None:
            return
        self.gate = gate
        if not gate.applies(self.channel._command, path):
            # Any other request: no larger than Django would read into memory anyway.
            self.limit_bytes = gate.other_limit_bytes
            if length is not None and length > self.limit_bytes:
                self.refuse(self.too_large(length))
            return
        self.limit_bytes = gate.limit_bytes
        authorization = self.requestHeaders.getRawHeaders(b"authorization", [None])[0]
        try:
            decision = gate.check(authorization, length)
        except Exception:  # e.g. the cache behind the kept tokens is down: never drop silently
            logger.exception("Ingest gate failed")
            self.refuse(json_refusal(503, GATE_FAILED))
            return
        if not inspect.isawaitable(decision):
            if decision is not None:
                self.refuse(decision)
            return
        self.deciding = True
        self.channel.transport.pauseProducing()
        decided = Deferred.fromFuture(asyncio.ensure_future(decision))
        decided.addCallback(self._decided)
        decided.addErrback(self._gate_failed)

    def _decided(self, refusal: Refusal | None) -> None:
        self.deciding = False
        if self.channel is None or self._disconnected or self.refused:
            return
        if refusal is None and self.received_bytes > self.limit_bytes:
            refusal = self.too_large(self.received_bytes)
        if refusal is not None:
            self.refuse(refusal)
        else:
            self.channel.transport.resumeProducing()

    def _gate_failed(self, failure) -> None:
        self.deciding = False
        logger.error("Ingest gate failed: %s", failure.getTraceback())
        if self.channel is not None and not self._disconnected and not self.refused:
            self.refuse(json_refusal(503, GATE_FAILED))

    def handleContentChunk(self, data: bytes) -> None:
        if self.gate is None:
            return super().handleContentChunk(data)
        if self.refused:
            return
        self.received_bytes += len(data)
        if self.received_bytes > self.limit_bytes:
            if not self.deciding:
                self.refuse(self.too_large(self.received_bytes))
            return
        super().handleContentChunk(data)

    def too_large(self, size: int) -> Refusal:
        if self.limit_bytes == self.gate.limit_bytes:
            return self.gate.too_large(size)  # the ingest API's own 413
        return json_refusal(413, f"request body too large: {size} bytes, limit {self.limit_bytes}")

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.refused:
            super().requestReceived(command, path, version)

    def refuse(self, refusal: Refusal) -> None:
        """Answer now, close, and drop whatever else of the body arrives."""
        self.refused = True
        status, _, body = refusal
        channel, transport = self.channel, self.channel.transport
        transport.write(response_bytes(refusal))
        channel.dataReceived = lambda data: None
        transport.loseWriteConnection()
        transport.resumeProducing()
        reactor.callLater(LINGER_S, lambda: transport.connected and transport.abortConnection())
        peer = transport.getPeer()
        self.server.log_action(
            "http",
            "complete",
            {
                "path": channel._path.decode("latin-1"),
                "status": status,
                "method": channel._command.decode("latin-1"),
                "client": f"{getattr(peer, 'host', '')}:{getattr(peer, 'port', '')}",
                "time_taken": 0.0,
                "size": len(body),
            },
        )


def json_refusal(status: int, message: str) -> Refusal:
    body = json.dumps({"error": message, "field": None}).encode()
    return status, [(b"Content-Type", b"application/json")], body


def respond_bad_request(channel) -> None:
    """Twisted's answer to a request it cannot parse (``Content-Length: abc``), with a JSON body."""
    channel.transport.write(response_bytes(json_refusal(400, "malformed HTTP request")))
    channel.loseConnection()


def response_bytes(refusal: Refusal) -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    status, headers, body = refusal
    lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close", b"", b""]
    return b"\r\n".join(lines) + body


def settle_startup_objects() -> None:
    """Leave the objects loaded at startup out of the garbage collector's full passes.

    Modules, models, the URL conf and the routing live as long as the process, yet every full
    collection walks all of them again: with 500 sockets open the push benchmark measured
    pauses of 100-150 ms every few seconds, which every card in flight waited out.
    ``gc.freeze()`` moves what exists now to a generation that is never scanned; objects made
    later (sockets, frames, cached values) are collected as usual, with the young generation
    collected every :data:`GC_THRESHOLDS` ``[0]`` allocations rather than 700: a live card's
    values live about a second, and at 700 they outlived enough young collections to reach the
    oldest generation and bring on a full pass every few seconds (bare Channels push p99 in
    the benchmark: 6-9.5 ms -> 2.7-3.8 ms).
    """
    from django.conf import settings
    from django.urls import get_resolver

    if settings.configured:  # a Django application: its URL conf is imported at the first request otherwise
        get_resolver().url_patterns  # noqa: B018 (reading them imports them)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class InfinityCommandLine(CommandLineInterface):
    server_class = InfinityServer


if __name__ == "__main__":
    InfinityCommandLine.entrypoint()

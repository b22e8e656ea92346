"""Daphne as this project runs it: ``python -m config.server [daphne's options] config.asgi:application``.

The only change to stock daphne is the size of the pieces a request body reaches Django in.
Daphne hands a body over in ``http.request`` messages of ``request_buffer_size`` bytes, 8 KiB
by default, and offers no command-line option for it: a 1.5 MB JSON frame then crosses the
event loop in about 190 messages, each copied into Django's spooled body file, which costs
more than decoding it. In 1 MiB pieces the same frame takes two messages
(``python -m metering.bench_ingest``: JSON ingest 35 -> 49 frames/s on this 2-core machine).
``manage.py runserver`` uses the same server (``config/management/commands/runserver.py``).
"""

from __future__ import annotations

from daphne.cli import CommandLineInterface
from daphne.server import Server

REQUEST_BUFFER_BYTES = 1 << 20


class InfinityServer(Server):
    def __init__(self, *args, request_buffer_size: int = REQUEST_BUFFER_BYTES, **kwargs) -> None:
        super().__init__(*args, request_buffer_size=request_buffer_size, **kwargs)


class InfinityCommandLine(CommandLineInterface):
    server_class = InfinityServer


if __name__ == "__main__":
    InfinityCommandLine.entrypoint()

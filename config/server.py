"""Daphne as this project runs it: ``python -m config.server [daphne's options] config.asgi:application``.

Two changes to stock daphne. The first is the size of the pieces a request body reaches Django
in. Daphne hands a body over in ``http.request`` messages of ``request_buffer_size`` bytes, 8 KiB
by default, and offers no command-line option for it: a 1.5 MB JSON frame then crosses the
event loop in about 190 messages, each copied into Django's spooled body file, which costs
more than decoding it. In 1 MiB pieces the same frame takes two messages
(``python -m metering.bench_ingest``: JSON ingest 35 -> 49 frames/s on this 2-core machine).
The second: before serving, what the process loaded at startup is moved out of the garbage
collector's way (:func:`settle_startup_objects`).
``manage.py runserver`` uses the same server (``config/management/commands/runserver.py``).
"""

from __future__ import annotations

import gc

from daphne.cli import CommandLineInterface
from daphne.server import Server

REQUEST_BUFFER_BYTES = 1 << 20
GC_THRESHOLDS = (50_000, 20, 10)


class InfinityServer(Server):
    def __init__(self, *args, request_buffer_size: int = REQUEST_BUFFER_BYTES, **kwargs) -> None:
        super().__init__(*args, request_buffer_size=request_buffer_size, **kwargs)

    def run(self) -> None:
        settle_startup_objects()
        super().run()


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
        get_resolver().url_patterns
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class InfinityCommandLine(CommandLineInterface):
    server_class = InfinityServer


if __name__ == "__main__":
    InfinityCommandLine.entrypoint()

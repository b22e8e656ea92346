"""Where the ingest's synchronous work runs under ASGI: threads that keep their database connections.

Under ASGI Django runs each request's synchronous code on a thread of its own, which opens a
database connection of its own: for a device sending a frame a second that costs more than
storing the frame. Channels runs the database work of every socket on one thread, so one
gateway's wait for its commit holds up all others. The :data:`INGEST_THREADS` ingest threads
(HTTP and WebSocket frames) and the gate's one thread (token checks before a body is read) live
as long as the process and keep their connections (``CONN_MAX_AGE``), checked before and after
each use as Channels does. With ``INGEST_THREADS = 0`` (the tests' settings) the work runs on the
caller's thread-sensitive thread, where the test's transaction is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections


@functools.cache  # one wrapper per function, built at its first frame rather than every frame
def on_ingest_threads(work: Callable) -> Callable:
    """``work`` as a coroutine run on the ingest threads. A Power Box's frames are still stored
    one at a time: its state row is locked for each, and a socket handles its messages in turn."""
    return _on(work, _ingest_threads)


@functools.cache
def on_gate_thread(work: Callable) -> Callable:
    """``work`` as a coroutine on the gate's own thread: a token check does not wait behind
    frames being stored on the ingest threads."""
    return _on(work, _gate_thread)


def _on(work: Callable, pool: Callable[[], ThreadPoolExecutor]) -> Callable:
    if not settings.INGEST_THREADS:
        return sync_to_async(work, thread_sensitive=True)

    def with_connection_checks(*args, **kwargs):
        close_old_connections()
        try:
            return work(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(with_connection_checks, thread_sensitive=False, executor=pool())


@functools.cache
def _ingest_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(settings.INGEST_THREADS, thread_name_prefix="ingest")


@functools.cache
def _gate_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="ingest-gate")

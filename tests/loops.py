"""Running a test's coroutine where no event loop runs.

The dashboard's browser tests keep sync Playwright open for the whole session, and it leaves its
event loop running in the main thread: ``asyncio.run`` there fails for every later test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def run_in_own_loop(make_coroutine: Callable[[], Coroutine[Any, Any, Any]], timeout_s: float = 120.0) -> Any:
    """``asyncio.run(make_coroutine())`` in a thread of its own; its result, or its exception."""
    with ThreadPoolExecutor(1, thread_name_prefix="test-loop") as thread:
        return thread.submit(lambda: asyncio.run(make_coroutine())).result(timeout=timeout_s)

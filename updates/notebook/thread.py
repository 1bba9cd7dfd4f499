"""The loop-free ORM thread: every database call of the notebook face runs on it.

A Jupyter kernel runs every cell synchronously in its main thread, but that thread also *runs*
an asyncio event loop (the kernel's own). Django refuses database calls from a thread with a
running loop (``SynchronousOnlyOperation``): it cannot tell a cell from a coroutine that would
block the loop. Setting ``DJANGO_ALLOW_ASYNC_UNSAFE`` would silence the check for the whole
process, including real ``async`` code a user might ``await`` in a cell, where the warning is
right. Instead every ORM call runs on one dedicated thread (a single-worker
``ThreadPoolExecutor``) that has no event loop: the check holds honestly, nothing is switched
off, and the thread keeps one database connection for the session. The cell waits for the
result, so the notebook still reads top to bottom.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

class OrmThread:
    """One long-lived thread without an event loop on which every ORM call runs (see above)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._thread_id: int | None = None

    def _started(self) -> None:
        self._thread_id = threading.get_ident()

    def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if threading.get_ident() == self._thread_id:
            return fn(*args, **kwargs)  # already on it (a service calling back into us)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="profileops-orm", initializer=self._started)
            executor = self._executor
        return executor.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        from django.db import connections

        try:
            executor.submit(connections.close_all).result()
        except RuntimeError:
            pass  # at interpreter exit the executor may already be shut down; so is the thread
        executor.shutdown(wait=True)
        self._thread_id = None


orm = OrmThread()  # the process's one ORM thread: every session and notebook.run share it
atexit.register(orm.close)

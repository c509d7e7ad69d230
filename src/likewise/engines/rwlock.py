"""A lock that many readers share, or one writer holds (re-entrantly): the guard of the HNSW graph.

faiss searches a graph safely from many threads at once and releases the GIL while it does, so the
plain queries of a server's worker threads can run on every core; only growing, compacting or
snapshotting the graph needs it alone. Writers are preferred: once one waits, new readers queue
behind it, so a steady stream of queries cannot starve the background indexer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SharedLock"]


class SharedLock:
    """``with lock:`` is exclusive and re-entrant for its holder; ``with lock.shared():`` is shared."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._depth = 0
        self._waiting_writers = 0

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return True
            self._waiting_writers += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer, self._depth = me, 1
        return True

    def release(self) -> None:
        with self._cond:
            if self._writer != threading.get_ident():
                raise RuntimeError("release of a SharedLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._writer = None
                self._cond.notify_all()

    def __enter__(self) -> "SharedLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire_shared(self) -> bool:
        """Join the readers; returns whether this thread already held the lock as the writer
        (then nothing was taken). Pass the result to :meth:`release_shared`. Plain methods rather
        than only a context manager: the lean query path runs thousands of times a second."""
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                return True
            while self._writer is not None or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
            return False

    def release_shared(self, owned: bool) -> None:
        if owned:
            return
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock together with other readers (inside the writer's own hold: no-op)."""
        owned = self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared(owned)

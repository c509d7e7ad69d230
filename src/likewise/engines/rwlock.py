"""A lock that many readers share, or one writer holds (re-entrantly): the guard of the HNSW graph.

faiss searches a graph safely from many threads at once and releases the GIL while it does, so the
plain queries of a server's worker threads can run on every core; only growing, compacting or
snapshotting the graph needs it alone. Writers are preferred: once one waits, new readers queue
behind it, so a steady stream of queries cannot starve the background indexer.

Readers that find no writer join without touching the condition variable (a list append and a
re-check, each atomic under the GIL), which makes a shared hold ~10x cheaper: a query takes one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FAST", "OWNED", "SLOW", "SharedLock"]

OWNED, FAST, SLOW = 0, 1, 2  # tokens of SharedLock.acquire_shared


class SharedLock:
    """``with lock:`` is exclusive and re-entrant for its holder; ``with lock.shared():`` is shared."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._depth = 0
        self._waiting_writers = 0
        self._fast: list[None] = []  # readers that joined on the fast path (one entry each)

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return True
            self._waiting_writers += 1
            try:
                while self._writer is not None or self._readers or self._fast:
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

    def __enter__(self) -> SharedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire_shared(self) -> int:
        """Join the readers; returns a token for :meth:`release_shared`: ``FAST`` or ``SLOW`` (how
        it joined), or ``OWNED`` when this thread holds the lock as the writer (nothing taken).

        The fast path appends to ``_fast`` and then checks again for a writer. A writer registers
        as waiting before it checks ``_fast``, so either it sees this reader and waits, or this
        reader sees it and backs out to the slow path, which queues behind it.
        """
        if self._writer is None and not self._waiting_writers:
            self._fast.append(None)
            if self._writer is None and not self._waiting_writers:
                return FAST
            self._leave_fast()
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                return OWNED
            while self._writer is not None or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
            return SLOW

    def release_shared(self, token: int) -> None:
        if token == FAST:
            self._leave_fast()
        elif token == SLOW:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    def _leave_fast(self) -> None:
        self._fast.pop()
        if self._waiting_writers:  # a writer may be waiting for the readers to drain
            with self._cond:
                self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock together with other readers (inside the writer's own hold: no-op)."""
        token = self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared(token)

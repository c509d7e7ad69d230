"""The graph's shared lock: readers together, a writer alone, writers not starved, re-entrant."""

from __future__ import annotations

import threading
import time

from likewise.engines.rwlock import OWNED, SharedLock


def test_writer_excludes_readers_and_readers_share() -> None:
    lock = SharedLock()
    state = {"readers": 0, "max_readers": 0, "writing": False}
    guard = threading.Lock()
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with lock.shared():
                with guard:
                    if state["writing"]:
                        errors.append("a reader ran during a write")
                    state["readers"] += 1
                    state["max_readers"] = max(state["max_readers"], state["readers"])
                time.sleep(0.0005)
                with guard:
                    state["readers"] -= 1

    def writer() -> None:
        for _ in range(200):
            with lock:
                with guard:
                    if state["readers"]:
                        errors.append("a write began while readers held the lock")
                    state["writing"] = True
                time.sleep(0.0002)
                with guard:
                    state["writing"] = False

    readers = [threading.Thread(target=reader) for _ in range(6)]
    for t in readers:
        t.start()
    w = threading.Thread(target=writer)
    w.start()
    w.join(timeout=60)
    stop.set()
    for t in readers:
        t.join()
    assert not w.is_alive(), "the writer was starved by a stream of readers"
    assert not errors, errors[:3]
    assert state["max_readers"] > 1  # readers did overlap


def test_writer_holds_shared_reentrantly() -> None:
    lock = SharedLock()
    with lock:
        token = lock.acquire_shared()
        assert token == OWNED
        lock.release_shared(token)
        with lock:  # re-entrant
            with lock.shared():
                pass
    # Free again: another thread can write.
    done = threading.Event()

    def write() -> None:
        with lock:
            done.set()

    t = threading.Thread(target=write)
    t.start()
    t.join(timeout=10)
    assert done.is_set()

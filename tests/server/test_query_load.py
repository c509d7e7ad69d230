"""Where the query routes answer: a lone plain query on the event loop, anything else in a thread."""

from __future__ import annotations

import threading

import anyio

from likewise.server.common import QueryLoad, plain_query


def test_a_lone_plain_query_is_answered_on_the_event_loop() -> None:
    load = QueryLoad()

    def where() -> int:
        return threading.get_ident()

    async def main() -> None:
        loop = threading.get_ident()
        with load.counted():
            assert await load.answer(where, plain=True) == loop
            assert await load.answer(where, plain=False) != loop  # filters, fields: a worker thread
            with load.counted():  # another query in flight: both go to worker threads
                assert await load.answer(where, plain=True) != loop
        assert load.active == 0

    anyio.run(main)


def test_plain_query_needs_nothing_but_the_graph() -> None:
    assert plain_query(None, None, False, "none") and plain_query(None, None, None, None)
    assert not plain_query({"a": 1}, None, False, "none")
    assert not plain_query(None, "ns", False, "none")
    assert not plain_query(None, None, True, "none")
    assert not plain_query(None, None, False, "all")

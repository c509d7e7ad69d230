"""The engine's id table: offsets and a UTF-8 blob, a fixed-width copy for the query path where it
fits, recent ids in a list; packing for snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from likewise.engines.ids import IdTable


def _packed(ids: list[str]) -> IdTable:
    table = IdTable.of(ids)
    table.pack(len(ids))
    return table


def test_ascii_ids_of_even_width_get_the_fixed_copy() -> None:
    ids = [str(i) for i in range(70_000)] + ["id-dashed", "Z"]  # crosses a 65,536-row block
    table = _packed(ids)
    assert table._fixed is not None and table._fixed.dtype == np.dtype("S9")
    picks = [70_001, 0, 65_535, 65_536, 70_000, 7]
    assert table.take(picks) == [ids[p] for p in picks]
    assert table.take(picks, np.array(picks)) == [ids[p] for p in picks]
    assert table.take([]) == []


def test_ids_of_one_length_are_viewed_in_the_blob() -> None:
    ids = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(300)]  # UUID-shaped
    table = _packed(ids)
    assert table._fixed is not None and table._fixed.dtype == np.dtype("S36")
    assert np.shares_memory(table._fixed, np.frombuffer(table._blob, dtype=np.uint8))  # no copy
    assert table.take([299, 0, 150]) == [ids[299], ids[0], ids[150]]


@pytest.mark.parametrize(
    "ids",
    [
        ["plain", "café", "東京"],  # not ASCII
        ["a\x00", "b", "c\x00\x00"],  # NULs, which a numpy S array drops at the end
        ["x"] * 50 + ["y" * 64],  # so uneven that the copy would cost more than the blob
    ],
)
def test_ids_that_do_not_fit_a_fixed_width_are_read_from_the_blob(ids: list[str]) -> None:
    table = _packed(ids)
    assert table._fixed is None
    assert table.take(list(range(len(ids)))[::-1]) == ids[::-1]
    assert [table[p] for p in range(len(ids))] == ids


def test_pack_round_trips_and_recent_ids_are_served_from_the_list() -> None:
    table = IdTable.of(["a", "bb", "ccc"])
    offsets, blob = table.pack(2)  # the first two go into the blob, the third stays recent
    assert offsets.tolist() == [0, 1, 3] and blob == b"abb"
    assert table.take([2, 0, 1]) == ["ccc", "a", "bb"]  # a recent position: not from the copy
    assert table.take([1, 0]) == ["bb", "a"]
    reopened = IdTable(offsets, blob)
    reopened.extend(["ccc", "é"])
    assert reopened.take([3, 2, 1, 0]) == ["é", "ccc", "bb", "a"] and len(reopened) == 4
    offsets, blob = reopened.pack(4)
    assert reopened._fixed is None and blob == "abbcccé".encode()
    assert [reopened[p] for p in range(4)] == ["a", "bb", "ccc", "é"]

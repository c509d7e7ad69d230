"""EmbeddingCache: persistence across reopen, hit/miss counting, model separation, CachedEmbedder."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from likewise.embedders import CachedEmbedder, EmbeddingCache
from likewise.errors import CorruptionError


def test_hits_and_misses_across_a_reopen(tmp_path: Path, make_fake_text: Any) -> None:
    path = tmp_path / "cache.sqlite"
    inner = make_fake_text()
    with EmbeddingCache(path) as cache:
        first = CachedEmbedder(inner, cache).embed_batch(["a", "b", "c"])
        assert (cache.hits, cache.misses) == (0, 3)
    assert inner.texts_embedded == 3

    # A new process would do exactly this: open the file again.
    with EmbeddingCache(path) as cache:
        embedder = CachedEmbedder(inner, cache)
        again = embedder.embed_batch(["a", "b", "c", "d"])
        stats = cache.stats()
    assert inner.texts_embedded == 4  # only "d" was computed
    assert (stats.hits, stats.misses, stats.entries) == (3, 1, 4)
    assert stats.hit_rate == pytest.approx(0.75)
    np.testing.assert_array_equal(first, again[:3])


def test_duplicates_in_a_batch_are_embedded_once(make_fake_text: Any) -> None:
    inner = make_fake_text()
    embedder = CachedEmbedder(inner, EmbeddingCache(":memory:"))
    out = embedder.embed_batch(["x", "y", "x", "x"])
    assert inner.texts_embedded == 2
    np.testing.assert_array_equal(out[0], out[2])
    assert embedder.embed_batch([]).shape == (0, inner.dimensions)


def test_models_do_not_share_entries(make_fake_text: Any) -> None:
    cache = EmbeddingCache(":memory:")
    a = CachedEmbedder(make_fake_text(8, "model-a"), cache)
    b_inner = make_fake_text(8, "model-b")
    b = CachedEmbedder(b_inner, cache)
    a.embed_batch(["same text"])
    b.embed_batch(["same text"])
    assert b_inner.texts_embedded == 1
    cache.clear("model-a")
    assert cache.stats().entries == 1


def test_vectors_round_trip_exactly(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    vectors = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    cache.put_many("m", ["p", "q", "r"], vectors)
    got = cache.get_many("m", ["r", "nope", "p"])
    np.testing.assert_array_equal(got[0], vectors[2])
    assert got[1] is None
    np.testing.assert_array_equal(got[2], vectors[0])


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    EmbeddingCache(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(CorruptionError, match="schema version 99"):
        EmbeddingCache(path)


def test_default_location_follows_env(likewise_cache_dir: Path) -> None:
    with EmbeddingCache() as cache:
        assert Path(cache.path) == likewise_cache_dir / "embeddings.sqlite"

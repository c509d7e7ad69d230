"""A persistent embedding cache: the same text under the same model is embedded once, ever.

:class:`EmbeddingCache` is a small SQLite file (stdlib, WAL mode) mapping
``(model key, sha256(text))`` to a float32 vector. It survives restarts and is safe to share between
processes (SQLite locks; a busy timeout instead of an error). The model key names everything that
changes the vectors (model id, pooling, token limit), so two configurations never share entries.

:class:`CachedEmbedder` puts a cache in front of any text :class:`~likewise.embedders.base.Embedder`;
:class:`~likewise.embedders.text.TextEmbedder` uses the same machinery through its ``cache=``
argument. Hits and misses are counted per cache object and reported by :meth:`EmbeddingCache.stats`.

This file's schema is independent of the index store's; it is versioned with ``PRAGMA user_version``
and upgraded by the numbered steps in ``_MIGRATIONS``. Rows are raw little-endian float32 bytes,
never pickles.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from likewise.embedders.base import Embedder, FloatMatrix, Metric, cache_dir
from likewise.errors import CorruptionError, InvalidInputError

__all__ = ["CacheStats", "CachedEmbedder", "EmbeddingCache"]

# Numbered schema steps; step i upgrades user_version i to i + 1. Append, never edit.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE embeddings (
        model TEXT NOT NULL,
        key BLOB NOT NULL,
        dims INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model, key)
    ) WITHOUT ROWID;
    """,
)

# SQLite caps the number of host parameters per statement; stay well below the oldest limit (999).
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class CacheStats:
    """Counters of one :class:`EmbeddingCache` object since it was opened (``entries``: on disk)."""

    hits: int
    misses: int
    entries: int
    path: str

    @property
    def hit_rate(self) -> float:
        """Hits over lookups; 0.0 before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    """SQLite-backed vectors keyed by model and content hash.

    ``path`` defaults to ``$LIKEWISE_CACHE_DIR/embeddings.sqlite`` (``~/.cache/likewise/…``);
    ``":memory:"`` gives a throwaway cache for tests.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            path = cache_dir() / "embeddings.sqlite"
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One connection shared across threads, serialised by _lock.
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self.hits = 0
        self.misses = 0

    def _migrate(self) -> None:
        with self._lock:
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version > len(_MIGRATIONS):
                raise CorruptionError(
                    f"embedding cache {self.path} has schema version {version}, newer than this "
                    f"likewise understands ({len(_MIGRATIONS)}); upgrade likewise or delete it",
                    path=self.path,
                )
            for step in range(version, len(_MIGRATIONS)):
                with self._db:
                    self._db.executescript(_MIGRATIONS[step])
                    self._db.execute(f"PRAGMA user_version = {step + 1}")

    def get_many(self, model: str, texts: Sequence[str]) -> list[FloatMatrix | None]:
        """The cached vector of each text under ``model``, or ``None``; counts hits and misses."""
        digests = [_digest(t) for t in texts]
        found: dict[bytes, FloatMatrix] = {}
        unique = list(dict.fromkeys(digests))
        with self._lock:
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, dims, vector FROM embeddings WHERE model = ? AND key IN ({marks})",
                    (model, *chunk),
                ).fetchall()
                for key, dims, blob in rows:
                    vector = np.frombuffer(blob, dtype="<f4")
                    if vector.shape[0] == dims:  # a torn or foreign row is a miss, not a crash
                        found[bytes(key)] = vector.astype(np.float32)
        result = [found.get(d) for d in digests]
        hits = sum(v is not None for v in result)
        self.hits += hits
        self.misses += len(result) - hits
        return result

    def put_many(self, model: str, texts: Sequence[str], vectors: FloatMatrix) -> None:
        """Store one vector per text under ``model`` (replacing what was there)."""
        if len(texts) != len(vectors):
            raise InvalidInputError(
                f"{len(texts)} texts but {len(vectors)} vectors", texts=len(texts)
            )
        matrix = np.asarray(vectors, dtype="<f4")
        rows = [
            (model, _digest(t), int(matrix.shape[1]), matrix[i].tobytes())
            for i, t in enumerate(texts)
        ]
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings (model, key, dims, vector) VALUES (?, ?, ?, ?)",
                rows,
            )

    def embed_through(
        self, model: str, texts: Sequence[str], embed: Callable[[list[str]], FloatMatrix]
    ) -> FloatMatrix:
        """Vectors for ``texts``: cached ones read, the rest computed once by ``embed`` and stored.

        Duplicate texts within the batch are embedded once. ``embed`` receives only the misses.
        """
        cached = self.get_many(model, texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, cached) if v is None))
        fresh: dict[str, FloatMatrix] = {}
        if missing:
            computed = np.asarray(embed(missing), dtype=np.float32)
            if computed.shape[0] != len(missing):
                raise InvalidInputError(
                    f"the embedder returned {computed.shape[0]} vectors for {len(missing)} texts"
                )
            self.put_many(model, missing, computed)
            fresh = {t: computed[i] for i, t in enumerate(missing)}
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        rows = [v if v is not None else fresh[t] for t, v in zip(texts, cached)]
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)

    def stats(self) -> CacheStats:
        """Hits and misses since this object was opened, and the number of vectors on disk."""
        with self._lock:
            (entries,) = self._db.execute("SELECT count(*) FROM embeddings").fetchone()
        return CacheStats(hits=self.hits, misses=self.misses, entries=int(entries), path=self.path)

    def clear(self, model: str | None = None) -> None:
        """Forget every vector, or only those of ``model``."""
        with self._lock, self._db:
            if model is None:
                self._db.execute("DELETE FROM embeddings")
            else:
                self._db.execute("DELETE FROM embeddings WHERE model = ?", (model,))

    def close(self) -> None:
        """Close the database file; the object cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({self.path!r}, hits={self.hits}, misses={self.misses})"


class CachedEmbedder(Embedder[str]):
    """Any text embedder behind an :class:`EmbeddingCache`; same ``model_id`` and vectors.

    ``key`` names the inner embedder's configuration in the cache; it defaults to the inner
    embedder's ``cache_key`` attribute when it has one (``TextEmbedder`` does), else ``model_id``.
    """

    def __init__(
        self, inner: Embedder[str], cache: EmbeddingCache | None = None, key: str | None = None
    ) -> None:
        self.inner = inner
        self.cache = cache if cache is not None else EmbeddingCache()
        self.model_id = inner.model_id
        self.dimensions = inner.dimensions
        self.metric: Metric = inner.metric
        self.key = key or str(getattr(inner, "cache_key", inner.model_id))

    def embed_batch(self, items: Sequence[str]) -> FloatMatrix:
        if not items:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return self.cache.embed_through(self.key, list(items), self.inner.embed_batch)

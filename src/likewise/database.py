"""The ``Database``: one data directory, its lock, its SQLite store and the engines of its indexes.

Directory layout::

    <data>/LOCK              holder's PID; flock'ed while open (one writer process)
    <data>/likewise.db       SQLite store (the truth), with -wal and -shm beside it
    <data>/engines/<id>/     ANN snapshot of index <id> (a cache, rebuilt when missing or damaged)
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import threading
import weakref
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .engines import EngineParams, VectorEngine
from .errors import IndexExistsError, InvalidArgumentError, IndexNotFoundError, LikewiseError, StorageError
from .index import Index
from .lock import DirectoryLock
from .store import IndexRow, Store
from .types import IndexConfig
from .validation import check_dimensions, check_index_name, check_metric

__all__ = ["Database", "open"]

log = logging.getLogger("likewise")

_open_databases: "weakref.WeakSet[Database]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # write snapshots for databases the program forgot to close
    for db in list(_open_databases):
        try:
            db.close()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            log.exception("closing %s at exit failed", db.path)


class Database:
    """An embedded, durable vector database in one directory. Use :func:`likewise.open`."""

    def __init__(self, path: str | Path, *, engine: EngineParams | None = None, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create data directory {self.path}: {exc}") from exc
        self._lock = DirectoryLock(self.path)
        try:
            self._store = Store(self.path / "likewise.db", synchronous=synchronous)
        except BaseException:
            self._lock.release()
            raise
        self._params = engine or EngineParams()
        self._write_lock = threading.RLock()
        self._indexes: dict[str, Index] = {}
        self._closed = False
        _open_databases.add(self)

    def __repr__(self) -> str:
        return f"likewise.Database({str(self.path)!r})"

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LikewiseError(f"database {self.path} is closed")

    # -- indexes ----------------------------------------------------------------------------------

    @staticmethod
    def _config(row: IndexRow) -> IndexConfig:
        extra = json.loads(row.config or "{}")
        return IndexConfig(
            name=row.name,
            dimensions=row.dimensions,
            metric=row.metric,  # type: ignore[arg-type]
            description=row.description,
            model=extra.get("model"),
            embedder=(extra.get("embedder") or {}).get("kind"),
            created_on=row.created_on,
            modified_on=row.modified_on,
        )

    def create_index(
        self,
        name: str,
        dimensions: int | None = None,
        metric: str | None = None,
        description: str | None = None,
        *,
        model: str | None = None,
        embedder: Any | None = None,
    ) -> Index:
        """Create an index. Its name, dimensions, metric and embedder cannot change afterwards.

        ``model`` (a text model: Hugging Face id, local path or ``@cf/...`` name) or ``embedder`` (a
        fitted ``RecordEmbedder``, ``ItemEmbedder``, ``ImageEmbedder`` or a ``TextEmbedder``) binds
        the index to an embedder: dimensions and metric come from it, and ``upsert_texts``,
        ``query_text`` and friends embed for you.
        """
        self._check_open()
        check_index_name(name)
        if model is not None and embedder is not None:
            raise InvalidArgumentError("give either model= or embedder=, not both")
        extra: dict[str, Any] = {}
        if model is not None or embedder is not None:
            from .binding import describe_embedder, text_embedder_config

            if model is not None:
                bound, dims_from, metric_from = text_embedder_config(model, self.embedding_cache_path)
            else:
                bound, dims_from, metric_from = describe_embedder(embedder)
            if dimensions is not None and dimensions != dims_from:
                raise InvalidArgumentError(
                    f"dimensions={dimensions} disagrees with the embedder, which makes {dims_from}-d vectors"
                )
            dimensions, metric = dims_from, metric or metric_from
            extra = {"embedder": bound}
            if "model" in bound:
                extra["model"] = bound["model"]
        dims = check_dimensions(dimensions)
        metric = check_metric(metric or "cosine")
        if description is not None and not isinstance(description, str):
            raise InvalidArgumentError(f"description must be a string, got {type(description).__name__}")
        with self._write_lock:
            row = self._store.create_index(name, dims, metric, description, json.dumps(extra))
            if row is None:
                raise IndexExistsError(f"an index named {name!r} already exists", name=name)
            index = self._open_index(row)
            if embedder is not None:
                index._embedder = embedder
            return index

    @property
    def embedding_cache_path(self) -> Path:
        """The persistent embedding cache of this data directory (keyed by model and text hash)."""
        return self.path / "embedding-cache.db"

    def index(self, name: str) -> Index:
        """The index called ``name``."""
        self._check_open()
        with self._write_lock:
            cached = self._indexes.get(name)
            if cached is not None:
                return cached
            row = self._store.get_index(name)
            if row is None:
                raise IndexNotFoundError(f"no index named {name!r}", name=name)
            return self._open_index(row)

    def list_indexes(self) -> list[IndexConfig]:
        self._check_open()
        return [self._config(r) for r in self._store.list_indexes()]

    def delete_index(self, name: str) -> None:
        """Delete an index and everything in it."""
        self._check_open()
        with self._write_lock:
            row = self._store.get_index(name)
            if row is None:
                raise IndexNotFoundError(f"no index named {name!r}", name=name)
            opened = self._indexes.pop(name, None)
            if opened is not None:
                opened._engine.close(snapshot=False)
            self._store.delete_index(row.id)
            shutil.rmtree(self._engine_dir(row.id), ignore_errors=True)

    def _engine_dir(self, index_id: int) -> Path:
        return self.path / "engines" / str(index_id)

    def _open_index(self, row: IndexRow) -> Index:
        store = self._store
        engine = VectorEngine(
            row.dimensions,
            row.metric,
            self._params,
            column_source=lambda key, after: store.column(row.id, key, after),
            namespace_source=lambda after: store.namespaces(row.id, after),
            snapshot_dir=self._engine_dir(row.id),
        )
        how = engine.load(_StoreView(store, row.id))
        damaged = how.startswith("rebuilt") and "no snapshot" not in how
        # A snapshot that failed its checks means damage on disk: say so louder than a normal open.
        (log.warning if damaged else log.info)("opened index %s: %s", row.name, how)
        for prop, _kind, _seq in store.metadata_indexes(row.id):
            engine.ensure_column(prop)
        engine.start()
        index = Index(self, row, engine)
        self._indexes[row.name] = index
        return index

    # -- lifetime ---------------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write ANN snapshots of every open index, so that the next open need not rebuild them."""
        for index in list(self._indexes.values()):
            index._engine.save()

    def close(self) -> None:
        """Stop background work, write snapshots, close the store and release the directory lock."""
        if self._closed:
            return
        with self._write_lock:
            self._closed = True
            for index in self._indexes.values():
                index._engine.close(snapshot=True)
            self._indexes.clear()
            self._store.close()
            self._lock.release()
        _open_databases.discard(self)


def open(path: str | Path = "./likewise-data", *, engine: EngineParams | None = None, synchronous: str = "FULL") -> Database:
    """Open (creating if missing) the data directory ``path`` as an embedded database.

    One process at a time may hold a directory; a second gets :class:`~likewise.errors.DataDirLockedError`
    naming the holder. ``synchronous="FULL"`` (the default) syncs every acknowledged write to disk;
    ``"NORMAL"`` survives process crashes but may lose the last writes on power loss.
    """
    return Database(path, engine=engine, synchronous=synchronous)


class _StoreView:
    """The reads an engine makes from the store of one index when it opens (``engines.StoreView``)."""

    def __init__(self, store: Store, index_id: int) -> None:
        self._store, self._id = store, index_id

    def count_upto(self, label: int) -> int:
        return self._store.count_upto(self._id, label)

    def labels_upto(self, label: int) -> np.ndarray:
        return self._store.labels_upto(self._id, label)

    def labels_and_ids(self, upto: int) -> tuple[np.ndarray, list[str]]:
        return self._store.labels_and_ids(self._id, upto)

    def tail(self, after: int) -> Iterator[tuple[np.ndarray, list[str], np.ndarray]]:
        return self._store.iter_vectors(self._id, after)

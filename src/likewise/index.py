"""The ``Index`` facade: validated writes to the store, then to the engine; planned queries.

Every mutation is validated whole, committed to SQLite (synced) and only then applied to the
in-memory engine, all under the database's write lock, so that when a call returns its effect is both
durable and visible to the next query.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from .engines import VectorEngine
from .errors import (
    InvalidArgumentError,
    InvalidIdError,
    InvalidCursorError,
    InvalidFilterError,
    InvalidInputError,
    MetadataIndexNotFoundError,
    VectorNotFoundError,
)
from .filters import parse_filter
from .store import IndexRow, Store
from .types import IndexConfig, IndexInfo, Match, MetadataIndex, QueryResult, Vector, VectorList
from .validation import (
    as_matrix,
    as_query_vector,
    check_id,
    check_ids,
    check_metadata,
    check_namespace,
    check_top_k,
)

if TYPE_CHECKING:
    from .database import Database
    from .search import SearchResult

__all__ = ["Index"]

RETURN_METADATA = ("none", "indexed", "all")
METADATA_TYPES = ("string", "number", "boolean")
INDEXED_STRING_BYTES = 64
CURSOR_TTL_SECONDS = 3600
MAX_LIST_COUNT = 1000


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


class Index:
    """One vector index of a :class:`~likewise.Database`. Obtain it with ``db.index(name)``."""

    def __init__(self, db: "Database", row: IndexRow, engine: VectorEngine) -> None:
        self._db = db
        self._row = row
        self._store: Store = db._store
        self._engine = engine
        self._write_lock: threading.RLock = db._write_lock
        self._embedder: Any | None = None
        self._cosine = row.metric == "cosine"

    # -- description ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._row.name

    @property
    def dimensions(self) -> int:
        return self._row.dimensions

    @property
    def metric(self) -> str:
        return self._row.metric

    @property
    def config(self) -> IndexConfig:
        return self._db._config(self._row)

    def __repr__(self) -> str:
        return f"Index(name={self.name!r}, dimensions={self.dimensions}, metric={self.metric!r})"

    def __len__(self) -> int:
        return self._engine.count

    def info(self) -> IndexInfo:
        """Dimensions, vector count and how far mutations are processed (all of them, always)."""
        last = self._store.last_mutation(self._row.id)
        return IndexInfo(
            dimensions=self.dimensions,
            vector_count=self._engine.count,
            processed_up_to_mutation=str(last[0]) if last else None,
            processed_up_to_datetime=last[1] if last else None,
        )

    # -- writing ----------------------------------------------------------------------------------

    def _validated(
        self, vectors: Iterable[Vector | Mapping[str, Any]]
    ) -> tuple[list[str], np.ndarray, list[str | None], list[dict[str, Any] | None], list[str | None]]:
        items = [v if isinstance(v, Vector) else self._from_mapping(v, i) for i, v in enumerate(vectors)]
        ids = check_ids([v.id for v in items])
        matrix = as_matrix([v.values for v in items], self.dimensions, ids, cosine=self.metric == "cosine")
        namespaces = [check_namespace(v.namespace) for v in items]
        metas: list[dict[str, Any] | None] = []
        texts: list[str | None] = []
        for vid, v in zip(ids, items):
            meta, text = check_metadata(v.metadata, vid)
            metas.append(meta)
            texts.append(text)
        return ids, matrix, namespaces, metas, texts

    @staticmethod
    def _from_mapping(item: Any, i: int) -> Vector:
        if not isinstance(item, Mapping):
            raise InvalidInputError(
                f"vector #{i} must be a likewise.Vector or an object with id and values, got {type(item).__name__}"
            )
        if "id" not in item:
            raise InvalidIdError(f"vector #{i} has no 'id'", index=i)
        if "values" not in item:
            raise InvalidInputError(f"vector #{i} needs 'values'", index=i)
        return Vector(
            id=item["id"], values=item["values"], metadata=item.get("metadata"), namespace=item.get("namespace")
        )

    def _write(
        self,
        ids: list[str],
        matrix: np.ndarray,
        namespaces: Sequence[str | None],
        metas: Sequence[Mapping[str, Any] | None],
        texts: Sequence[str | None],
        replace: bool,
        documents: Sequence[str | None] | None = None,
    ) -> str:
        with self._write_lock:
            self._db._check_open()
            seq, removed, written, labels = self._store.write_vectors(
                self._row.id, ids, matrix, namespaces, texts, replace=replace, texts=documents
            )
            self._engine.remove(removed)
            if len(written):
                rows = self._engine.prepare(matrix[written])
                w = written.tolist()
                self._engine.add(labels, [ids[i] for i in w], rows, [namespaces[i] for i in w], [metas[i] for i in w])
        return str(seq)

    def insert(self, vectors: Iterable[Vector | Mapping[str, Any]]) -> str:
        """Add vectors; ids that already exist are left as they are. Returns the mutation id."""
        ids, matrix, namespaces, metas, texts = self._validated(vectors)
        return self._write(ids, matrix, namespaces, metas, texts, replace=False)

    def upsert(self, vectors: Iterable[Vector | Mapping[str, Any]]) -> str:
        """Create or fully replace vectors (values, metadata and namespace). Returns the mutation id."""
        ids, matrix, namespaces, metas, texts = self._validated(vectors)
        return self._write(ids, matrix, namespaces, metas, texts, replace=True)

    def upsert_arrays(
        self,
        ids: Sequence[str],
        matrix: np.ndarray | Sequence[Sequence[float]],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        namespace: str | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> str:
        """Upsert a numpy batch: ``ids[i]`` gets row ``i`` of ``matrix`` (and ``metadata[i]``).

        ``texts[i]``, when given, is the text row ``i`` was embedded from: it is stored for keyword
        search (``search(mode="keyword"|"hybrid")``) and returned with search hits.
        """
        checked = check_ids(list(ids))
        mat = as_matrix(matrix, self.dimensions, checked, cosine=self.metric == "cosine")
        if len(mat) != len(checked):
            raise InvalidArgumentError(f"{len(checked)} ids but {len(mat)} rows in the matrix")
        ns = check_namespace(namespace)
        if metadata is not None and len(metadata) != len(checked):
            raise InvalidArgumentError(f"{len(checked)} ids but {len(metadata)} metadata entries")
        metas: list[dict[str, Any] | None] = []
        meta_texts: list[str | None] = []
        for i, vid in enumerate(checked):
            meta, text = check_metadata(metadata[i] if metadata is not None else None, vid)
            metas.append(meta)
            meta_texts.append(text)
        if texts is not None and len(texts) != len(checked):
            raise InvalidArgumentError(f"{len(checked)} ids but {len(texts)} texts")
        if texts is not None and not all(t is None or isinstance(t, str) for t in texts):
            raise InvalidInputError("texts must be strings (or None)")
        return self._write(checked, mat, [ns] * len(checked), metas, meta_texts, replace=True, documents=texts)

    def delete_by_ids(self, ids: Sequence[str]) -> str:
        """Delete vectors by id (unknown ids are ignored). Returns the mutation id."""
        if isinstance(ids, str) or not isinstance(ids, (list, tuple)):
            raise InvalidArgumentError(f"delete_by_ids expects a list of ids, got {type(ids).__name__}")
        checked = check_ids(list(ids), unique=False)
        with self._write_lock:
            self._db._check_open()
            seq, removed = self._store.delete_vectors(self._row.id, checked)
            self._engine.remove(removed)
        return str(seq)

    # -- reading ----------------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str]) -> list[Vector]:
        """The stored vectors with these ids, with values, metadata and namespace; unknown ids are skipped."""
        if isinstance(ids, str) or not isinstance(ids, (list, tuple)):
            raise InvalidArgumentError(f"get_by_ids expects a list of ids, got {type(ids).__name__}")
        checked = check_ids(list(ids), unique=False)
        return [
            Vector(
                id=s.id,
                values=s.values.tolist(),
                metadata=json.loads(s.metadata) if s.metadata else None,
                namespace=s.namespace,
            )
            for s in self._store.get_vectors(self._row.id, checked)
        ]

    def query(
        self,
        vector: Sequence[float] | np.ndarray,
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
    ) -> QueryResult:
        """The ``top_k`` nearest vectors among those that pass ``filter`` (and are in ``namespace``)."""
        if filter is None and namespace is None and not return_values and return_metadata == "none":
            # Most queries: nothing to parse or fetch, so go straight to the engine.
            q = self._query_vector(vector)
            k = check_top_k(top_k)
            lean = self._engine.nearest(q, k)
            if lean is not None:
                return QueryResult(list(map(Match, *lean)))
            return QueryResult([Match(vid, score) for vid, _, score in self._engine.search(q, k)])
        top_k = check_top_k(top_k)
        if return_metadata not in RETURN_METADATA:
            if isinstance(return_metadata, bool):
                return_metadata = "all" if return_metadata else "none"
            else:
                raise InvalidArgumentError(
                    f"return_metadata must be one of {', '.join(RETURN_METADATA)}; got {return_metadata!r}"
                )
        flt = parse_filter(filter)
        ns = check_namespace(namespace)
        q = self._query_vector(vector)
        engine = self._engine
        hits = engine.search(q, top_k, flt, ns)
        if not hits or not (return_values or return_metadata != "none"):
            return QueryResult([Match(id=vid, score=score) for vid, _, score in hits])
        indexed = self._indexed_properties() if return_metadata == "indexed" else []
        for attempt in range(3):
            rows = self._store.by_labels([label for _, label, _ in hits])
            if len(rows) == len(hits) or attempt == 2:
                break
            # A write replaced or deleted some of these between the search and the fetch: search
            # again, so that the answer is the top-k of one state (after two tries, drop them).
            hits = engine.search(q, top_k, flt, ns)
        matches: list[Match] = []
        for vid, label, score in hits:
            row = rows.get(label)
            if row is None:
                continue
            m = Match(id=vid, score=score, namespace=row.namespace)
            if return_values:
                m.values = row.values.tolist()
            meta = json.loads(row.metadata) if row.metadata else {}
            if return_metadata == "all":
                m.metadata = meta
            elif return_metadata == "indexed":
                m.metadata = self._indexed_view(meta, indexed)
            matches.append(m)
        return QueryResult(matches)

    def _query_vector(self, vector: Sequence[float] | np.ndarray) -> np.ndarray:
        """The checked query vector, as a unit vector under the cosine metric."""
        return as_query_vector(vector, self._row.dimensions, cosine=self._cosine, unit=self._cosine)

    def query_by_id(
        self,
        id: str,
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
    ) -> QueryResult:
        """Query with the stored vector of ``id`` (which is its own nearest match)."""
        found = self._store.get_vectors(self._row.id, [check_id(id)])
        if not found:
            raise VectorNotFoundError(f"no vector with id {id!r} in index {self.name!r}", id=id)
        return self.query(found[0].values, top_k, filter, namespace, return_values, return_metadata)

    def list_vectors(self, count: int = 100, cursor: str | None = None) -> VectorList:
        """One page of ids in id order. The iteration sees the index as it was at the first page."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_LIST_COUNT:
            raise InvalidArgumentError(f"count must be an integer from 1 to {MAX_LIST_COUNT}; got {count!r}")
        now = time.time()
        if cursor is None:
            last = self._store.last_mutation(self._row.id)
            snapshot, after, expires = (last[0] if last else 0), None, now + CURSOR_TTL_SECONDS
        else:
            snapshot, after, expires = self._decode_cursor(cursor, now)
        ids = self._store.list_ids(self._row.id, after, count + 1, snapshot)
        truncated = len(ids) > count
        ids = ids[:count]
        next_cursor = self._encode_cursor(ids[-1], snapshot, expires) if truncated else None
        return VectorList(
            vectors=ids,
            total_count=self._store.count_up_to(self._row.id, snapshot),
            is_truncated=truncated,
            next_cursor=next_cursor,
            cursor_expiration_timestamp=(
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)) if truncated else None
            ),
        )

    def _encode_cursor(self, after: str, snapshot: int, expires: float) -> str:
        raw = json.dumps({"i": self._row.id, "a": after, "m": snapshot, "e": int(expires)}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_cursor(self, cursor: str, now: float) -> tuple[int, str, float]:
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            index_id, after, snapshot, expires = raw["i"], raw["a"], int(raw["m"]), float(raw["e"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidCursorError(f"cursor {cursor[:40]!r} is not a cursor this index handed out") from exc
        if index_id != self._row.id or not isinstance(after, str):
            raise InvalidCursorError("cursor belongs to another index")
        if expires < now:
            raise InvalidCursorError("cursor has expired; start again without a cursor")
        return snapshot, after, expires

    # -- metadata indexes -------------------------------------------------------------------------

    def _indexed_properties(self) -> list[tuple[str, str]]:
        return [(p, t) for p, t, _ in self._store.metadata_indexes(self._row.id)]

    @staticmethod
    def _indexed_view(meta: Mapping[str, Any], indexed: list[tuple[str, str]]) -> dict[str, Any]:
        from .filters import MISSING, lookup

        out: dict[str, Any] = {}
        for prop, kind in indexed:
            value = lookup(meta, tuple(prop.split(".")))
            if value is MISSING:
                continue
            if kind == "string" and isinstance(value, str):
                value = _truncate_utf8(value, INDEXED_STRING_BYTES)
            out[prop] = value
        return out

    def create_metadata_index(self, property_name: str, index_type: str) -> str:
        """Declare a metadata index (``string``, ``number`` or ``boolean``) that makes filters on it fast."""
        if index_type not in METADATA_TYPES:
            raise InvalidArgumentError(
                f"index_type must be one of {', '.join(METADATA_TYPES)}; got {index_type!r}"
            )
        try:
            parse_filter({property_name: None})
        except InvalidFilterError as exc:
            raise InvalidArgumentError(f"invalid property name: {exc.message}") from exc
        with self._write_lock:
            seq = self._store.create_metadata_index(self._row.id, property_name, index_type)
            self._engine.ensure_column(property_name)
        return str(seq)

    def list_metadata_indexes(self) -> list[MetadataIndex]:
        return [MetadataIndex(p, t) for p, t in self._indexed_properties()]  # type: ignore[arg-type]

    def delete_metadata_index(self, property_name: str) -> str:
        with self._write_lock:
            seq = self._store.delete_metadata_index(self._row.id, property_name)
        if seq is None:
            raise MetadataIndexNotFoundError(
                f"index {self.name!r} has no metadata index on {property_name!r}", property=property_name
            )
        return str(seq)

    # -- embedding for you -----------------------------------------------------------------------

    @property
    def has_embedder(self) -> bool:
        """Whether the index is bound to an embedder (``query_text`` works), without building it."""
        return self._embedder is not None or json.loads(self._row.config or "{}").get("embedder") is not None

    @property
    def embedder(self) -> Any:
        """The embedder this index is bound to (built from its stored configuration on first use)."""
        if self._embedder is None:
            from .binding import build_embedder

            bound = json.loads(self._row.config or "{}").get("embedder")
            if bound is None:
                raise InvalidArgumentError(
                    f"index {self.name!r} has no embedder: create it with model=... or embedder=... to "
                    "upsert and query objects instead of vectors"
                )
            self._embedder = build_embedder(bound, self._db.embedding_cache_path)
        return self._embedder

    def _upsert_objects(self, items: Sequence[Sequence[Any]], namespace: str | None, what: str) -> str:
        ids: list[str] = []
        objects: list[Any] = []
        metas: list[Mapping[str, Any] | None] = []
        for i, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise InvalidInputError(f"{what} #{i} must be (id, {what}) or (id, {what}, metadata)", index=i)
            ids.append(item[0])
            objects.append(item[1])
            metas.append(item[2] if len(item) == 3 else None)
        check_ids(ids)
        matrix = self.embedder.embed_batch(objects) if objects else np.zeros((0, self.dimensions), np.float32)
        texts = [o if isinstance(o, str) else None for o in objects] if what == "text" else None
        return self.upsert_arrays(ids, matrix, metadata=metas, namespace=namespace, texts=texts)

    def upsert_texts(self, items: Sequence[Sequence[Any]], namespace: str | None = None) -> str:
        """Embed and upsert ``(id, text)`` or ``(id, text, metadata)`` items (through the cache)."""
        return self._upsert_objects(items, namespace, "text")

    def upsert_records(self, items: Sequence[Sequence[Any]], namespace: str | None = None) -> str:
        """Embed and upsert ``(id, record)`` or ``(id, record, metadata)`` items with the record embedder."""
        return self._upsert_objects(items, namespace, "record")

    def upsert_images(self, items: Sequence[Sequence[Any]], namespace: str | None = None) -> str:
        """Embed and upsert ``(id, image)`` or ``(id, image, metadata)``; an image is a path or a PIL image."""
        return self._upsert_objects(items, namespace, "image")

    def upsert_items(self, metadata: Mapping[str, Mapping[str, Any]] | None = None, namespace: str | None = None) -> str:
        """Upsert every item the bound ``ItemEmbedder`` learned (``metadata`` by item id, optional)."""
        ids, matrix = self.embedder.vectors()
        metas = [metadata.get(i) if metadata else None for i in ids]
        return self.upsert_arrays(ids, matrix, metadata=metas, namespace=namespace)

    def query_text(
        self,
        text: str,
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
    ) -> QueryResult:
        """Embed ``text`` with the index's model (an image index embeds it with its text tower) and query."""
        return self.query(self.embed_query(text), top_k, filter, namespace, return_values, return_metadata)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed a query text with the index's model (an image index uses its text tower)."""
        if not isinstance(text, str) or not text:
            raise InvalidInputError("a query text must be a non-empty string")
        embedder = self.embedder
        embed_text = getattr(embedder, "embed_texts", None)
        vector: np.ndarray = embed_text([text])[0] if embed_text is not None else embedder.embed_batch([text])[0]
        return vector

    def search(
        self,
        text: str,
        mode: str = "hybrid",
        top_k: int = 10,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> "SearchResult":
        """Find the texts that match ``text``: ``mode`` is ``vector``, ``keyword`` (BM25) or ``hybrid``.

        Hits carry the score, the text, a highlighted snippet, and the source and position of a
        document chunk. See :mod:`likewise.search`.
        """
        from .search import search

        return search(self, text, mode=mode, top_k=top_k, filter=filter, namespace=namespace, **options)

    def texts(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored texts of these ids (those upserted with a text)."""
        rows = self._store.get_vectors(self._row.id, check_ids(list(ids), unique=False))
        by_label = self._store.texts(self._row.id, [r.label for r in rows])
        return {r.id: by_label[r.label] for r in rows if r.label in by_label}

    def query_record(
        self,
        record: Mapping[str, Any],
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
    ) -> QueryResult:
        """Embed ``record`` with the bound record embedder and query."""
        vector = self.embedder.embed_batch([record])[0]
        return self.query(vector, top_k, filter, namespace, return_values, return_metadata)

    # -- maintenance ------------------------------------------------------------------------------

    def optimize(self) -> None:
        """Index every vector into the ANN graph now and write a snapshot (normally done in the background)."""
        self._engine.flush()
        self._engine.save()

"""Batch embedding with Ray Data: read JSONL/Parquet, embed with an actor pool, upsert into an index.

:func:`embed_dataset` owns the pipeline::

    read_json / read_parquet ──► map_batches(_EmbedBatches, ActorPoolStrategy(size=actors))
                                     one embedder per actor, loaded once; a GPU per actor if present
                              ──► iter_batches in the caller ──► index.upsert_arrays (sharded or embedded)

The target is any object with ``upsert_arrays``: a :class:`~likewise.distributed.ShardedIndex`
(each write batch is routed to the shards), an embedded :class:`~likewise.Index` (whose directory
lock lives in this process, hence the writes happen here) or a ``likewise.Client`` index.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..validation import check_namespace

__all__ = ["EmbedProgress", "EmbedReport", "embed_dataset"]

log = logging.getLogger("likewise.distributed")

EmbedderFactory = Callable[[], Any]


@dataclass(frozen=True)
class EmbedProgress:
    """Reported after every write batch: rows embedded and upserted so far."""

    rows: int
    seconds: float
    total: int | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class EmbedReport:
    """What :func:`embed_dataset` did."""

    rows: int
    seconds: float
    mutation: str | None
    actors: int
    gpus_per_actor: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a value Ray Data handed over (numpy scalars and arrays, NaN → None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _TextModel:
    """A picklable factory for a text model, built inside each actor (never cached on disk there)."""

    def __init__(self, model: str | None) -> None:
        self.model = model

    def __call__(self) -> Any:
        from ..embedders import TextEmbedder

        return TextEmbedder(self.model)


class _BoundEmbedder:
    """A picklable factory for the embedder an index is bound to (its stored configuration)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    def __call__(self) -> Any:
        if self.config.get("kind") == "text":
            return _TextModel(self.config["model"])()
        from ..binding import build_embedder

        return build_embedder(self.config, Path("embedding-cache.db"))


class _ShardWriter:
    """What an embedding actor needs to upsert into a sharded index itself (picklable)."""

    def __init__(self, index: Any, namespace: str | None) -> None:
        db = index._sharded_db
        self.path, self.manifest, self.row = db.path, db.manifest, index._row
        self.handles = list(db._shards.handles)
        self.timeouts = (db._shards.timeout_s, db._shards.write_timeout_s)
        self.namespace = namespace

    def index(self) -> Any:
        from .sharded import ShardedDatabase, ShardedIndex

        db = ShardedDatabase(
            self.path, self.manifest, self.handles, owns_actors=False, owns_ray=False, detached=False,
            timeout_s=self.timeouts[0], write_timeout_s=self.timeouts[1],
        )
        return ShardedIndex(db, self.row)


class _EmbedBatches:
    """The Ray Data actor: builds the embedder once, then embeds one batch per call.

    With a ``writer`` (a sharded target) it also upserts the batch, routed to the shards, and returns
    only the row count: vectors never travel through the driver.
    """

    def __init__(
        self,
        factory: EmbedderFactory,
        text_field: str,
        id_field: str,
        metadata_fields: Sequence[str] | None,
        store_texts: bool,
        writer: _ShardWriter | None = None,
    ) -> None:
        self.embedder = factory()
        self.text_field = text_field
        self.id_field = id_field
        self.metadata_fields = metadata_fields
        self.store_texts = store_texts
        self.writer = writer
        self.target = writer.index() if writer is not None else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for needed in (self.text_field, self.id_field):
            if needed not in batch:
                raise InvalidArgumentError(f"the data set has no {needed!r} column; it has {sorted(batch)}")
        texts = [str(t) for t in batch[self.text_field]]
        vectors = np.asarray(self.embedder.embed_batch(texts), dtype=np.float32)
        fields = (
            list(self.metadata_fields)
            if self.metadata_fields is not None
            else [c for c in batch if c not in (self.text_field, self.id_field)]
        )
        metadata = []
        for i in range(len(texts)):
            meta = {f: _plain(batch[f][i]) for f in fields if f in batch}
            meta = {k: v for k, v in meta.items() if v is not None}
            metadata.append(json.dumps(meta) if meta else "")
        out = {
            "id": np.array([str(_plain(v)) for v in batch[self.id_field]], dtype=object),
            "vector": vectors,
            "metadata": np.array(metadata, dtype=object),
        }
        if self.store_texts:
            out["text"] = np.array(texts, dtype=object)
        if self.target is not None and self.writer is not None:
            self.target.upsert_arrays(
                [str(v) for v in out["id"]], vectors, metadata=[json.loads(m) if m else None for m in metadata],
                namespace=self.writer.namespace, texts=texts if self.store_texts else None,
            )
            return {"rows": np.array([len(texts)], dtype=np.int64)}
        return out


def _log_progress(p: EmbedProgress) -> None:
    total = f"/{p.total}" if p.total else ""
    log.info("embedded and upserted %d%s rows in %.1f s (%.0f rows/s)", p.rows, total, p.seconds, p.rows_per_second)


def embed_dataset(
    source: str | Path | Sequence[str | Path],
    index: Any,
    *,
    model: str | None = None,
    embedder: EmbedderFactory | None = None,
    text_field: str = "text",
    id_field: str = "id",
    metadata_fields: Sequence[str] | None = None,
    namespace: str | None = None,
    format: str | None = None,
    batch_size: int = 256,
    actors: int | None = None,
    num_gpus: float | None = None,
    cpus_per_actor: float = 1.0,
    write_batch: int = 4096,
    store_texts: bool = True,
    count_rows: bool = False,
    direct_writes: bool | None = None,
    progress: Callable[[EmbedProgress], None] | None = _log_progress,
) -> EmbedReport:
    """Embed the ``text_field`` of every row of ``source`` and upsert it into ``index`` under ``id_field``.

    ``source``: JSONL (``.jsonl``/``.ndjson``/``.json``, one object a line) or Parquet files or
    folders (``format`` overrides the suffix). The embedder: ``embedder`` (a picklable factory
    called once in each actor), else the text model ``model``, else the embedder the index is bound
    to. ``actors`` embedders run in a Ray actor pool (default: one per GPU when the cluster has GPUs,
    else one), each with ``num_gpus`` (default: 1 when the cluster has GPUs) and ``cpus_per_actor``.
    Metadata is ``metadata_fields`` (default: every column but the id and the text); the text is
    stored for keyword search unless ``store_texts=False``. ``progress`` is called after every write
    batch of ``write_batch`` rows (default: a log line); ``count_rows=True`` counts the rows first so
    progress knows the total (a second pass over JSONL). Ids must be unique within the data set.

    Into a sharded index the embedding actors upsert their batches to the shards themselves
    (``direct_writes``, the default there), so vectors never pass through this process; progress
    then counts rows as actors finish batches. Into any other index, this process writes
    ``write_batch`` rows at a time.

    Starts a local Ray instance when this process has none (and stops it afterwards).
    """
    from .sharded import _ray

    ray = _ray()
    namespace = check_namespace(namespace)  # here, before any actor starts
    paths = [str(source)] if isinstance(source, (str, Path)) else [str(p) for p in source]
    if not paths:
        raise InvalidArgumentError("embed_dataset needs at least one input path")
    fmt = format or ("parquet" if paths[0].rstrip("/").endswith(".parquet") else "jsonl")
    if fmt not in ("jsonl", "parquet"):
        raise InvalidArgumentError(f"format must be 'jsonl' or 'parquet'; got {fmt!r}")
    factory: EmbedderFactory
    if embedder is not None:
        factory = embedder
    elif model is not None:
        factory = _TextModel(model)
    else:
        bound = json.loads(getattr(getattr(index, "_row", None), "config", None) or "{}").get("embedder")
        if bound is None:
            raise InvalidArgumentError(
                "no embedder: pass model=... or embedder=..., or use an index created with model=/embedder="
            )
        factory = _BoundEmbedder(bound)

    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    try:
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        gpus_per_actor = (1.0 if gpus >= 1 else 0.0) if num_gpus is None else float(num_gpus)
        pool = actors if actors is not None else (max(1, int(gpus)) if gpus_per_actor else 1)
        if fmt == "parquet":
            ds = ray.data.read_parquet(paths)
        else:
            ds = ray.data.read_json(paths, lines=True, file_extensions=None)
        total = ds.count() if count_rows else None
        from .sharded import ShardedIndex

        sharded = isinstance(index, ShardedIndex)
        writer = _ShardWriter(index, namespace) if (sharded if direct_writes is None else direct_writes) else None
        if writer is not None and not sharded:
            raise InvalidArgumentError("direct_writes=True needs a sharded index (likewise.distributed)")
        embedded = ds.map_batches(
            _EmbedBatches,
            fn_constructor_kwargs={
                "factory": factory,
                "text_field": text_field,
                "id_field": id_field,
                "metadata_fields": list(metadata_fields) if metadata_fields is not None else None,
                "store_texts": store_texts,
                "writer": writer,
            },
            compute=ray.data.ActorPoolStrategy(size=pool),
            batch_size=batch_size,
            batch_format="numpy",
            num_gpus=gpus_per_actor or None,
            num_cpus=cpus_per_actor,
        )
        start = time.monotonic()
        rows = 0
        mutation: str | None = None
        if writer is not None:
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
                rows += int(batch["rows"].sum())
                if progress is not None:
                    progress(EmbedProgress(rows, time.monotonic() - start, total))
            mutation = index.info().processed_up_to_mutation  # after every actor's writes
            return EmbedReport(rows, time.monotonic() - start, mutation, pool, gpus_per_actor)
        for batch in embedded.iter_batches(batch_size=write_batch, batch_format="numpy", prefetch_batches=2):
            ids = [str(v) for v in batch["id"]]
            metas = [json.loads(m) if m else None for m in batch["metadata"]]
            texts = [str(t) for t in batch["text"]] if store_texts else None
            mutation = index.upsert_arrays(ids, batch["vector"], metadata=metas, namespace=namespace, texts=texts)
            rows += len(ids)
            if progress is not None:
                progress(EmbedProgress(rows, time.monotonic() - start, total))
        return EmbedReport(rows, time.monotonic() - start, mutation, pool, gpus_per_actor)
    finally:
        if owns_ray:
            ray.shutdown()

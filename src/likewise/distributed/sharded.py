"""The coordinator: :class:`ShardedDatabase` and :class:`ShardedIndex`, the embedded interface over shards.

They subclass :class:`likewise.Database` and :class:`likewise.Index` so that they are accepted
wherever those are (``create_app``, type checks) and keep their method names, signatures and return
types; every method that touches data is overridden here. Input is validated *here*, whole, with the
same validators as the embedded index, before anything is sent, so a bad batch writes nothing
anywhere. Then:

* mutations route each id to ``shard_of(id, N)`` (:mod:`.common`) and go to the owning shards in
  parallel; index-level changes (create/delete index, metadata indexes, optimize) go to every shard;
* queries scatter to every shard, each returns its own top-k (the exact top-k of its part when
  exact, so the merge is exact too) and the coordinator merges them by score (cosine: higher first;
  euclidean and dot-product: lower first);
* ``list_vectors`` merges the shards' id-ordered pages under one composite cursor that pins every
  shard's snapshot.

Mutation ids and ``processed_up_to_mutation`` are vector clocks (``"12.0.7"``, one mutation sequence
per shard): a write returns the clock read just after it; the write is visible once ``info()``'s
clock is, shard by shard, at least as large. With one writer the two strings are equal, as with the
embedded index.

Failure is loud: a shard that died, is restarting, lost its data or did not answer within
``timeout_s`` raises :class:`~.common.ShardUnavailableError` (HTTP 503, ``shard_unavailable``).
``query(..., allow_partial=True)`` instead returns a result with ``partial=True`` and the missing
shard numbers. Nothing else ever returns an answer that leaves a shard out.
"""

from __future__ import annotations

import atexit
import heapq
import logging
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..database import Database
from ..engines import EngineParams
from ..errors import (
    ConflictError,
    IndexExistsError,
    IndexNotFoundError,
    InvalidArgumentError,
    InvalidInputError,
    LikewiseError,
    MetadataIndexNotFoundError,
    MissingDependencyError,
    VectorNotFoundError,
)
from ..filters import parse_filter
from ..index import CURSOR_TTL_SECONDS, MAX_LIST_COUNT, RETURN_METADATA, Index
from ..store import IndexRow
from ..types import (
    IndexConfig,
    IndexInfo,
    Match,
    MetadataIndex,
    Vector,
    VectorList,
    higher_is_closer,
)
from ..validation import (
    as_matrix,
    as_query_vector,
    check_id,
    check_ids,
    check_metadata,
    check_namespace,
    check_top_k,
)
from .common import (
    Manifest,
    ShardedQueryResult,
    ShardStatus,
    ShardUnavailableError,
    check_shard_count,
    create_manifest,
    decode_cursor,
    encode_cursor,
    format_clock,
    read_manifest,
    route,
    shard_of,
)
from .shard import ShardActor

__all__ = ["NAMESPACE", "ShardedDatabase", "ShardedIndex", "open"]

log = logging.getLogger("likewise.distributed")

NAMESPACE = "likewise"  # Ray namespace of the shard actors (named likewise-<db id>-shard-<i>)
MAX_SHARDS = 4096
START_TIMEOUT_S = 180.0  # starting an actor process on a busy machine takes seconds

_open_sharded: weakref.WeakSet[ShardedDatabase] = weakref.WeakSet()


_exit_hook_registered = False


def _close_all() -> None:
    """Close the databases the program forgot to close (snapshots written, actors stopped).

    Registered by :func:`open` after ``ray.init``, so it runs before Ray's own exit hook (atexit
    runs hooks last-registered first).
    """
    for db in list(_open_sharded):
        try:
            db.close()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            log.exception("closing sharded database %s at exit failed", db.path)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            "the sharded database needs Ray; install it with: pip install 'likewise[ray]'", extra="ray"
        ) from exc
    return ray


class _Shards:
    """The shard actors' handles, and the one place where Ray's errors become likewise errors."""

    def __init__(self, handles: list[Any], timeout_s: float, write_timeout_s: float) -> None:
        self.handles = handles
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s

    @property
    def n(self) -> int:
        return len(self.handles)

    def call(
        self,
        method: str,
        args: Mapping[int, tuple[Any, ...]],
        *,
        timeout: float | None = None,
        allow_missing: bool = False,
    ) -> tuple[dict[int, Any], dict[int, str]]:
        """Call ``method(*args[i])`` on shards ``i`` in parallel: ``(answers, missing shards → why)``.

        A likewise error raised by a shard (bad input, index not found …) is raised as is. A shard
        that is dead, restarting, without its data, or silent for ``timeout`` seconds is *missing*:
        :class:`ShardUnavailableError` unless ``allow_missing``.
        """
        ray = _ray()
        exc_mod = ray.exceptions
        timeout = self.timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        answers: dict[int, Any] = {}
        missing: dict[int, str] = {}
        refs: dict[int, Any] = {}
        for i, a in args.items():
            try:
                refs[i] = self.handles[i].run.remote((method, a))  # one argument: see ShardActor.run
            except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for an unknown actor
                missing[i] = f"cannot submit: {str(exc).splitlines()[0][:200]}"
        if refs and not missing:  # the common case: one ray.get for all (the slow path sorts out errors)
            try:
                values = ray.get(list(refs.values()), timeout=timeout)
                return dict(zip(refs, values)), {}
            except exc_mod.RayError:
                pass
        left = max(0.0, deadline - time.monotonic())
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=left) if refs else ([], [])
        done = set(ready)
        failure: BaseException | None = None
        for i, ref in refs.items():
            if ref not in done:
                missing[i] = f"no answer within {timeout:g} s"
                continue
            try:
                answers[i] = ray.get(ref)
            except exc_mod.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, ShardUnavailableError):
                    missing[i] = cause.message
                elif isinstance(cause, BaseException):
                    failure = failure or cause
                else:  # pragma: no cover - Ray always attaches the cause
                    failure = failure or exc
            except exc_mod.RayError as exc:  # actor died / unavailable, object lost, owner died, timeout
                missing[i] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        if failure is not None:
            raise failure
        if missing and not allow_missing:
            shards = sorted(missing)
            why = "; ".join(f"shard {i}: {missing[i]}" for i in shards)
            raise ShardUnavailableError(
                f"{len(shards)} of {self.n} shards unavailable ({why}); no answer was given rather than a "
                "partial one",
                shards=shards,
                reason=why,
            )
        return answers, missing

    def all(self, method: str, *args: Any, timeout: float | None = None, allow_missing: bool = False) -> tuple[dict[int, Any], dict[int, str]]:
        return self.call(method, {i: args for i in range(self.n)}, timeout=timeout, allow_missing=allow_missing)

    def first(self, method: str, *args: Any) -> Any:
        """The answer of the lowest-numbered shard that answers (for metadata every shard holds)."""
        answers, missing = self.all(method, *args, allow_missing=True)
        if not answers:
            raise ShardUnavailableError(
                f"no shard answered {method}: " + "; ".join(f"shard {i}: {m}" for i, m in sorted(missing.items())),
                shards=sorted(missing),
                reason="all shards unavailable",
            )
        return answers[min(answers)]


class ShardedIndex(Index):
    """One index of a :class:`ShardedDatabase`: the :class:`~likewise.Index` interface over its shards."""

    def __init__(self, db: ShardedDatabase, row: IndexRow) -> None:
        self._db = db
        self._sharded_db = db
        self._row = row
        self._embedder = None
        self._shards = db._shards

    def __repr__(self) -> str:
        return (
            f"ShardedIndex(name={self.name!r}, dimensions={self.dimensions}, metric={self.metric!r}, "
            f"shards={self._shards.n})"
        )

    def _check(self) -> None:
        self._db._check_open()

    def __len__(self) -> int:
        self._check()
        answers, _ = self._shards.all("count", self.name)
        return int(sum(answers.values()))

    def info(self) -> IndexInfo:
        """Summed vector count; ``processed_up_to_mutation`` is the vector clock of the shards."""
        self._check()
        answers, _ = self._shards.all("info", self.name)
        infos = [answers[i] for i in range(self._shards.n)]
        stamps = [i.processed_up_to_datetime for i in infos if i.processed_up_to_datetime]
        return IndexInfo(
            dimensions=self.dimensions,
            vector_count=sum(i.vector_count for i in infos),
            processed_up_to_mutation=format_clock([int(i.processed_up_to_mutation or 0) for i in infos]),
            processed_up_to_datetime=max(stamps) if stamps else None,
        )

    # -- writing ----------------------------------------------------------------------------------

    def _clock_after(self, seqs: Mapping[int, int]) -> str:
        """The clock just after a write that produced ``seqs`` on some shards."""
        rest = {i: (self.name,) for i in range(self._shards.n) if i not in seqs}
        full = dict(seqs)
        if rest:
            answers, _ = self._shards.call("last_seq", rest)
            full.update(answers)
        return format_clock([int(full[i]) for i in range(self._shards.n)]) or "0"

    def _write_vectors(self, op: str, vectors: Iterable[Vector | Mapping[str, Any]]) -> str:
        self._check()
        items = [v if isinstance(v, Vector) else self._from_mapping(v, i) for i, v in enumerate(vectors)]
        ids, _, _, _, _ = self._validated(items)  # whole batch, before anything is sent
        groups = route(ids, self._shards.n) or {0: []}
        args = {s: (self.name, op, [items[p] for p in pos]) for s, pos in groups.items()}
        answers, _ = self._shards.call("write", args, timeout=self._shards.write_timeout_s)
        return self._clock_after({s: int(m) for s, m in answers.items()})

    def insert(self, vectors: Iterable[Vector | Mapping[str, Any]]) -> str:
        """Add vectors; ids that already exist are left as they are. Returns the mutation id (a clock)."""
        return self._write_vectors("insert", vectors)

    def upsert(self, vectors: Iterable[Vector | Mapping[str, Any]]) -> str:
        """Create or fully replace vectors. Returns the mutation id (a clock)."""
        return self._write_vectors("upsert", vectors)

    def upsert_arrays(
        self,
        ids: Sequence[str],
        matrix: np.ndarray | Sequence[Sequence[float]],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        namespace: str | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> str:
        """Upsert a numpy batch (row ``i`` to ``ids[i]``), each shard's rows in one call."""
        self._check()
        checked = check_ids(list(ids))
        mat = as_matrix(matrix, self.dimensions, checked, cosine=self.metric == "cosine")
        if len(mat) != len(checked):
            raise InvalidArgumentError(f"{len(checked)} ids but {len(mat)} rows in the matrix")
        ns = check_namespace(namespace)
        if metadata is not None and len(metadata) != len(checked):
            raise InvalidArgumentError(f"{len(checked)} ids but {len(metadata)} metadata entries")
        metas = [check_metadata(metadata[i] if metadata is not None else None, v)[0] for i, v in enumerate(checked)]
        if texts is not None and len(texts) != len(checked):
            raise InvalidArgumentError(f"{len(checked)} ids but {len(texts)} texts")
        if texts is not None and not all(t is None or isinstance(t, str) for t in texts):
            raise InvalidInputError("texts must be strings (or None)")
        groups = route(checked, self._shards.n) or {0: []}
        args: dict[int, tuple[Any, ...]] = {}
        for s, pos in groups.items():
            rows = np.asarray(pos, dtype=np.int64)
            args[s] = (
                self.name,
                [checked[p] for p in pos],
                mat[rows] if len(pos) else mat[:0],
                [metas[p] for p in pos] if metadata is not None else None,
                ns,
                [texts[p] for p in pos] if texts is not None else None,
            )
        answers, _ = self._shards.call("upsert_arrays", args, timeout=self._shards.write_timeout_s)
        return self._clock_after({s: int(m) for s, m in answers.items()})

    def delete_by_ids(self, ids: Sequence[str]) -> str:
        """Delete vectors by id (unknown ids are ignored). Returns the mutation id (a clock)."""
        self._check()
        if isinstance(ids, str):
            raise InvalidArgumentError("delete_by_ids expects a list of ids, not one string")
        checked = check_ids(list(ids), unique=False)
        groups = route(checked, self._shards.n) or {0: []}
        args = {s: (self.name, [checked[p] for p in pos]) for s, pos in groups.items()}
        answers, _ = self._shards.call("delete", args, timeout=self._shards.write_timeout_s)
        return self._clock_after({s: int(m) for s, m in answers.items()})

    # -- reading ----------------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str]) -> list[Vector]:
        """The stored vectors with these ids, in the order asked; unknown ids are skipped."""
        self._check()
        if isinstance(ids, str):
            raise InvalidArgumentError("get_by_ids expects a list of ids, not one string")
        wanted = list(dict.fromkeys(check_ids(list(ids), unique=False)))
        groups = route(wanted, self._shards.n)
        if not groups:
            return []
        answers, _ = self._shards.call("get", {s: (self.name, [wanted[p] for p in pos]) for s, pos in groups.items()})
        found = {v.id: v for got in answers.values() for v in got}
        return [found[v] for v in wanted if v in found]

    def query(
        self,
        vector: Sequence[float] | np.ndarray,
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
        *,
        allow_partial: bool = False,
    ) -> ShardedQueryResult:
        """The ``top_k`` nearest among all shards (each shard's top-k, merged by score).

        ``allow_partial=True``: when shards are unavailable, answer from the others with
        ``partial=True`` and ``missing_shards`` set, instead of raising ``ShardUnavailableError``.
        """
        self._check()
        top_k = check_top_k(top_k)
        if return_metadata not in RETURN_METADATA:
            if isinstance(return_metadata, bool):
                return_metadata = "all" if return_metadata else "none"
            else:
                raise InvalidArgumentError(
                    f"return_metadata must be one of {', '.join(RETURN_METADATA)}; got {return_metadata!r}"
                )
        parse_filter(filter)
        ns = check_namespace(namespace)
        q = as_query_vector(vector, self.dimensions, cosine=self.metric == "cosine")
        answers, missing = self._shards.all(
            "query", self.name, q, top_k, filter, ns, return_values, return_metadata, allow_missing=allow_partial
        )
        merged = self.merge([answers[i] for i in sorted(answers)], top_k)
        return ShardedQueryResult(merged, partial=bool(missing), missing_shards=sorted(missing))

    def merge(self, per_shard: Sequence[Sequence[Match]], top_k: int) -> list[Match]:
        """The best ``top_k`` of the shards' lists (each already best first), by this index's metric."""
        sign = -1.0 if higher_is_closer(self.metric) else 1.0
        return list(heapq.merge(*per_shard, key=lambda m: sign * m.score))[:top_k]

    def query_by_id(
        self,
        id: str,
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
        *,
        allow_partial: bool = False,
    ) -> ShardedQueryResult:
        """Query with the stored vector of ``id`` (fetched from its shard, then scattered)."""
        self._check()
        vid = check_id(id)
        owner = shard_of(vid, self._shards.n)
        answers, _ = self._shards.call("get", {owner: (self.name, [vid])})
        if not answers[owner]:
            raise VectorNotFoundError(f"no vector with id {id!r} in index {self.name!r}", id=id)
        return self.query(
            answers[owner][0].values, top_k, filter, namespace, return_values, return_metadata,
            allow_partial=allow_partial,
        )

    def list_vectors(self, count: int = 100, cursor: str | None = None) -> VectorList:
        """One page of ids in id order, over every shard; the cursor pins each shard's snapshot."""
        self._check()
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_LIST_COUNT:
            raise InvalidArgumentError(f"count must be an integer from 1 to {MAX_LIST_COUNT}; got {count!r}")
        now = time.time()
        n = self._shards.n
        db_id = self._sharded_db.manifest.db_id
        after: str | None
        snapshots: list[int] | None
        if cursor is None:
            after, snapshots, expires = None, None, now + CURSOR_TTL_SECONDS
        else:
            after, snapshots, expires = decode_cursor(cursor, db_id, self.name, n, now)
        args = {i: (self.name, after, count + 1, snapshots[i] if snapshots else None) for i in range(n)}
        answers, _ = self._shards.call("list_page", args)
        pages = [answers[i] for i in range(n)]
        ids = list(heapq.merge(*(p[0] for p in pages)))[: count + 1]
        truncated = len(ids) > count
        ids = ids[:count]
        snaps = [int(p[1]) for p in pages]
        return VectorList(
            vectors=ids,
            total_count=sum(int(p[2]) for p in pages),
            is_truncated=truncated,
            next_cursor=encode_cursor(db_id, self.name, ids[-1], snaps, expires) if truncated else None,
            cursor_expiration_timestamp=(
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)) if truncated else None
            ),
        )

    def texts(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored texts of these ids (those upserted with a text)."""
        self._check()
        wanted = check_ids(list(ids), unique=False)
        groups = route(wanted, self._shards.n)
        if not groups:
            return {}
        answers, _ = self._shards.call("texts", {s: (self.name, [wanted[p] for p in pos]) for s, pos in groups.items()})
        found: dict[str, str] = {}
        for part in answers.values():
            found.update(part)
        return {v: found[v] for v in wanted if v in found}

    def search(self, text: str, mode: str = "hybrid", top_k: int = 10, filter: Mapping[str, Any] | None = None,
               namespace: str | None = None, **options: Any) -> Any:
        """Not available on a sharded index yet (keyword scores are per shard); use ``query_text``."""
        raise InvalidArgumentError(
            "search() (keyword/hybrid) is not available on a sharded index; use query_text() for vector search"
        )

    # -- metadata indexes and maintenance ---------------------------------------------------------

    def create_metadata_index(self, property_name: str, index_type: str) -> str:
        """Declare a metadata index on every shard. Returns the mutation id (a clock)."""
        self._check()
        answers, _ = self._shards.all("create_metadata_index", self.name, property_name, index_type)
        return format_clock([int(answers[i]) for i in range(self._shards.n)]) or "0"

    def list_metadata_indexes(self) -> list[MetadataIndex]:
        self._check()
        return cast(list[MetadataIndex], self._shards.first("list_metadata_indexes", self.name))

    def delete_metadata_index(self, property_name: str) -> str:
        """Delete a metadata index from every shard. Returns the mutation id (a clock)."""
        self._check()
        answers, _ = self._shards.all("delete_metadata_index", self.name, property_name)
        done = {i: int(s) for i, s in answers.items() if s is not None}
        if not done:
            raise MetadataIndexNotFoundError(
                f"index {self.name!r} has no metadata index on {property_name!r}", property=property_name
            )
        return self._clock_after(done)

    def optimize(self) -> None:
        """Index every vector of every shard into its ANN graph now and write the snapshots."""
        self._check()
        self._shards.all("optimize", self.name, timeout=self._shards.write_timeout_s)


class ShardedDatabase(Database):
    """A likewise :class:`~likewise.Database` whose indexes are spread over Ray shard actors.

    Open it with :func:`likewise.distributed.open`. ``path`` holds the manifest and, on a single
    machine or shared storage, the shard directories ``shard-<i>``.
    """

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        handles: list[Any],
        *,
        owns_actors: bool,
        owns_ray: bool,
        detached: bool,
        timeout_s: float,
        write_timeout_s: float,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._shards = _Shards(handles, timeout_s, write_timeout_s)
        self._indexes: dict[str, Index] = {}
        self._closed = False
        self._owns_actors = owns_actors
        self._owns_ray = owns_ray
        self._detached = detached
        _open_sharded.add(self)

    def __repr__(self) -> str:
        return f"likewise.distributed.ShardedDatabase({str(self.path)!r}, shards={self.manifest.shards})"

    def __enter__(self) -> ShardedDatabase:  # noqa: PYI034 - Database.__enter__ is typed likewise
        return self

    @property
    def shards(self) -> int:
        """The number of shards (fixed when the database was created)."""
        return self.manifest.shards

    @property
    def actors(self) -> list[Any]:
        """The Ray actor handles of the shards, shard 0 first (for operations and tests)."""
        return list(self._shards.handles)

    def wait_ready(self, timeout_s: float = 120.0) -> list[ShardStatus]:
        """Wait until every shard answers with its store open (after a restart, say); loud on timeout."""
        self._check_open()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                answers, _ = self._shards.all("open", timeout=max(1.0, deadline - time.monotonic()))
                return [answers[i] for i in range(self.shards)]
            except ShardUnavailableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)

    def shard_status(self) -> list[ShardStatus | None]:
        """Where each shard runs (``None`` for a shard that does not answer)."""
        self._check_open()
        answers, _ = self._shards.all("status", allow_missing=True)
        return [answers.get(i) for i in range(self.shards)]

    # -- indexes ----------------------------------------------------------------------------------

    def create_index(
        self,
        name: str,
        dimensions: int | None = None,
        metric: str | None = None,
        description: str | None = None,
        *,
        model: str | None = None,
        embedder: Any | None = None,
    ) -> ShardedIndex:
        """Create an index on every shard (see :meth:`likewise.Database.create_index`).

        An index that exists on some shards only (a create cut short by a failure) is completed,
        provided its configuration agrees.
        """
        self._check_open()
        answers, _ = self._shards.all(
            "create_index", name, dimensions, metric, description, model, embedder, timeout=START_TIMEOUT_S
        )
        rows = [answers[i] for i in range(self.shards)]
        if not any(created for created, _ in rows):
            raise IndexExistsError(f"an index named {name!r} already exists", name=name)
        shapes = {(r.dimensions, r.metric) for _, r in rows}
        if len(shapes) > 1:
            raise ConflictError(
                f"index {name!r} exists on some shards with another configuration: {sorted(shapes)}", name=name
            )
        index = ShardedIndex(self, rows[0][1])
        if embedder is not None:
            index._embedder = embedder
        self._indexes[name] = index
        return index

    def index(self, name: str) -> ShardedIndex:
        """The index called ``name``."""
        self._check_open()
        cached = self._indexes.get(name)
        if cached is not None:
            return cast(ShardedIndex, cached)
        row = self._shards.first("describe", name)
        index = ShardedIndex(self, row)
        self._indexes[name] = index
        return index

    def list_indexes(self) -> list[IndexConfig]:
        self._check_open()
        return cast(list[IndexConfig], self._shards.first("list_indexes"))

    def delete_index(self, name: str) -> None:
        """Delete an index from every shard."""
        self._check_open()
        self._indexes.pop(name, None)
        answers, _ = self._shards.all("delete_index", name, timeout=self._shards.write_timeout_s)
        if not any(answers.values()):
            raise IndexNotFoundError(f"no index named {name!r} in {self.path}", name=name)

    # -- lifetime ---------------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write ANN snapshots on every shard."""
        self._check_open()
        self._shards.all("checkpoint", timeout=self._shards.write_timeout_s)

    def close(self) -> None:
        """Close every shard's store (snapshots written, locks released); stop actors and Ray we started.

        Detached shard actors (``open(..., detached=True)``) and actors another process started keep
        running; use :meth:`shutdown` to stop those.
        """
        if self._closed:
            return
        self._closed = True
        _open_sharded.discard(self)
        try:
            if self._owns_actors and not self._detached:
                self._stop_actors()
        finally:
            if self._owns_ray:
                ray = _ray()
                if ray.is_initialized():
                    ray.shutdown()

    def shutdown(self) -> None:
        """Close the stores and kill the shard actors, whoever started them, then :meth:`close`."""
        if not self._closed:
            self._stop_actors()
        self._owns_actors = False
        self.close()

    def _stop_actors(self) -> None:
        ray = _ray()
        try:
            self._shards.all("close", timeout=min(self._shards.write_timeout_s, 60.0), allow_missing=True)
        except LikewiseError:
            log.exception("closing shard stores failed; killing the actors anyway")
        for handle in self._shards.handles:
            try:
                ray.kill(handle, no_restart=True)
            except ray.exceptions.RayError:  # pragma: no cover - already gone
                log.debug("shard actor already gone", exc_info=True)


def open(
    path: str | Path,
    shards: int | None = None,
    address: str | None = None,
    *,
    engine: EngineParams | None = None,
    synchronous: str = "FULL",
    shard_cpus: float = 0.25,
    max_concurrency: int = 4,
    detached: bool = False,
    timeout_s: float = 30.0,
    write_timeout_s: float = 600.0,
    ray_init: Mapping[str, Any] | None = None,
) -> ShardedDatabase:
    """Open (creating if missing) a sharded database of ``shards`` Ray actors rooted at ``path``.

    ``address=None`` uses the Ray instance this process already has (whatever its address), or starts
    a local one;
    otherwise it is given to ``ray.init`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``).
    ``shards`` is required when creating and, when given, must match the manifest when reopening.
    Each shard actor holds ``likewise.open(path/shard-<i>)`` (``engine`` and ``synchronous`` as for
    :func:`likewise.open`), restarts after a crash (``max_restarts=-1``) and reloads from disk.
    Actors are spread over the nodes (Ray's ``SPREAD``); ``path`` must be visible at the same place
    on every node that may run a shard (one machine, or shared storage). ``shard_cpus`` is the CPU
    reservation per actor. Calls that get no answer within ``timeout_s`` (writes and optimize:
    ``write_timeout_s``) fail with :class:`ShardUnavailableError`.
    """
    if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS):
        raise InvalidArgumentError(f"shards must be an integer from 1 to {MAX_SHARDS}; got {shards!r}")
    ray = _ray()
    root = Path(path).absolute()
    manifest = read_manifest(root)
    if manifest is None and shards is None:
        raise InvalidArgumentError(f"{root} holds no sharded database; pass shards=N to create one")
    owns_ray = False
    if not ray.is_initialized():
        # "local": a new instance of our own, even when another one on this machine could be found.
        kwargs: dict[str, Any] = {"address": address or "local", "logging_level": logging.WARNING}
        if address is None:
            kwargs["include_dashboard"] = False
        kwargs.update(ray_init or {})
        ray.init(**kwargs)
        owns_ray = True
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_close_all)
        _exit_hook_registered = True
    try:
        fresh = manifest is None
        if manifest is None:
            assert shards is not None
            manifest = create_manifest(root, shards)
            fresh = True
        n = check_shard_count(manifest, shards, root)
        remote = ray.remote(ShardActor)
        handles: list[Any] = []
        created = False
        for i in range(n):
            name = f"likewise-{manifest.db_id}-shard-{i}"
            try:
                handles.append(ray.get_actor(name, namespace=NAMESPACE))
                continue
            except ValueError:
                pass
            options: dict[str, Any] = {
                "name": name,
                "namespace": NAMESPACE,
                "get_if_exists": True,
                "max_restarts": -1,
                "max_task_retries": 0,  # at most once: a call in flight when a shard dies fails loudly
                "max_concurrency": max_concurrency,
                "num_cpus": shard_cpus,
                "scheduling_strategy": "SPREAD",
            }
            if detached:
                options["lifetime"] = "detached"
            handles.append(remote.options(**options).remote(str(root), i, n, manifest.db_id, engine, synchronous))
            created = True
        db = ShardedDatabase(
            root, manifest, handles, owns_actors=created, owns_ray=owns_ray, detached=detached,
            timeout_s=timeout_s, write_timeout_s=write_timeout_s,
        )
        try:
            db._shards.all("initialize" if fresh else "open", timeout=START_TIMEOUT_S)
        except BaseException:
            db.close()
            raise
        log.info("opened sharded database %s: %d shards", root, n)
        return db
    except BaseException:
        if owns_ray and ray.is_initialized():
            ray.shutdown()
        raise

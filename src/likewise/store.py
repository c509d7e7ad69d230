"""The SQLite store: the source of truth, and the only module that writes SQL.

Layout of ``<data>/likewise.db`` (WAL mode, ``synchronous=FULL``, so that a returned mutation is on
disk). Every schema change is a numbered migration in :data:`MIGRATIONS`; ``PRAGMA user_version``
records how far a file has been migrated.

* ``indexes``: one row per index (name, dimensions, metric, description, JSON config).
* ``vectors``: one row per stored vector. ``label`` is an AUTOINCREMENT key that is never reused: an
  upsert of an existing id deletes the old row and writes a new one with a new label. The ANN engine
  keys its entries by label, so a snapshot stays valid for every label it covers, and the vectors
  added since are exactly the labels above the snapshot's highest one.
* ``mutations``: the mutation log (sequence, index, operation, count, time); mutation ids are
  sequence numbers.
* ``metadata_indexes``: declared metadata indexes, with the mutation that created them.
* ``text_<index id>``: an FTS5 table (porter stemming) holding the text a vector was embedded from,
  keyed by label, for keyword search; written and deleted in the same transaction as the vector.
* ``sources``: per index, the files a document ingest synced (content hash, chunk count).
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidFilterError,
    StorageError,
    StorageFullError,
)
from .wal import wal_problem

__all__ = ["Store", "IndexRow", "StoredVector", "utcnow", "row_checksum", "MIGRATIONS"]

MIGRATIONS: list[str] = [
    # 1: the initial schema.
    """
    CREATE TABLE indexes (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL UNIQUE,
        dimensions  INTEGER NOT NULL,
        metric      TEXT NOT NULL,
        description TEXT,
        config      TEXT NOT NULL DEFAULT '{}',
        created_on  TEXT NOT NULL,
        modified_on TEXT NOT NULL
    );
    CREATE TABLE vectors (
        label     INTEGER PRIMARY KEY AUTOINCREMENT,
        index_id  INTEGER NOT NULL,
        id        TEXT NOT NULL,
        namespace TEXT,
        vec       BLOB NOT NULL,
        metadata  TEXT,
        mutation  INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX vectors_by_id ON vectors (index_id, id);
    CREATE INDEX vectors_by_index_label ON vectors (index_id, label);
    CREATE TABLE mutations (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        index_id   INTEGER NOT NULL,
        op         TEXT NOT NULL,
        count      INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX mutations_by_index ON mutations (index_id, seq);
    CREATE TABLE metadata_indexes (
        index_id INTEGER NOT NULL,
        property TEXT NOT NULL,
        type     TEXT NOT NULL,
        mutation INTEGER NOT NULL,
        PRIMARY KEY (index_id, property)
    );
    """,
    # 2: texts for keyword search (one FTS5 table per index, created on first text: text_<id>,
    # rowid = vector label) and the files a document ingest has synced.
    """
    CREATE TABLE sources (
        index_id   INTEGER NOT NULL,
        path       TEXT NOT NULL,
        hash       TEXT NOT NULL,
        chunks     INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (index_id, path)
    );
    """,
    # 3: a CRC-32 of every column of a vector row (row_checksum below), so that `likewise
    # verify` finds a flipped byte inside a vector or its metadata, which SQLite's own page checks
    # cannot see. Rows written before this migration have NULL and are reported as unchecked.
    """
    ALTER TABLE vectors ADD COLUMN crc INTEGER;
    """,
]


def utcnow() -> str:
    """Now, as Vectorize writes times: ISO 8601 UTC with microseconds and a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class IndexRow:
    id: int
    name: str
    dimensions: int
    metric: str
    description: str | None
    config: str
    created_on: str
    modified_on: str


@dataclass(frozen=True)
class StoredVector:
    label: int
    id: str
    namespace: str | None
    values: np.ndarray
    metadata: str | None


# The columns a StoredVector is read from, with what its checksum covers (see Store._stored).
_ROW = "label, id, namespace, vec, metadata, index_id, mutation, crc"


def row_checksum(
    label: int, index_id: int, vid: str, namespace: str | None, vec: bytes, metadata: str | None, mutation: int
) -> int:
    """CRC-32 of one ``vectors`` row, every column included (the store writes it, verify checks it).

    SQLite checks its pages' structure but not their contents, so a flipped byte inside a vector or
    its metadata would otherwise be read back as if it were the value written.
    """
    head = f"{label}\x1f{index_id}\x1f{vid}\x1f{namespace if namespace is not None else chr(30)}\x1f"
    head += f"{metadata if metadata is not None else chr(30)}\x1f{mutation}"
    return zlib.crc32(vec, zlib.crc32(head.encode("utf-8", "surrogatepass")))


def _nameable(key: str) -> bool:
    return not any(c in '"\\' or ord(c) < 0x20 for c in key)


def _json_path(key: str) -> str:
    """The SQLite JSON path of a (dotted) metadata key.

    SQLite matches a quoted path label against the key *as written in the JSON text*, and
    ``json.dumps`` writes '"', '\\' and control characters escaped: such a key would silently match
    nothing (a filter on it finds no vector), and a NUL is a path syntax error. Refuse them here, the
    one place keys become SQL, rather than answer wrongly.
    """
    if not _nameable(key):
        raise InvalidFilterError(
            f"metadata key {key!r} cannot be filtered or indexed: it contains '\"', '\\' or a control "
            "character",
            key=key,
        )
    return "$" + "".join(f'."{part}"' for part in key.split("."))


class Store:
    """A SQLite database in WAL mode, guarded by one lock (one connection, any thread)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._lock = threading.RLock()
        # Before SQLite replays the log: it would silently stop at a damaged frame (see wal_problem).
        damage = wal_problem(path)
        if damage is not None:
            raise CorruptionError(
                f"{damage}. Refusing to open {path} as an older state. Restore a backup, or move the "
                "-wal file aside to open the store without those transactions.",
                file=f"{path}-wal",
            )
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA cache_size=-65536")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise CorruptionError(f"cannot open the SQLite store {path}: {exc}", file=str(path)) from exc

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "full" in text or getattr(exc, "sqlite_errorcode", None) == 13:
                raise StorageFullError(f"the disk holding {self.path} is full: {exc}") from exc
            raise StorageError(f"storage error on {self.path}: {exc}") from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageFullError(f"the disk holding {self.path} is full: {exc}") from exc
            raise
        except sqlite3.DatabaseError as exc:
            raise CorruptionError(f"the SQLite store {self.path} is damaged: {exc}", file=str(self.path)) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; committed (and synced) when the block ends, rolled back on error."""
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                # SQLite rolls back by itself on SQLITE_FULL, but not after every failed COMMIT
                # (SQLITE_BUSY keeps the transaction open): never leave the one connection stuck
                # inside a transaction, or no later write could begin (disk-full recovery).
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            yield self._db

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StorageError(
                f"{self.path} was written by a newer likewise (schema {version}; this one knows {len(MIGRATIONS)})"
            )
        for number in range(version, len(MIGRATIONS)):
            self._db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={number + 1}")
            self._db.execute("COMMIT")

    def integrity_check(self) -> list[str]:
        """SQLite's own integrity check; an empty list means the file is sound."""
        with self.reading() as db:
            rows = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
        return [] if rows == ["ok"] else rows

    # -- indexes ----------------------------------------------------------------------------------

    def create_index(
        self, name: str, dimensions: int, metric: str, description: str | None, config: str
    ) -> IndexRow | None:
        """Create an index row; ``None`` when the name is taken."""
        now = utcnow()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM indexes WHERE name = ?", (name,)).fetchone():
                return None
            cur = db.execute(
                "INSERT INTO indexes (name, dimensions, metric, description, config, created_on, modified_on)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, dimensions, metric, description, config, now, now),
            )
            index_id = int(cur.lastrowid or 0)
        return IndexRow(index_id, name, dimensions, metric, description, config, now, now)

    def get_index(self, name: str) -> IndexRow | None:
        with self.reading() as db:
            row = db.execute("SELECT * FROM indexes WHERE name = ?", (name,)).fetchone()
        return IndexRow(*row) if row else None

    def list_indexes(self) -> list[IndexRow]:
        with self.reading() as db:
            return [IndexRow(*r) for r in db.execute("SELECT * FROM indexes ORDER BY name")]

    def update_index_config(self, index_id: int, config: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE indexes SET config = ?, modified_on = ? WHERE id = ?", (config, utcnow(), index_id)
            )

    def delete_index(self, index_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM vectors WHERE index_id = ?", (index_id,))
            db.execute("DELETE FROM metadata_indexes WHERE index_id = ?", (index_id,))
            db.execute("DELETE FROM mutations WHERE index_id = ?", (index_id,))
            db.execute("DELETE FROM indexes WHERE id = ?", (index_id,))
            db.execute("DELETE FROM sources WHERE index_id = ?", (index_id,))
            db.execute(f"DROP TABLE IF EXISTS {self._fts(index_id)}")

    # -- mutations --------------------------------------------------------------------------------

    @staticmethod
    def _log(db: sqlite3.Connection, index_id: int, op: str, count: int) -> int:
        cur = db.execute(
            "INSERT INTO mutations (index_id, op, count, created_at) VALUES (?, ?, ?, ?)",
            (index_id, op, count, utcnow()),
        )
        return int(cur.lastrowid or 0)

    def last_mutation(self, index_id: int) -> tuple[int, str] | None:
        with self.reading() as db:
            row = db.execute(
                "SELECT seq, created_at FROM mutations WHERE index_id = ? ORDER BY seq DESC LIMIT 1", (index_id,)
            ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    # -- vectors ----------------------------------------------------------------------------------

    def write_vectors(
        self,
        index_id: int,
        ids: Sequence[str],
        matrix: np.ndarray,
        namespaces: Sequence[str | None],
        metadata: Sequence[str | None],
        *,
        replace: bool,
        texts: Sequence[str | None] | None = None,
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Write a validated batch in one transaction.

        ``replace=True`` is upsert (existing ids are deleted and written anew); ``False`` is insert
        (existing ids are left as they are). Returns the mutation id, the labels that were removed,
        the positions in the batch that were written and their new labels.
        """
        blobs = [row.tobytes() for row in matrix]
        with self.transaction() as db:
            existing: dict[str, int] = {}
            for start in range(0, len(ids), 900):
                chunk = list(ids[start : start + 900])
                marks = ",".join("?" * len(chunk))
                for vid, label in db.execute(
                    f"SELECT id, label FROM vectors WHERE index_id = ? AND id IN ({marks})", (index_id, *chunk)
                ):
                    existing[vid] = label
            if replace:
                written = np.arange(len(ids))
                removed = np.array(sorted(existing.values()), dtype=np.int64)
                if len(removed):
                    db.executemany("DELETE FROM vectors WHERE label = ?", [(int(x),) for x in removed])
                    self._delete_texts(db, index_id, removed)
            else:
                written = np.array([i for i, v in enumerate(ids) if v not in existing], dtype=np.int64)
                removed = np.empty(0, dtype=np.int64)
            seq = self._log(db, index_id, "upsert" if replace else "insert", len(written))
            first = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'vectors'").fetchone()
            base = int(first[0]) if first else 0
            db.executemany(
                "INSERT INTO vectors (label, index_id, id, namespace, vec, metadata, mutation, crc) VALUES (?,?,?,?,?,?,?,?)",
                [
                    (base + 1 + n, index_id, ids[i], namespaces[i], blobs[i], metadata[i], seq,
                     row_checksum(base + 1 + n, index_id, ids[i], namespaces[i], blobs[i], metadata[i], seq))
                    for n, i in enumerate(written.tolist())
                ],
            )
            labels = np.arange(base + 1, base + 1 + len(written), dtype=np.int64)
            if texts is not None:
                rows = [(int(label), texts[i]) for label, i in zip(labels.tolist(), written.tolist()) if texts[i]]
                if rows:
                    self._ensure_fts(db, index_id)
                    db.executemany(f"INSERT INTO {self._fts(index_id)} (rowid, text) VALUES (?, ?)", rows)
        return seq, removed, written, labels

    def delete_vectors(self, index_id: int, ids: Sequence[str]) -> tuple[int, np.ndarray]:
        """Delete by id in one transaction; returns the mutation id and the removed labels."""
        with self.transaction() as db:
            removed: list[int] = []
            for start in range(0, len(ids), 900):
                chunk = list(ids[start : start + 900])
                marks = ",".join("?" * len(chunk))
                removed += [
                    int(r[0])
                    for r in db.execute(
                        f"DELETE FROM vectors WHERE index_id = ? AND id IN ({marks}) RETURNING label",
                        (index_id, *chunk),
                    )
                ]
            seq = self._log(db, index_id, "delete", len(removed))
            self._delete_texts(db, index_id, removed)
        return seq, np.array(sorted(removed), dtype=np.int64)

    def log_mutation(self, index_id: int, op: str) -> int:
        with self.transaction() as db:
            return self._log(db, index_id, op, 0)

    def _stored(self, row: tuple[Any, ...]) -> StoredVector:
        """A row of ``_ROW`` as a StoredVector, after checking its checksum (migration 3).

        SQLite checks the structure of its pages, not what they hold: a flipped bit inside a vector
        or its metadata would be read back as if it had been written. A row that fails is refused
        loudly, naming the file and the row, rather than served.
        """
        label, vid, namespace, vec, metadata, index_id, mutation, crc = row
        if crc is not None and row_checksum(label, index_id, vid, namespace, vec, metadata, mutation) != crc:
            raise CorruptionError(
                f"{self.path}: vector row {label} (id {vid!r}) fails its checksum; the file is damaged. "
                "Run `likewise verify` and restore a backup.",
                file=str(self.path), label=int(label), id=vid,
            )
        return StoredVector(int(label), vid, namespace, np.frombuffer(vec, dtype=np.float32), metadata)

    def get_vectors(self, index_id: int, ids: Sequence[str]) -> list[StoredVector]:
        """The stored vectors with these ids, in the order asked (missing ids are left out)."""
        found: dict[str, StoredVector] = {}
        with self.reading() as db:
            for start in range(0, len(ids), 900):
                chunk = list(ids[start : start + 900])
                marks = ",".join("?" * len(chunk))
                for row in db.execute(
                    f"SELECT {_ROW} FROM vectors WHERE index_id = ? AND id IN ({marks})",
                    (index_id, *chunk),
                ):
                    found[row[1]] = self._stored(row)
        return [found[v] for v in dict.fromkeys(ids) if v in found]

    def by_labels(self, labels: Sequence[int]) -> dict[int, StoredVector]:
        with self.reading() as db:
            marks = ",".join("?" * len(labels))
            return {
                int(r[0]): self._stored(r)
                for r in db.execute(
                    f"SELECT {_ROW} FROM vectors WHERE label IN ({marks})",
                    [int(x) for x in labels],
                )
            }

    def count(self, index_id: int) -> int:
        with self.reading() as db:
            return int(db.execute("SELECT count(*) FROM vectors WHERE index_id = ?", (index_id,)).fetchone()[0])

    def labels_and_ids(self, index_id: int, upto: int | None = None) -> tuple[np.ndarray, list[str]]:
        """Labels (ascending) and ids of the index's vectors, those with a label ≤ ``upto`` if given."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT label, id FROM vectors WHERE index_id = ? AND label <= ? ORDER BY label",
                (index_id, upto if upto is not None else 2**63 - 1),
            ).fetchall()
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return labels, [r[1] for r in rows]

    def labels_upto(self, index_id: int, upto: int) -> np.ndarray:
        """Labels (ascending) of the index's vectors with a label ≤ ``upto`` (read from an index only)."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT label FROM vectors WHERE index_id = ? AND label <= ? ORDER BY label", (index_id, upto)
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def count_upto(self, index_id: int, upto: int) -> int:
        """How many of the index's vectors have a label ≤ ``upto``."""
        with self.reading() as db:
            row = db.execute("SELECT count(*) FROM vectors WHERE index_id = ? AND label <= ?", (index_id, upto))
            return int(row.fetchone()[0])

    def iter_vectors(
        self, index_id: int, after: int = 0, batch: int = 10000
    ) -> Iterator[tuple[np.ndarray, list[str], np.ndarray]]:
        """(labels, ids, matrix) batches in label order, for labels above ``after``."""
        last = after
        while True:
            with self.reading() as db:
                rows = db.execute(
                    f"SELECT {_ROW} FROM vectors WHERE index_id = ? AND label > ? ORDER BY label LIMIT ?",
                    (index_id, last, batch),
                ).fetchall()
            if not rows:
                return
            for row in rows:  # what goes into the search structure is checked like what is served
                self._stored(row)
            labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            yield labels, [r[1] for r in rows], matrix
            last = int(labels[-1])

    def column(self, index_id: int, key: str, after: int = 0) -> tuple[np.ndarray, list[Any], list[str | None]]:
        """One metadata property of every vector with a label above ``after``: labels, values, JSON types."""
        path = _json_path(key)
        with self.reading() as db:
            rows = db.execute(
                "SELECT label, json_extract(metadata, ?), json_type(metadata, ?) FROM vectors "
                "WHERE index_id = ? AND label > ? ORDER BY label",
                (path, path, index_id, after),
            ).fetchall()
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return labels, [r[1] for r in rows], [r[2] for r in rows]

    def namespaces(self, index_id: int, after: int = 0) -> tuple[np.ndarray, list[str | None]]:
        """Labels and namespaces of every vector with a label above ``after``."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT label, namespace FROM vectors WHERE index_id = ? AND label > ? ORDER BY label",
                (index_id, after),
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [r[1] for r in rows]

    def list_ids(self, index_id: int, after: str | None, limit: int, max_mutation: int) -> list[str]:
        """Ids in id order after ``after``, among vectors written up to mutation ``max_mutation``."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT id FROM vectors WHERE index_id = ? AND id > ? AND mutation <= ? ORDER BY id LIMIT ?",
                (index_id, after or "", max_mutation, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def count_up_to(self, index_id: int, max_mutation: int) -> int:
        with self.reading() as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM vectors WHERE index_id = ? AND mutation <= ?", (index_id, max_mutation)
                ).fetchone()[0]
            )

    # -- metadata indexes -------------------------------------------------------------------------

    def metadata_indexes(self, index_id: int) -> list[tuple[str, str, int]]:
        with self.reading() as db:
            rows = [
                (r[0], r[1], int(r[2]))
                for r in db.execute(
                    "SELECT property, type, mutation FROM metadata_indexes WHERE index_id = ? ORDER BY property",
                    (index_id,),
                )
            ]
        # Earlier versions accepted properties no JSON path can name (see _json_path); building
        # their column failed on every open and made the index unopenable. Leave them out.
        return [r for r in rows if _nameable(r[0])]

    def create_metadata_index(self, index_id: int, prop: str, kind: str) -> int:
        if not _nameable(prop):  # before anything is written: see metadata_indexes()
            raise InvalidArgumentError(
                f"property name {prop!r} cannot be indexed: it contains '\"', '\\' or a control character",
                property=prop,
            )
        with self.transaction() as db:
            seq = self._log(db, index_id, "create_metadata_index", 0)
            db.execute(
                "INSERT INTO metadata_indexes (index_id, property, type, mutation) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (index_id, property) DO UPDATE SET type = excluded.type",
                (index_id, prop, kind, seq),
            )
        return seq

    def delete_metadata_index(self, index_id: int, prop: str) -> int | None:
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM metadata_indexes WHERE index_id = ? AND property = ?", (index_id, prop)
            )
            if cur.rowcount == 0:
                return None
            return self._log(db, index_id, "delete_metadata_index", 0)

    # -- texts (keyword search) -------------------------------------------------------------------

    @staticmethod
    def _fts(index_id: int) -> str:
        return f"text_{int(index_id)}"

    def _has_fts(self, db: sqlite3.Connection, index_id: int) -> bool:
        return db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self._fts(index_id),)
        ).fetchone() is not None

    def _ensure_fts(self, db: sqlite3.Connection, index_id: int) -> None:
        db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {self._fts(index_id)} USING fts5(text, tokenize='porter unicode61')"
        )

    def _delete_texts(self, db: sqlite3.Connection, index_id: int, labels: Sequence[int] | np.ndarray) -> None:
        if len(labels) and self._has_fts(db, index_id):
            db.executemany(f"DELETE FROM {self._fts(index_id)} WHERE rowid = ?", [(int(x),) for x in labels])

    def keyword_matches(self, index_id: int, match: str) -> tuple[np.ndarray, np.ndarray]:
        """Labels and BM25 scores (higher is better) of every text that matches an FTS5 query.

        One pass gives both the keyword ranking and the score of any other label (hybrid search
        needs BM25 for the vector candidates too). FTS5 scores every match even for ``ORDER BY rank
        LIMIT``, and scoring a list of rowids (``rowid IN (…)``) is far slower, so this is cheapest.
        """
        with self.reading() as db:
            if not self._has_fts(db, index_id):
                return np.empty(0, np.int64), np.empty(0, np.float64)
            table = self._fts(index_id)
            rows = db.execute(f"SELECT rowid, bm25({table}) FROM {table} WHERE {table} MATCH ?", (match,)).fetchall()
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        scores = np.fromiter((-r[1] for r in rows), dtype=np.float64, count=len(rows))
        return labels, scores

    def texts(self, index_id: int, labels: Sequence[int]) -> dict[int, str]:
        """The stored text of each label that has one."""
        with self.reading() as db:
            if not labels or not self._has_fts(db, index_id):
                return {}
            marks = ",".join("?" * len(labels))
            return {
                int(r[0]): r[1]
                for r in db.execute(
                    f"SELECT rowid, text FROM {self._fts(index_id)} WHERE rowid IN ({marks})", [int(x) for x in labels]
                )
            }

    def snippets(self, index_id: int, labels: Sequence[int], match: str, tokens: int = 24) -> dict[int, str]:
        """Highlighted snippets (matches in ``[…]``) of the labels whose text matches ``match``."""
        with self.reading() as db:
            if not labels or not match or not self._has_fts(db, index_id):
                return {}
            table = self._fts(index_id)
            marks = ",".join("?" * len(labels))
            return {
                int(r[0]): r[1]
                for r in db.execute(
                    f"SELECT rowid, snippet({table}, 0, '[', ']', '…', ?) FROM {table} "
                    f"WHERE {table} MATCH ? AND rowid IN ({marks})",
                    (tokens, match, *[int(x) for x in labels]),
                )
            }

    # -- sources (document sync) ------------------------------------------------------------------

    def sources(self, index_id: int) -> dict[str, tuple[str, int]]:
        """Synced files of an index: path → (content hash, chunk count)."""
        with self.reading() as db:
            return {
                r[0]: (r[1], int(r[2]))
                for r in db.execute("SELECT path, hash, chunks FROM sources WHERE index_id = ?", (index_id,))
            }

    def set_source(self, index_id: int, path: str, digest: str, chunks: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sources (index_id, path, hash, chunks, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (index_id, path) DO UPDATE SET hash = excluded.hash, chunks = excluded.chunks, "
                "updated_at = excluded.updated_at",
                (index_id, path, digest, chunks, utcnow()),
            )

    def delete_source(self, index_id: int, path: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sources WHERE index_id = ? AND path = ?", (index_id, path))

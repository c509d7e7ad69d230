"""Keeping a data directory healthy: verify it, back it up, restore it, export and import indexes.

* :func:`verify` checks a directory without changing it (it may be open in another process):
  the write-ahead log's frame checksums, SQLite's integrity check, every stored vector's size,
  metadata and row checksum, the keyword-text tables, and each ANN snapshot against the store
  (checksums, then every snapshot vector against its row).
* :func:`wal_problem` finds a damaged write-ahead log *before* SQLite reads it: SQLite stops
  replaying the log at the first frame that fails its checksum and silently drops every committed
  transaction after it. The store refuses to open such a directory rather than serve that older
  state as if nothing happened.
* :func:`backup` copies the store with SQLite's online backup API — a consistent copy even while a
  writer keeps writing — plus the snapshot files; :func:`restore` puts a backup in place.
* :func:`export_index` / :func:`import_index` move an index through Vectorize NDJSON or Parquet;
  float32 values survive the round trip bit for bit.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidArgumentError, InvalidInputError, MissingDependencyError, StorageError
from .store import MIGRATIONS, row_checksum
from .wal import wal_problem

if TYPE_CHECKING:
    from .index import Index

__all__ = [
    "Problem",
    "VerifyReport",
    "backup",
    "export_index",
    "import_index",
    "restore",
    "verify",
    "wal_problem",
]

DB_FILE = "likewise.db"


@dataclass(frozen=True)
class Problem:
    """Something wrong (``error``) or worth knowing (``warning``: it repairs itself on open)."""

    severity: str
    file: str
    message: str


@dataclass
class VerifyReport:
    indexes: int = 0
    vectors: int = 0
    checked_rows: int = 0  # rows whose checksum was recomputed (rows from before migration 3 have none)
    checked_snapshot_vectors: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def _connect_ro(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StorageError(f"{path} does not exist: not a likewise data directory")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def verify(directory: str | Path) -> VerifyReport:
    """Check a data directory; read-only. See the module docstring for what is checked."""
    from .engines.hnsw import load_snapshot

    root = Path(directory)
    report = VerifyReport()
    db_path = root / DB_FILE
    damage = wal_problem(db_path)
    if damage is not None and wal_problem(db_path) is not None:  # twice: a live writer may reset the log
        report.problems.append(Problem("error", f"{db_path}-wal", damage))
    try:
        db = _connect_ro(db_path)
        rows = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        report.problems.append(Problem("error", str(db_path), f"SQLite cannot read the store: {exc}"))
        return report
    if rows != ["ok"]:
        for r in rows[:20]:
            report.problems.append(Problem("error", str(db_path), f"integrity: {r}"))
        return report
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version != len(MIGRATIONS):
        severity = "error" if version > len(MIGRATIONS) else "warning"
        report.problems.append(Problem(severity, str(db_path), f"schema version {version}, this likewise knows {len(MIGRATIONS)}"))
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"indexes", "vectors"} <= tables:
        report.problems.append(Problem("error", str(db_path), "the store holds no likewise tables (empty, or lost its log)"))
        db.close()
        return report
    sequence: dict[str, int] = (
        {str(r[0]): int(r[1]) for r in db.execute("SELECT name, seq FROM sqlite_sequence")}
        if "sqlite_sequence" in tables else {}
    )
    for index_id, name, dims, metric in db.execute("SELECT id, name, dimensions, metric FROM indexes").fetchall():
        report.indexes += 1
        count = db.execute("SELECT count(*) FROM vectors WHERE index_id = ?", (index_id,)).fetchone()[0]
        report.vectors += count
        bad_size = db.execute(
            "SELECT count(*) FROM vectors WHERE index_id = ? AND length(vec) != ?", (index_id, dims * 4)
        ).fetchone()[0]
        if bad_size:
            report.problems.append(Problem("error", str(db_path), f"index {name}: {bad_size} vectors of the wrong size"))
        bad_meta = db.execute(
            "SELECT count(*) FROM vectors WHERE index_id = ? AND metadata IS NOT NULL AND NOT json_valid(metadata)",
            (index_id,),
        ).fetchone()[0]
        if bad_meta:
            report.problems.append(Problem("error", str(db_path), f"index {name}: {bad_meta} rows with invalid metadata JSON"))
        if version >= 3:
            checked, failed = _check_row_checksums(db, index_id)
            report.checked_rows += checked
            if failed:
                report.problems.append(Problem(
                    "error", str(db_path),
                    f"index {name}: {len(failed)} rows fail their checksum (labels {', '.join(map(str, failed[:10]))}"
                    f"{', …' if len(failed) > 10 else ''}): their id, values or metadata changed on disk",
                ))
        fts = f"text_{index_id}"
        if fts in tables:
            orphans = db.execute(
                f"SELECT count(*) FROM {fts} WHERE rowid NOT IN (SELECT label FROM vectors WHERE index_id = ?)", (index_id,)
            ).fetchone()[0]
            if orphans:
                report.problems.append(Problem("error", str(db_path), f"index {name}: {orphans} texts without a vector"))
        snapdir = root / "engines" / str(index_id)
        if not (snapdir / "state.json").exists():
            continue
        snap, reason = load_snapshot(snapdir, dims, metric)
        if snap is None:
            report.problems.append(Problem("warning", str(snapdir), f"ANN snapshot unusable ({reason}); it is rebuilt from the store on open"))
            continue
        if len(snap.labels) and int(snap.labels[-1]) > sequence.get("vectors", 0):
            # labels are never reused and a snapshot only holds committed ones: the store has lost
            # writes that were committed (a truncated or damaged log, a file restored from elsewhere)
            report.problems.append(Problem(
                "error", str(db_path),
                f"index {name}: the ANN snapshot holds label {int(snap.labels[-1])} but the store never got past "
                f"label {sequence.get('vectors', 0)}: committed writes are missing from the store",
            ))
        report.checked_snapshot_vectors += _compare_snapshot(db, index_id, name, metric, snap, snapdir, report)
    known = {str(r[0]) for r in db.execute("SELECT id FROM indexes")}
    engines = root / "engines"
    for snapdir in sorted(engines.iterdir()) if engines.is_dir() else []:
        if snapdir.name in known or not (snapdir / "state.json").exists():
            continue
        if snapdir.name.isdigit() and int(snapdir.name) > sequence.get("indexes", 0):
            report.problems.append(Problem(
                "error", str(db_path),
                f"{snapdir} is the snapshot of index id {snapdir.name}, which the store never reached: "
                "committed writes are missing from the store",
            ))
        else:
            report.problems.append(Problem("warning", str(snapdir), "snapshot of a deleted index; safe to remove"))
    db.close()
    return report


def _check_row_checksums(db: sqlite3.Connection, index_id: int) -> tuple[int, list[int]]:
    """Recompute every row's checksum; returns how many were checked and the labels that fail."""
    checked, last = 0, -(2**63)
    failed: list[int] = []
    while True:
        rows = db.execute(
            "SELECT label, index_id, id, namespace, vec, metadata, mutation, crc FROM vectors "
            "WHERE index_id = ? AND label > ? ORDER BY label LIMIT 10000",
            (index_id, last),
        ).fetchall()
        if not rows:
            return checked, failed
        for label, iid, vid, ns, vec, meta, mutation, crc in rows:
            if crc is None:
                continue
            checked += 1
            try:
                ok = isinstance(vec, bytes) and row_checksum(label, iid, vid, ns, vec, meta, mutation) == crc
            except (TypeError, ValueError):  # a damaged row may not even have the right types
                ok = False
            if not ok:
                failed.append(int(label))
        last = int(rows[-1][0])


def _compare_snapshot(db: sqlite3.Connection, index_id: int, name: str, metric: str, snap: Any, snapdir: Path,
                      report: VerifyReport) -> int:
    """Every snapshot vector whose row still exists must equal that row (normalised for cosine)."""
    vectors = snap.graph.vectors()
    checked = mismatched = 0
    for start in range(0, len(snap.labels), 5000):
        labels = snap.labels[start : start + 5000]
        marks = ",".join("?" * len(labels))
        rows = db.execute(
            f"SELECT label, vec FROM vectors WHERE index_id = ? AND label IN ({marks})", (index_id, *labels.tolist())
        ).fetchall()
        if not rows:
            continue
        found = np.array([r[0] for r in rows], dtype=np.int64)
        stored: np.ndarray = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        if metric == "cosine":
            norms = np.linalg.norm(stored, axis=1, keepdims=True)
            stored = stored / np.where(norms == 0, 1, norms)
        pos = start + np.searchsorted(labels, found)
        mismatched += int((~np.isclose(vectors[pos], stored, atol=1e-5).all(axis=1)).sum())
        checked += len(rows)
    if mismatched:
        report.problems.append(
            Problem("error", str(snapdir), f"index {name}: {mismatched} snapshot vectors disagree with the store")
        )
    return checked


def backup(directory: str | Path, out: str | Path) -> Path:
    """Copy a data directory to ``out`` (which must not exist), consistently, even while it is written."""
    root, target = Path(directory), Path(out)
    if target.exists() and any(target.iterdir()):
        raise InvalidArgumentError(f"backup target {target} exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    # Snapshot files first: a snapshot older than the store copy is always valid (the log tail is
    # replayed on open); one newer would only hold labels the copy lacks, which are marked dead.
    engines = root / "engines"
    if engines.exists():
        shutil.copytree(engines, target / "engines", ignore=shutil.ignore_patterns("*.tmp"))
    src = _connect_ro(root / DB_FILE)
    dst = sqlite3.connect(str(target / DB_FILE))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def restore(backup_dir: str | Path, directory: str | Path) -> Path:
    """Put a backup in place as a data directory (which must not exist or be empty)."""
    source, target = Path(backup_dir), Path(directory)
    if not (source / DB_FILE).exists():
        raise InvalidArgumentError(f"{source} is not a likewise backup (no {DB_FILE})")
    if target.exists() and any(target.iterdir()):
        raise InvalidArgumentError(f"restore target {target} exists and is not empty")
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


# -- export / import ------------------------------------------------------------------------------


def _all_ids(idx: Index) -> Iterator[list[str]]:
    cursor = None
    while True:
        page = idx.list_vectors(count=1000, cursor=cursor)
        yield page.vectors
        if not page.next_cursor:
            return
        cursor = page.next_cursor


def export_index(idx: Index, out: str | Path, fmt: str = "ndjson") -> int:
    """Write every vector of ``idx`` to ``out`` as Vectorize NDJSON or Parquet; returns the count."""
    if fmt not in ("ndjson", "parquet"):
        raise InvalidArgumentError(f"format must be ndjson or parquet; got {fmt!r}")
    count = 0
    if fmt == "ndjson":
        with open(out, "w", encoding="utf-8") as fh:
            for ids in _all_ids(idx):
                for v in idx.get_by_ids(ids):
                    # repr of a float32 widened to float64 reads back to the same float32 bits
                    fh.write(json.dumps(v.to_dict(), ensure_ascii=False) + "\n")
                    count += 1
        return count
    pa, pq = _arrow()
    writer = None
    try:
        for ids in _all_ids(idx):
            vectors = idx.get_by_ids(ids)
            texts = idx.texts(ids)
            table = pa.table(
                {
                    "id": [v.id for v in vectors],
                    "values": pa.array([np.asarray(v.values, np.float32) for v in vectors], type=pa.list_(pa.float32())),
                    "metadata": [json.dumps(v.metadata) if v.metadata is not None else None for v in vectors],
                    "namespace": [v.namespace for v in vectors],
                    "text": [texts.get(v.id) for v in vectors],
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(str(out), table.schema)
            writer.write_table(table)
            count += len(vectors)
    finally:
        if writer is not None:
            writer.close()
    return count


def import_index(idx: Index, path: str | Path, batch_size: int = 1000) -> int:
    """Upsert the vectors of an NDJSON or Parquet export into ``idx``; returns the count."""
    src = Path(path)
    count = 0
    if src.suffix == ".parquet":
        _, pq = _arrow()
        for record_batch in pq.ParquetFile(str(src)).iter_batches(batch_size=batch_size):
            cols = record_batch.to_pydict()
            matrix = np.array(cols["values"], dtype=np.float32)
            metas = [json.loads(m) if m is not None else None for m in cols["metadata"]]
            namespaces = set(cols["namespace"])
            for ns in namespaces:
                sel = [i for i, n in enumerate(cols["namespace"]) if n == ns]
                idx.upsert_arrays([cols["id"][i] for i in sel], matrix[sel], [metas[i] for i in sel], ns,
                                  texts=[cols["text"][i] for i in sel])
            count += len(cols["id"])
        return count
    batch: list[dict[str, Any]] = []
    with open(src, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                batch.append(json.loads(line))
            except ValueError as exc:
                raise InvalidInputError(f"{src}:{number}: not JSON: {exc}") from exc
            if len(batch) >= batch_size:
                idx.upsert(batch)
                count += len(batch)
                batch = []
    if batch:
        idx.upsert(batch)
        count += len(batch)
    return count


def _arrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("Parquet needs pyarrow: pip install 'likewise[parquet]'") from exc
    return pa, pq

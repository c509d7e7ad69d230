"""``likewise verify`` and the store's own checks find what SQLite alone would not (issue #7 point 2).

* a flipped byte inside a stored vector: SQLite's integrity check passes, the row checksum
  (migration 3) does not, and verify names the rows;
* a damaged write-ahead log: SQLite would stop replaying at the damaged frame and silently drop
  the committed transactions after it; the store refuses to open, naming the -wal file, and
  verify reports it; a torn *final* frame (an unacknowledged write) is no problem;
* a snapshot newer than the store: committed writes are missing, and verify says so;
* rows written before migration 3 have no checksum and are counted as unchecked, not as errors.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import likewise
from likewise.cli import main
from likewise.errors import CorruptionError
from likewise.maintenance import verify, wal_problem

PARAMS = likewise.EngineParams(ann_threshold=100, chunk=64, background=False)


def _filled(path: Path, n: int = 300) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.create_index("v", dimensions=8, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(n)], x, metadata=[{"i": i} for i in range(n)])
        idx.optimize()
    return x


def test_row_checksum_finds_a_flipped_vector_byte(tmp_path: Path) -> None:
    x = _filled(tmp_path / "d")
    db = tmp_path / "d" / "likewise.db"
    data = bytearray(db.read_bytes())
    at = data.find(x[123].tobytes())
    assert at > 0
    data[at + 5] ^= 0x01  # inside v123's vector: structurally still a perfectly good page
    db.write_bytes(bytes(data))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # SQLite sees nothing wrong
    con.close()
    report = verify(tmp_path / "d")
    assert not report.ok
    problem = next(p for p in report.problems if "checksum" in p.message)
    assert problem.file.endswith("likewise.db") and "1 rows" in problem.message
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "d")])
    assert result.exit_code == 1 and "checksum" in result.stdout


KILLED_WRITER = textwrap.dedent(
    """
    import sys, likewise, time
    db = likewise.open(sys.argv[1])
    idx = db.index("v")
    for i in range(40):
        idx.upsert([likewise.Vector(f"w{i}", [float(i)] * 8)])
    print("DONE", flush=True)
    time.sleep(60)
    """
)


def _killed_with_wal(path: Path) -> None:
    _filled(path, 50)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "DONE"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (path / "likewise.db-wal").stat().st_size > 40 * 4096


def test_damaged_wal_is_refused_not_silently_dropped(tmp_path: Path) -> None:
    path = tmp_path / "d"
    _killed_with_wal(path)
    assert wal_problem(path / "likewise.db") is None  # a crash alone is no damage
    spare = tmp_path / "spare"
    shutil.copytree(path, spare)
    wal = path / "likewise.db-wal"
    data = bytearray(wal.read_bytes())
    page = int.from_bytes(data[8:12], "big")
    data[32 + (24 + page) * 3 + 24 + 100] ^= 0x04  # a page of the 4th frame; committed frames follow
    wal.write_bytes(bytes(data))
    assert "fails its checksum" in (wal_problem(path / "likewise.db") or "")
    report = verify(path)
    assert not report.ok and any(p.file.endswith("likewise.db-wal") for p in report.problems)
    with pytest.raises(CorruptionError) as info:
        likewise.open(path)
    assert "likewise.db-wal" in info.value.message and info.value.details["file"].endswith("-wal")
    # the message's way out works: without the log the store opens, at its older state
    wal.rename(tmp_path / "aside.wal")
    with likewise.open(path) as db:
        assert len(db.index("v")) == 50
    # and the undamaged copy has every acknowledged write
    with likewise.open(spare) as db:
        assert len(db.index("v")) == 90


def test_torn_final_frame_is_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "d"
    _killed_with_wal(path)
    wal = path / "likewise.db-wal"
    with open(wal, "r+b") as fh:
        fh.truncate(wal.stat().st_size - 100)  # the last write torn: it was never acknowledged
    assert wal_problem(path / "likewise.db") is None
    with likewise.open(path) as db:
        assert len(db.index("v")) == 89


def test_snapshot_newer_than_store_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "d"
    _filled(path, 300)
    old = tmp_path / "old.db"
    shutil.copy(path / "likewise.db", old)  # the store as it was (its snapshot is rewritten below)
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.index("v")
        idx.upsert_arrays([f"n{i}" for i in range(100)], np.ones((100, 8), np.float32) * 3)
        idx.optimize()
    shutil.copy(old, path / "likewise.db")  # a store that lost its last writes, a newer snapshot
    report = verify(path)
    assert any("committed writes are missing" in p.message for p in report.problems), report.problems


def test_rows_without_checksums_are_unchecked_not_errors(tmp_path: Path) -> None:
    _filled(tmp_path / "d", 20)
    con = sqlite3.connect(tmp_path / "d" / "likewise.db")
    con.execute("UPDATE vectors SET crc = NULL WHERE label <= 5")  # as written before migration 3
    con.commit()
    con.close()
    report = verify(tmp_path / "d")
    assert report.ok and report.checked_rows == 15

"""verify, backup/restore under writes, and NDJSON/Parquet round trips that keep every bit."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import likewise
from likewise.cli import main
from likewise.maintenance import backup, export_index, import_index, restore, verify

PARAMS = likewise.EngineParams(ann_threshold=200, chunk=128, background=False)


def filled(path: Path, n: int = 1500) -> np.ndarray:
    x = np.random.default_rng(3).standard_normal((n, 16)).astype(np.float32)
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.create_index("tv", dimensions=16)
        idx.upsert_arrays([f"v{i}" for i in range(n)], x, metadata=[{"i": i, "s": f"n{i % 7}"} for i in range(n)],
                          texts=[f"text number {i}" for i in range(n)])
        idx.optimize()
        idx.delete_by_ids(["v0", "v1"])
    return x


def test_verify_good_directory(tmp_path: Path) -> None:
    filled(tmp_path / "d")
    report = verify(tmp_path / "d")
    assert report.ok and report.problems == []
    assert (report.indexes, report.vectors) == (1, 1498)
    assert report.checked_snapshot_vectors == 1498
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "d"), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True


def test_verify_finds_a_snapshot_that_disagrees(tmp_path: Path) -> None:
    filled(tmp_path / "d")
    graph = next((tmp_path / "d" / "engines").glob("*/graph-*.faiss"))
    data = bytearray(graph.read_bytes())
    data[len(data) // 3] ^= 0x40
    graph.write_bytes(bytes(data))
    report = verify(tmp_path / "d")
    assert any("snapshot" in p.message for p in report.problems)
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "d")])
    assert "snapshot" in result.stdout


def test_verify_reports_a_damaged_store(tmp_path: Path) -> None:
    filled(tmp_path / "d")
    db = tmp_path / "d" / "likewise.db"
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 2)
    report = verify(tmp_path / "d")
    assert not report.ok and "likewise.db" in report.problems[0].file
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "d")])
    assert result.exit_code == 1


def test_backup_is_consistent_while_writing(tmp_path: Path) -> None:
    src = tmp_path / "d"
    db = likewise.open(src, engine=PARAMS)
    idx = db.create_index("live", dimensions=4)
    acked: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            idx.upsert([likewise.Vector(f"w{i}", [1, i, 0, 1], {"i": i})])
            acked.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    while len(acked) < 50:
        pass
    seen_before = len(acked)
    backup(src, tmp_path / "bk")
    stop.set()
    t.join()
    db.close()
    restore(tmp_path / "bk", tmp_path / "restored")
    with likewise.open(tmp_path / "restored") as copy:
        got = copy.index("live")
        n = got.info().vector_count
        assert seen_before <= n <= len(acked)
        ids = [f"w{i}" for i in range(n)]
        assert [v.id for v in got.get_by_ids(ids)] == ids  # a prefix of the history, nothing missing
    assert verify(tmp_path / "restored").ok
    with pytest.raises(likewise.errors.InvalidArgumentError):
        restore(tmp_path / "bk", tmp_path / "restored")


@pytest.mark.parametrize("fmt", ["ndjson", "parquet"])
def test_export_import_round_trip(tmp_path: Path, fmt: str) -> None:
    x = filled(tmp_path / "d")
    out = tmp_path / f"tv.{fmt}"
    with likewise.open(tmp_path / "d", engine=PARAMS) as db:
        idx = db.index("tv")
        assert export_index(idx, out, fmt) == 1498
        q = np.random.default_rng(9).standard_normal((20, 16)).astype(np.float32)
        before = [idx.query(v, top_k=5, filter={"s": "n3"}, return_metadata="all").to_dict() for v in q]
        copy = db.create_index("copy", dimensions=16)
        assert import_index(copy, out) == 1498
        originals = {v.id: v for v in idx.get_by_ids([f"v{i}" for i in range(1500)])}
        for v in copy.get_by_ids([f"v{i}" for i in range(1500)]):
            a, b = np.asarray(v.values, np.float32), np.asarray(originals[v.id].values, np.float32)
            assert a.tobytes() == b.tobytes() and v.metadata == originals[v.id].metadata
        assert np.asarray(originals["v5"].values, np.float32).tobytes() == x[5].tobytes()
        copy.optimize()
        after = [copy.query(v, top_k=5, filter={"s": "n3"}, return_metadata="all").to_dict() for v in q]
        # same matches and metadata; scores agree to float32 rounding (BLAS sums in blocks that
        # depend on a row's place in memory, which differs between the two indexes)
        for a, b in zip(after, before):
            assert [(m["id"], m["metadata"]) for m in a["matches"]] == [(m["id"], m["metadata"]) for m in b["matches"]]
            assert [m["score"] for m in a["matches"]] == pytest.approx([m["score"] for m in b["matches"]], abs=1e-6)
        if fmt == "parquet":
            assert copy.texts(["v7"]) == {"v7": "text number 7"}

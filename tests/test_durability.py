"""Durability: acknowledged writes survive SIGKILL; snapshots are reused, checked and rebuilt; one writer.

The crash test runs a writer in a child process that prints a line after every acknowledged
mutation, kills it at a random moment, reopens the directory and checks every acknowledged write.
The storm version (hundreds of kills, the HTTP server too) belongs to the reliability suite.
"""

from __future__ import annotations

import shutil
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import likewise
from likewise import errors as E
from sigkill import lines_until_killed

WRITER = textwrap.dedent(
    """
    import sys, random, numpy as np, likewise
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    db = likewise.open(path, engine=likewise.EngineParams(ann_threshold=300, chunk=128, snapshot_every=500))
    try:
        idx = db.index("crash")
    except likewise.errors.IndexNotFoundError:
        idx = db.create_index("crash", dimensions=16, metric="euclidean")
    print("READY", flush=True)
    step = seed * 1_000_000  # steps grow across restarts, so "newer" is comparable between rounds
    while True:
        step += 1
        if rng.random() < 0.15:
            ids = [f"d{seed}-{step}-{i}" for i in range(rng.randint(1, 5))]
            idx.upsert([likewise.Vector(i, [float(step)] * 16) for i in ids])
            print("ACK", "put", *ids, step, flush=True)
            idx.delete_by_ids(ids)
            print("ACK", "del", *ids, flush=True)
            continue
        ids = [f"k{rng.randint(0, 400)}" for _ in range(rng.randint(1, 40))]
        ids = list(dict.fromkeys(ids))
        vecs = [likewise.Vector(i, [float(step)] + [float(int(i[1:]))] * 15, {"step": step}) for i in ids]
        idx.upsert(vecs)
        print("ACK", "put", *ids, step, flush=True)
    """
)


def _run_and_kill(path: Path, seed: int, delay: float) -> list[list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(seed)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() == "READY", ready
    lines = lines_until_killed(proc, delay)
    return [line[1:] for line in lines if line and line[0] == "ACK"]


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "data"
    rng = random.Random(7)
    last: dict[str, int] = {}  # id -> last acknowledged step
    deleted: set[str] = set()
    total_acks = 0
    for round_ in range(6):
        acks = _run_and_kill(path, seed=round_, delay=rng.uniform(0.8, 2.5))
        total_acks += len(acks)
        for ack in acks:
            if ack[0] == "put":
                *ids, step = ack[1:]
                for i in ids:
                    last[i] = int(step)
                    deleted.discard(i)
            else:
                deleted.update(ack[1:])
        with likewise.open(path) as db:
            idx = db.index("crash")
            stored = {v.id: v for v in idx.get_by_ids(sorted(last))}
            for vid, step in last.items():
                # a d-id's delete is sent right after its put: unacknowledged, it may have happened
                if vid in deleted or vid.startswith("d"):
                    continue
                assert vid in stored, f"acknowledged {vid} lost after kill {round_}"
                got = int(stored[vid].values[0])
                assert got >= step, f"{vid}: acknowledged step {step}, found older {got}"
                if vid.startswith("k"):
                    assert stored[vid].metadata == {"step": got}
            assert not idx.get_by_ids(sorted(deleted)), "acknowledged deletes came back"
            listed = []
            page = idx.list_vectors(count=1000)
            listed += page.vectors
            while page.next_cursor:
                page = idx.list_vectors(count=1000, cursor=page.next_cursor)
                listed += page.vectors
            assert all(v.startswith("k") or v.startswith("d") for v in listed)
            assert len(listed) == idx.info().vector_count
            # queries find acknowledged vectors (exact euclidean: distance 0 at rank 1)
            for vid in rng.sample(sorted(set(stored) - deleted), min(10, len(stored))):
                res = idx.query(stored[vid].values, top_k=1)
                assert res.matches[0].score == pytest.approx(0.0, abs=1e-4)
    assert total_acks > 50


def test_second_writer_gets_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import likewise, time; db = likewise.open({str(path)!r}); print('OK', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "OK"
        started = time.monotonic()
        with pytest.raises(E.DataDirLockedError) as info:
            likewise.open(path)
        assert time.monotonic() - started < 1.0
        assert str(holder.pid) in info.value.message
        assert info.value.details["pid"] == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    likewise.open(path).close()  # the kernel dropped the lock with the process


def test_same_process_cannot_open_twice(tmp_path: Path) -> None:
    with likewise.open(tmp_path / "d"):
        with pytest.raises(E.DataDirLockedError):
            likewise.open(tmp_path / "d")


PARAMS = likewise.EngineParams(ann_threshold=500, chunk=256, background=False)


def _fill(path: Path, n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 24)).astype(np.float32)
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.create_index("snap", dimensions=24)
        for s in range(0, n, 500):
            idx.upsert_arrays([f"v{i}" for i in range(s, min(n, s + 500))], x[s : s + 500])
        idx.optimize()
        idx.upsert_arrays(["tail-1", "tail-2"], x[:2] * 2)  # after the snapshot: replayed from SQLite
        idx.delete_by_ids(["v3", "v4"])
    return x


def test_reopen_uses_snapshot_and_replays_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "d"
    x = _fill(path, 3000)
    caplog.set_level("INFO", logger="likewise")
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.index("snap")
        assert "snapshot of 3002 vectors" in caplog.text or "snapshot of 3000 vectors" in caplog.text
        assert idx.info().vector_count == 3000
        assert idx._engine.indexed >= 3000  # the graph was loaded, not rebuilt
        assert idx.query(x[10], top_k=1).ids == ["v10"]
        assert "v3" not in idx.query(x[3], top_k=5).ids
        assert idx.get_by_ids(["tail-1"])[0].values == pytest.approx((x[0] * 2).tolist())


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "state"])
def test_damaged_snapshot_is_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "d"
    x = _fill(path, 2000)
    snapdir = next((path / "engines").iterdir())
    graph = next(snapdir.glob("graph-*.faiss"))
    if damage == "truncate":
        with open(graph, "r+b") as fh:
            fh.truncate(graph.stat().st_size // 2)
    elif damage == "flip":
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0xFF
        graph.write_bytes(bytes(data))
    elif damage == "delete":
        graph.unlink()
    else:
        (snapdir / "state.json").write_text("{not json")
    caplog.set_level("INFO", logger="likewise")
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.index("snap")
        assert "rebuilt from SQLite" in caplog.text
        assert idx.info().vector_count == 2000
        idx.optimize()
        for i in (0, 500, 1999):
            assert idx.query(x[i], top_k=1).ids == [f"v{i}"]


def _meta(i: int) -> dict[str, Any]:
    return {"g": f"g{i % 5}", "n": i % 7, "b": i % 2 == 0}


def _filtered_answers(path: Path, x: np.ndarray) -> list[list[tuple[str, float]]]:
    """Answers that use exact search (small candidate sets), so a rebuilt graph must agree exactly."""
    cases: list[dict[str, Any]] = [
        {"filter": {"g": "g1"}}, {"filter": {"n": {"$gte": 4}}}, {"filter": {"b": True, "g": {"$in": ["g2", "g3"]}}},
        {"namespace": "a"}, {"namespace": "b", "filter": {"n": {"$lt": 2}}},
    ]
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.index("snap")
        return [
            [(m.id, round(m.score, 5)) for m in idx.query(x[q], top_k=20, **case).matches]
            for case in cases for q in (3, 900, 2500)
        ]


def test_snapshot_restores_ids_columns_and_namespaces(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A snapshot carries ids, liveness and metadata columns; open + replay equals a rebuild from SQLite."""
    path = tmp_path / "d"
    x = np.random.default_rng(1).standard_normal((2600, 24)).astype(np.float32)
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.create_index("snap", dimensions=24)
        idx.create_metadata_index("g", "string")
        for s in range(0, 2000, 500):
            idx.upsert_arrays(
                [f"v{i}" for i in range(s, s + 500)], x[s : s + 500],
                metadata=[_meta(i) for i in range(s, s + 500)], namespace="a" if s < 1000 else "b",
            )
        idx.query(x[0], top_k=3, filter={"n": 3}, namespace="a")  # an undeclared column and namespaces
        idx.optimize()  # the snapshot
        idx.delete_by_ids([f"v{i}" for i in range(40)])  # covered by the snapshot, deleted after it
        idx.upsert_arrays([f"v{i}" for i in range(40, 60)], x[2000:2020], metadata=[_meta(i + 1) for i in range(20)])
        idx.upsert_arrays(  # only in the log
            [f"w{i}" for i in range(580)], x[2020:], metadata=[_meta(i) for i in range(580)], namespace="b"
        )
    caplog.set_level("INFO", logger="likewise")
    restored = _filtered_answers(path, x)
    assert "deletions since read from SQLite; 2 metadata columns restored" in caplog.text, caplog.text
    assert all(len(a) == 20 for a in restored)
    shutil.rmtree(path / "engines")
    assert _filtered_answers(path, x) == restored


def test_snapshot_without_deletions_opens_from_a_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "d"
    x = np.random.default_rng(2).standard_normal((1200, 24)).astype(np.float32)
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.create_index("snap", dimensions=24)
        idx.upsert_arrays([f"v{i}" for i in range(1200)], x, metadata=[_meta(i) for i in range(1200)])
        idx.optimize()
    caplog.set_level("INFO", logger="likewise")
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.index("snap")
        assert "no deletions since" in caplog.text
        assert idx.query(x[77], top_k=1).ids == ["v77"]
        assert idx.query(x[77], top_k=1, filter={"g": "g2"}).matches[0].metadata is None
        assert idx.get_by_ids(["v1199"])[0].metadata == _meta(1199)


def test_a_damaged_row_is_refused_not_served(tmp_path: Path) -> None:
    """A vector row whose bytes changed under SQLite's feet fails its checksum when read."""
    import sqlite3

    path = tmp_path / "d"
    x = np.random.default_rng(5).standard_normal((600, 4)).astype(np.float32)
    with likewise.open(path, engine=PARAMS) as db:
        idx = db.create_index("rows", dimensions=4, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(600)], x, metadata=[{"k": i} for i in range(600)])
        idx.optimize()  # a snapshot covers every row: opening reads none of them
    raw = sqlite3.connect(path / "likewise.db")
    vec = bytearray(raw.execute("SELECT vec FROM vectors WHERE id = 'v1'").fetchone()[0])
    vec[5] ^= 0x10  # one bit of one float
    raw.execute("UPDATE vectors SET vec = ? WHERE id = 'v1'", (bytes(vec),))
    raw.commit()
    raw.close()
    db = likewise.open(path, engine=PARAMS)
    idx = db.index("rows")
    assert idx.get_by_ids(["v2"])[0].metadata == {"k": 2}
    with pytest.raises(E.CorruptionError, match="fails its checksum"):
        idx.get_by_ids(["v1"])
    with pytest.raises(E.CorruptionError):
        idx.query(x[1], top_k=1, return_metadata="all")
    db.close()
    shutil.rmtree(path / "engines")  # a rebuild from SQLite refuses the row too, naming the file
    with pytest.raises(E.CorruptionError) as info:
        likewise.open(path, engine=PARAMS).index("rows")
    assert "likewise.db" in info.value.message and "'v1'" in info.value.message

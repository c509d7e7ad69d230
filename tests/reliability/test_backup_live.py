"""Backup while a real server keeps writing (issue #7 point 8), then restore, verify and round trips.

A ``likewise serve`` process takes a stream of acknowledged upserts and deletes over HTTP while
``likewise backup DIR OUT`` runs beside it (a separate process, as an operator would run it). The
backup is restored with ``likewise restore`` and checked with ``likewise verify``; then:

* it is a consistent cut: every mutation acknowledged before the backup began is in it with its
  acknowledged value, nothing in it was never sent, and ids and values agree with some prefix of
  the stream (every id holds a value it was once sent);
* queries on the restored copy equal exact brute force over its own contents (so the copied ANN
  snapshot, if any, is valid for the copied rows);
* export to NDJSON and to Parquet and import into a fresh index give bit-identical float32
  vectors, identical metadata and identical query results (ids, order and metadata).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import likewise
from likewise.maintenance import export_index, import_index

from .conftest import ServerProcess

DIM = 8


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from likewise.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_backup_under_writes_restore_and_round_trips(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--log-level", "warning").start()
    sent: dict[str, list[Any]] = {}  # id -> every (values, metadata) ever sent for it
    acked: dict[str, Any] = {}  # id -> last acknowledged (values, metadata) or None (deleted)
    acked_at: list[tuple[float, str, Any]] = []  # (time acknowledged, id, state)
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(3)
        n = 0
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                n += 1
                if rng.random() < 0.2 and acked:
                    vid = rng.choice(sorted(acked))
                    r = http.post("/v1/indexes/bk/delete_by_ids", json={"ids": [vid]})
                    assert r.status_code == 200
                    acked[vid] = None
                    acked_at.append((time.monotonic(), vid, None))
                    continue
                vid = f"w{rng.randrange(400)}"
                state = ([float(n), float(vid[1:])] + [rng.random() for _ in range(DIM - 2)], {"n": n, "g": n % 5})
                sent.setdefault(vid, []).append(state)
                r = http.post("/v1/indexes/bk/upsert", json={"vectors": [{"id": vid, "values": state[0], "metadata": state[1]}]})
                assert r.status_code == 200
                acked[vid] = state
                acked_at.append((time.monotonic(), vid, state))

    try:
        httpx.post(server.url + "/v1/indexes", json={"name": "bk", "dimensions": DIM, "metric": "euclidean"}).raise_for_status()
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(1.0)
        began = time.monotonic()
        done = _cli("backup", str(tmp_path / "data"), str(tmp_path / "bk"))
        time.sleep(0.3)  # writes go on after the backup too; none of them may matter
        stop.set()
        thread.join()
    finally:
        server.kill()
    assert done.returncode == 0, done.stderr
    assert _cli("restore", str(tmp_path / "bk"), str(tmp_path / "restored")).returncode == 0
    verified = _cli("verify", str(tmp_path / "restored"), "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout + verified.stderr

    before_backup: dict[str, Any] = {}
    for at, vid, state in acked_at:
        if at < began:
            before_backup[vid] = state
    with likewise.open(tmp_path / "restored", engine=likewise.EngineParams(background=False)) as db:
        idx = db.index("bk")
        ids = sorted(sent)
        got = {v.id: ([float(x) for x in v.values], v.metadata) for v in idx.get_by_ids(ids)}
        assert idx.info().vector_count == len(got), "ids in the copy that were never sent"
        for vid, state in got.items():
            sent_states = [(list(np.float32(s[0]).astype(float)), s[1]) for s in sent[vid]]
            assert state in sent_states, f"{vid} holds a value it was never sent"
        # the copy is a cut: each id holds its state from before the backup began, or one that was
        # acknowledged while it ran (a later upsert, or a delete), never an older one
        for vid, state in before_backup.items():
            later = [s for at, v, s in acked_at if v == vid and at >= began]
            allowed = [state, *later]
            found = got.get(vid)
            norm = [None if a is None else (list(np.float32(a[0]).astype(float)), a[1]) for a in allowed]
            assert found in norm, f"{vid}: the backup holds {found and found[1]}, allowed {[a and a[1] for a in allowed]}"
        # the restored index answers exactly (brute force over its own rows)
        rows = idx.get_by_ids(ids)
        matrix = np.array([r.values for r in rows], dtype=np.float32)
        queries = np.random.default_rng(1).standard_normal((50, DIM)).astype(np.float32) + matrix.mean(axis=0)
        for q in queries:
            want = [rows[i].id for i in np.argsort(((matrix - q) ** 2).sum(axis=1), kind="stable")[:10]]
            assert idx.query(q, top_k=10).ids == want
        before = [idx.query(q, top_k=10, filter={"g": 2}, return_metadata="all").to_dict()["matches"] for q in queries]
        for fmt in ("ndjson", "parquet"):
            out = tmp_path / f"bk.{fmt}"
            assert export_index(idx, out, fmt) == len(rows)
            copy = db.create_index(f"copy-{fmt}", dimensions=DIM, metric="euclidean")
            assert import_index(copy, out) == len(rows)
            copied = {v.id: v for v in copy.get_by_ids(ids)}
            for r in rows:
                c = copied[r.id]
                assert np.asarray(c.values, np.float32).tobytes() == np.asarray(r.values, np.float32).tobytes(), r.id
                assert c.metadata == r.metadata
            after = [copy.query(q, top_k=10, filter={"g": 2}, return_metadata="all").to_dict()["matches"] for q in queries]
            for a, b in zip(after, before):
                assert [(m["id"], m["metadata"]) for m in a] == [(m["id"], m["metadata"]) for m in b]
                assert [m["score"] for m in a] == pytest.approx([m["score"] for m in b], abs=1e-5)

"""Torn and corrupt files (issue #7 point 2): damage one file of a data directory at a time.

A writer process builds a directory with every kind of file (the SQLite store with its -wal and
-shm left behind by a SIGKILL, FTS texts, a metadata index, an ANN snapshot: state.json, graph and
labels, the LOCK), from a recorded history of mutations. Then, for each file, one at a time, the
file is truncated at random offsets or has one random byte flipped, and the directory is opened.
Each case must end in exactly one of:

* **intact**: it opens and holds exactly the recorded state — every id, bit-exact vector and
  metadata — and exact queries find vectors at rank 1. Derived files (the snapshot) are rebuilt
  from SQLite when they fail their checks;
* **prefix**: it opens and holds exactly the state after a prefix of the history (up to its own
  last mutation id): a truncated log loses its tail as a lost write would, consistently. Counted
  separately, with how many of them ``verify`` flags (it can when a newer snapshot proves it);
* **refused**: opening raises a likewise error (``CorruptionError``/``StorageError``) whose
  message names the damaged file;
* **flagged**: it opens but some answer differs from the history; then ``likewise verify`` on
  the damaged directory must report an error naming the file (SQLite does not checksum row
  contents, so only a full read — verify's row checksums — can see every flipped byte).

Never a crash (any other exception), never a hang (each case has a deadline), and never wrong
answers that verify does not flag.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import likewise
from likewise.errors import IndexNotFoundError, LikewiseError
from likewise.maintenance import verify

from .conftest import scaled

DIM = 8
CUTS = scaled(4, 12)  # truncations per file
FLIPS = scaled(6, 25)  # single-byte flips per file
DEADLINE_S = 30.0
PARAMS = likewise.EngineParams(ann_threshold=300, chunk=128, background=False)

WRITER = textwrap.dedent(
    """
    import json, sys, numpy as np, likewise, time
    path, history, DIM = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
    db = likewise.open(path, engine=likewise.EngineParams(ann_threshold=300, chunk=128, background=False))
    idx = db.create_index("torn", dimensions=DIM, metric="euclidean")
    idx.create_metadata_index("g", "number")
    for i, m in enumerate(history):
        if m["op"] == "put":
            seq = idx.upsert_arrays(m["ids"], np.array(m["values"], dtype=np.float32), m["metadata"], texts=m["texts"])
        else:
            seq = idx.delete_by_ids(m["ids"])
        print("ACK", i, seq, flush=True)
        if i == m.get("snapshot_after", -1):
            idx.optimize()
            # move the first 800 rows into the main file, so that damage to it hits real rows;
            # the mutations after this one stay in the -wal
            with db._store.reading() as con:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print("DONE", flush=True)
    time.sleep(60)
    """
)


def _history(rng: np.random.Generator) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for b in range(8):  # 800 vectors, then a snapshot
        ids = [f"v{b * 100 + i}" for i in range(100)]
        out.append(_put(ids, rng))
    out[-1]["snapshot_after"] = len(out) - 1
    for _ in range(6):  # then a few replacements and deletes that live in the log tail (the -wal)
        if rng.random() < 0.3:
            out.append({"op": "del", "ids": [f"v{int(i)}" for i in rng.choice(800, 3, replace=False)]})
        else:
            out.append(_put([f"v{int(i)}" for i in rng.choice(900, 4, replace=False)], rng))
    return out


def _put(ids: list[str], rng: np.random.Generator) -> dict[str, Any]:
    values = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    return {"op": "put", "ids": ids, "values": values.tolist(),
            "metadata": [{"g": int(rng.integers(5)), "s": f"row {i}"} for i in ids], "texts": [f"text of {i}" for i in ids]}


def _expected(history: list[dict[str, Any]], seqs: list[int], upto: int) -> dict[str, tuple[bytes, Any]]:
    state: dict[str, tuple[bytes, Any]] = {}
    for m, seq in zip(history, seqs):
        if seq > upto:
            break
        if m["op"] == "put":
            for vid, vals, meta in zip(m["ids"], m["values"], m["metadata"]):
                state[vid] = (np.asarray(vals, np.float32).tobytes(), meta)
        else:
            for vid in m["ids"]:
                state.pop(vid, None)
    return state


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], list[int]]:
    """The directory, as a SIGKILLed writer left it, its history and each mutation's id."""
    root = tmp_path_factory.mktemp("torn")
    history = _history(np.random.default_rng(11))
    (root / "history.json").write_text(json.dumps(history))
    data = root / "data"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(data), str(root / "history.json"), str(DIM)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seqs: list[int] = []
    for line in proc.stdout:
        if line.startswith("ACK"):
            seqs.append(int(line.split()[2]))
        if line.strip() == "DONE":
            break
    proc.send_signal(signal.SIGKILL)  # leaves the -wal and -shm behind, as a crash does
    proc.wait()
    assert len(seqs) == len(history)
    names = {p.name for p in data.rglob("*") if p.is_file()}
    assert {"likewise.db", "likewise.db-wal", "likewise.db-shm", "LOCK", "state.json"} <= names, names
    assert any(n.startswith("graph-") for n in names) and any(n.startswith("labels-") for n in names)
    return data, history, seqs


def _damage(path: Path, kind: str, rng: random.Random) -> str:
    size = path.stat().st_size
    if kind == "truncate":
        at = rng.choice([0, size // 2, size - 1] + [rng.randrange(max(size, 1))] * 3) if size else 0
        with open(path, "r+b") as fh:
            fh.truncate(at)
        return f"truncated at {at} of {size}"
    if size == 0:
        return "empty file, nothing to flip"
    at = rng.randrange(size)
    with open(path, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ (1 << rng.randrange(8))]))
    return f"bit flipped at byte {at} of {size}"


def _read_everything(path: Path, ids: list[str]) -> tuple[int, dict[str, tuple[bytes, Any]], list[tuple[str, str]]]:
    """Open the directory and read back its whole state and some query answers."""
    with likewise.open(path, engine=PARAMS) as db:
        try:
            idx = db.index("torn")
        except IndexNotFoundError:  # the store went back to before the index existed: the empty prefix
            return 0, {}, []
        last = int(idx.info().processed_up_to_mutation or 0)
        listed: list[str] = []
        page = idx.list_vectors(count=1000)
        listed += page.vectors
        while page.next_cursor:
            page = idx.list_vectors(count=1000, cursor=page.next_cursor)
            listed += page.vectors
        state = {v.id: (np.asarray(v.values, np.float32).tobytes(), v.metadata)
                 for v in idx.get_by_ids(sorted(set(ids) | set(listed)))}
        if set(listed) != set(state) or idx.info().vector_count != len(state):
            state["<listing disagrees with lookups>"] = (b"", None)
        answers = []
        for vid in sorted(state)[:: max(1, len(state) // 15)]:
            top = idx.query(np.frombuffer(state[vid][0], np.float32), top_k=1).matches
            answers.append((vid, top[0].id if top else ""))
    return last, state, answers


def _run_case(path: Path, ids: list[str]) -> tuple[str, Any]:
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = ("opened", _read_everything(path, ids))
        except LikewiseError as exc:
            box["result"] = ("refused", exc)
        except BaseException as exc:  # noqa: BLE001 - a crash is what the test looks for
            box["result"] = ("crashed", exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    if thread.is_alive():
        return "hung", None
    return box["result"]  # type: ignore[no-any-return]


def test_damaged_files_recover_refuse_or_are_flagged(pristine: tuple[Path, list[dict[str, Any]], list[int]],
                                                     tmp_path: Path, record_property: Any) -> None:
    data, history, seqs = pristine
    rng = random.Random(2024)
    ids = sorted({vid for m in history for vid in m["ids"]})
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    outcomes: dict[str, int] = {"intact": 0, "prefix": 0, "prefix flagged": 0, "refused": 0, "flagged": 0}
    failures: list[str] = []
    per_file: dict[str, dict[str, int]] = {}
    case = 0
    for rel in files:
        for kind in ["truncate"] * CUTS + ["flip"] * FLIPS:
            case += 1
            work = tmp_path / f"case{case}"
            shutil.copytree(data, work)
            what = f"{rel}: {_damage(work / rel, kind, rng)}"
            checked = tmp_path / f"verify{case}"
            shutil.copytree(work, checked)  # verify looks at the damage as it was, before any open
            outcome, detail = _run_case(work, ids)
            tally = per_file.setdefault(str(rel), {})
            before_counts = dict(outcomes)
            if outcome in ("crashed", "hung"):
                failures.append(f"{what}: {outcome}: {detail!r}")
            elif outcome == "refused":
                message = str(detail)
                if rel.name not in message and str(rel.parent) not in message:
                    failures.append(f"{what}: refused without naming the file: {message}")
                else:
                    outcomes["refused"] += 1
            else:
                last, state, answers = detail
                expected = _expected(history, seqs, last)
                right = state == expected and all(vid == top for vid, top in answers)
                if right and last == seqs[-1]:
                    outcomes["intact"] += 1
                elif right:
                    # a consistent older state: the log lost its tail (truncation), as after a lost
                    # write; verify flags it when a newer snapshot proves the loss
                    outcomes["prefix"] += 1
                    outcomes["prefix flagged"] += not verify(checked).ok
                else:
                    report = verify(checked)
                    named = [p for p in report.problems if p.severity == "error" and rel.name.split("-")[0] in p.file + p.message]
                    if report.ok or not named:
                        diff = sorted(set(state) ^ set(expected))[:5] or [k for k in expected if state.get(k) != expected[k]][:5]
                        failures.append(f"{what}: wrong answers ({diff}) and verify did not flag them: {report.problems}")
                    else:
                        outcomes["flagged"] += 1
            for key, value in outcomes.items():
                if value != before_counts[key] and key != "prefix flagged":
                    tally[key] = tally.get(key, 0) + 1
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(checked, ignore_errors=True)
    record_property("cases", case)
    print(f"torn files: {case} damaged directories ({len(files)} files × {CUTS} truncations + {FLIPS} flips): "
          f"{outcomes['intact']} opened intact, {outcomes['prefix']} opened at an older consistent state "
          f"({outcomes['prefix flagged']} of them flagged by verify), {outcomes['refused']} refused naming the file, "
          f"{outcomes['flagged']} flagged by verify; {len(failures)} failures")
    for name, tally in per_file.items():
        print(f"  {name}: {tally}")
    assert not failures, "\n".join(failures[:15])

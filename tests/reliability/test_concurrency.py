"""Concurrency (issue #7 point 4): 16 clients against one server; the end state is a serial replay.

One real ``likewise serve`` process; 16 client threads, each with its own connection:

* 12 *mixers* send upserts, deletes and queries (filtered and not) over a shared pool of ids for
  ``DURATION`` seconds (20 s in CI, the full minute with ``LIKEWISE_SOAK=1``);
* 4 *readers-of-their-writes* upsert a fresh vector and immediately query for it, until 1,000 trials
  are done (and at least as long as the mixers run); every trial must find the vector at rank 1.

Every acknowledged mutation is recorded with the mutation id (the server's sequence number) it
returned. Afterwards the server's full state (ids, values, metadata) must equal the replay of those
mutations in sequence order, and no request may have had a 5xx (or any unexpected status).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import ServerProcess, scaled

DIM = 8
POOL = 200
CLIENTS = 16
RYW_CLIENTS = 4
DURATION = scaled(20, 60)
RYW_TRIALS = 1000


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mutations: list[tuple[int, str, Any]] = []
        self.statuses: dict[int, int] = {}
        self.bad: list[str] = []
        self.ryw_trials = 0
        self.ryw_misses = 0
        self.requests = 0
        self.vanished = 0

    def note(self, r: httpx.Response) -> None:
        with self.lock:
            self.requests += 1
            self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
            if r.status_code != 200:
                self.bad.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")


def _mixer(url: str, seed: int, tally: Tally, stop: threading.Event) -> None:
    rng = random.Random(seed)
    counter = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            counter += 1
            roll = rng.random()
            if roll < 0.45:
                ids = list(dict.fromkeys(f"p{rng.randrange(POOL)}" for _ in range(rng.randint(1, 5))))
                vectors = [{"id": i, "values": [float(seed), float(counter)] + [rng.random() for _ in range(DIM - 2)],
                            "metadata": {"by": seed, "n": counter, "g": rng.randrange(4)}} for i in ids]
                r = http.post("/v1/indexes/conc/upsert", json={"vectors": vectors})
                tally.note(r)
                if r.status_code == 200:
                    with tally.lock:
                        tally.mutations.append((int(r.json()["mutation_id"]), "put", vectors))
            elif roll < 0.6:
                ids = [f"p{rng.randrange(POOL)}" for _ in range(rng.randint(1, 3))]
                r = http.post("/v1/indexes/conc/delete_by_ids", json={"ids": ids})
                tally.note(r)
                if r.status_code == 200:
                    with tally.lock:
                        tally.mutations.append((int(r.json()["mutation_id"]), "del", ids))
            else:
                body: dict[str, Any] = {"vector": [rng.random() for _ in range(DIM)], "top_k": rng.randint(1, 20)}
                if rng.random() < 0.3:
                    body["filter"] = {"g": rng.randrange(4)}
                    body["return_metadata"] = "all"
                r = http.post("/v1/indexes/conc/query", json=body)
                tally.note(r)
                if r.status_code == 200:
                    matches = r.json()["matches"]
                    # A match whose vector is deleted or replaced between the search and the
                    # metadata fetch comes back without metadata (a known race in Index.query, see
                    # test_query_race_returns_match_without_metadata); count it, check the rest.
                    vanished = [m for m in matches if "filter" in body and "metadata" not in m]
                    if len(matches) > body["top_k"] or ("filter" in body and any(
                            m["metadata"]["g"] != body["filter"]["g"] for m in matches if m not in vanished)):
                        with tally.lock:
                            tally.bad.append(f"query answered wrongly: {body} -> {matches}")
                    with tally.lock:
                        tally.vanished += len(vanished)


def _reader_of_writes(url: str, seed: int, tally: Tally, stop: threading.Event) -> None:
    n = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        while True:
            with tally.lock:
                if stop.is_set() and tally.ryw_trials >= RYW_TRIALS:
                    return
            n += 1
            vid = f"ryw-{seed}-{n}"
            vector = [1000.0 + seed, float(n)] + [0.25] * (DIM - 2)  # far from the mixers' vectors
            r = http.post("/v1/indexes/conc/upsert", json={"vectors": [{"id": vid, "values": vector}]})
            tally.note(r)
            if r.status_code != 200:
                continue
            with tally.lock:
                tally.mutations.append((int(r.json()["mutation_id"]), "put", [{"id": vid, "values": vector}]))
            q = http.post("/v1/indexes/conc/query", json={"vector": vector, "top_k": 1})
            tally.note(q)
            found = q.status_code == 200 and [m["id"] for m in q.json()["matches"]] == [vid]
            with tally.lock:
                tally.ryw_trials += 1
                tally.ryw_misses += not found


def _guarded(target: Any, tally: Tally) -> Any:
    """A client that dies of an exception fails the test (instead of a thread warning)."""

    def run(*args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:  # noqa: BLE001 - reported through the tally
            with tally.lock:
                tally.bad.append(f"client crashed: {exc!r}")

    return run


def _server_state(http: httpx.Client) -> dict[str, tuple[list[float], Any]]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"count": 1000, **({"cursor": cursor} if cursor else {})}
        page = http.get("/v1/indexes/conc/vectors", params=params).raise_for_status().json()
        ids += page["vectors"]
        cursor = page.get("next_cursor")
        if not page["is_truncated"]:
            break
    state: dict[str, tuple[list[float], Any]] = {}
    for start in range(0, len(ids), 1000):
        r = http.post("/v1/indexes/conc/get_by_ids", json={"ids": ids[start : start + 1000]}).raise_for_status()
        for v in r.json()["vectors"]:
            state[v["id"]] = (v["values"], v.get("metadata"))
    return state


def test_sixteen_clients_equal_a_serial_replay(tmp_path: Path, record_property: Any) -> None:
    server = ServerProcess(tmp_path / "data", "--log-level", "warning", log=tmp_path / "server.log").start()
    try:
        httpx.post(server.url + "/v1/indexes", json={"name": "conc", "dimensions": DIM, "metric": "euclidean"}).raise_for_status()
        tally = Tally()
        stop = threading.Event()
        threads = [threading.Thread(target=_guarded(_mixer, tally), args=(server.url, i, tally, stop)) for i in range(CLIENTS - RYW_CLIENTS)]
        threads += [threading.Thread(target=_guarded(_reader_of_writes, tally), args=(server.url, 100 + i, tally, stop))
                    for i in range(RYW_CLIENTS)]
        began = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(DURATION)
        stop.set()
        for t in threads:
            t.join(timeout=300)
        elapsed = time.monotonic() - began
        assert not any(t.is_alive() for t in threads), "a client hung"
        assert not tally.bad, tally.bad[:5]
        assert all(code < 500 for code in tally.statuses), tally.statuses
        assert tally.ryw_trials >= RYW_TRIALS and tally.ryw_misses == 0, (tally.ryw_trials, tally.ryw_misses)
        # the serial replay of the acknowledged mutations, in the server's own sequence order
        seqs = [m[0] for m in tally.mutations]
        assert len(set(seqs)) == len(seqs), "two acknowledged mutations share a sequence number"
        expected: dict[str, tuple[list[float], Any]] = {}
        for _, op, payload in sorted(tally.mutations, key=lambda m: m[0]):
            if op == "put":
                for v in payload:
                    expected[v["id"]] = (v["values"], v.get("metadata"))
            else:
                for vid in payload:
                    expected.pop(vid, None)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            actual = _server_state(http)
            assert http.get("/v1/indexes/conc/info").json()["vector_count"] == len(expected)
        assert set(actual) == set(expected)
        wrong = [vid for vid in expected if actual[vid][1] != expected[vid][1]
                 or actual[vid][0] != np.asarray(expected[vid][0], np.float32).tolist()]
        assert not wrong, f"{len(wrong)} ids differ from the serial replay, e.g. {wrong[:5]}"
    finally:
        server.kill()
    record_property("requests", tally.requests)
    record_property("mutations", len(tally.mutations))
    record_property("ryw_trials", tally.ryw_trials)
    print(f"concurrency: {CLIENTS} clients, {elapsed:.0f} s, {tally.requests} requests, {len(tally.mutations)} "
          f"acknowledged mutations replayed exactly, 0 5xx; read-your-writes {tally.ryw_trials - tally.ryw_misses}"
          f"/{tally.ryw_trials}; {tally.vanished} matches lost their metadata to a concurrent write")


def test_query_race_never_returns_a_match_without_its_metadata(tmp_path: Path) -> None:
    """Deterministic form of the race the storm above hits: a delete lands between the engine's
    search and the metadata fetch. The query searches again and answers from the new state."""
    import likewise

    with likewise.open(tmp_path / "d", engine=likewise.EngineParams(background=False)) as db:
        idx = db.create_index("race", dimensions=2, metric="euclidean")
        idx.upsert([likewise.Vector("a", [0, 0], {"g": 1}), likewise.Vector("b", [1, 1], {"g": 1})])
        store = idx._store
        real = store.by_labels

        def deleted_meanwhile(labels: Any) -> Any:
            store.delete_vectors(idx._row.id, ["a"])  # the concurrent delete, just in time
            return real(labels)

        store.by_labels = deleted_meanwhile  # type: ignore[method-assign]
        result = idx.query([0, 0], top_k=2, return_metadata="all")
        assert all(m.metadata is not None for m in result.matches), result.to_dict()
        assert result.ids == ["b"]  # searched again after "a" went

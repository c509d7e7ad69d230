#!/usr/bin/env python3
"""The scale-out benchmark: the sharded database (1, 2, 4 shards) against the embedded index, in one run.

Ray binds the host's address, so run it in a loopback-only network namespace (as root)::

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/python benchmarks/bench_ray.py \\
        --n 200000 --shards 1,2,4 --out benchmarks/results/ray-200k.json'

    # 1M (docs/scaling.md): shards first, embedded on the 1-shard graph, then the full embedded run
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/python benchmarks/bench_ray.py \\
        --n 1000000 --shards 1,2,4 --embedded-from-shard --embedded-last --out benchmarks/results/ray-1m.json'

What it measures, per system (embedded; sharded with 1, 2 and 4 shards on a local one-node Ray):

* **ingest**: ``upsert_arrays`` in batches of ``--batch`` from this process until the last batch
  returns (durable: SQLite ``synchronous=FULL`` in every shard), vectors/s; then ``optimize()``, the
  time until every vector is in its (shard's) HNSW graph; disk used.
* **query**: one query at a time for ``--queries`` queries (QPS, p50, p99 latency), unfiltered and
  filtered to 10 % (``c10 == q % 10``); then ``--threads`` concurrent clients (QPS); recall@10 against
  exact ground truth.
* **scatter floor**: the round trip of an empty call to every shard at once (what the scatter-gather
  path adds before any search work), p50 and p99.
* **memory**: resident memory of each shard process after ``optimize()`` (and of this process for
  the embedded systems), read from ``/proc`` (single machine).
* ``--embedded-from-shard``: after the 1-shard system, its shard directory (a plain likewise data
  directory) is opened in this process with ``likewise.open`` and queried directly: the same graph
  and the same data without the scatter-gather path, so the difference is that path alone (and the
  time to load a snapshot of ``--n`` vectors). ``--embedded-last`` runs the full embedded system
  (ingest and build of its own) after the sharded ones instead of first. Ray is shut down while
  either embedded system is measured.

Every process runs its kernels single-threaded (``OMP_NUM_THREADS=1``, as ``likewise serve`` does and
as Ray gives a fractional-CPU actor), so shards are the only parallelism. Data: the clustered
unit vectors of ``bench_core.py`` (same generator and seed; ground truth exact). The JSON report is
rewritten after every step (ingest, optimize, queries), so a run stopped part-way keeps what it measured.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import make_data, read_rows

import likewise


def dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def ingest(idx: Any, data_dir: Path, n: int, dim: int, batch: int, rep: dict[str, Any], save: Callable[[], None]) -> None:
    """Ingest then optimize, recording each into ``rep`` (and saving) as soon as it is done."""
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        m = min(batch, n - s)
        rows = read_rows(data_dir / "base.f32", dim, s, m)
        idx.upsert_arrays([str(i) for i in range(s, s + m)], rows, metadata=[{"c10": i % 10} for i in range(s, s + m)])
    ingest_s = time.perf_counter() - t0
    rep.update(ingest_s=round(ingest_s, 2), ingest_rate=round(n / ingest_s), loadavg_after_ingest=loadavg())
    save()
    print(f"  ingest {ingest_s:.1f} s", flush=True)
    t1 = time.perf_counter()
    idx.optimize()
    optimize_s = time.perf_counter() - t1
    rep.update(
        optimize_s=round(optimize_s, 2),
        time_to_indexed_s=round(ingest_s + optimize_s, 2),
        loadavg_after_optimize=loadavg(),
    )
    save()
    print(f"  optimize {optimize_s:.1f} s", flush=True)


def timed(fn: Callable[[int], Any], count: int) -> dict[str, Any]:
    lat = []
    t0 = time.perf_counter()
    for i in range(count):
        s = time.perf_counter()
        fn(i)
        lat.append((time.perf_counter() - s) * 1000)
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "qps": round(count / wall, 1),
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
    }


def concurrent(fn: Callable[[int], Any], count: int, threads: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, range(count)))
    return round(count / (time.perf_counter() - t0), 1)


def measure_queries(idx: Any, queries: np.ndarray, gt: Any, count: int, threads: int) -> dict[str, Any]:
    nq = len(queries)

    def plain(i: int) -> list[str]:
        return list(idx.query(queries[i % nq], top_k=10).ids)

    def filtered(i: int) -> list[str]:
        return list(idx.query(queries[i % nq], top_k=10, filter={"c10": i % nq % 10}).ids)

    for i in range(min(100, count)):  # warm up
        plain(i)
    out: dict[str, Any] = {"unfiltered": timed(plain, count), "filtered_10pct": timed(filtered, count)}
    out["unfiltered"]["qps_concurrent"] = concurrent(plain, count, threads)
    checks = min(nq, 300)
    for name, fn, key in (("unfiltered", plain, "all_ids"), ("filtered_10pct", filtered, "c10_ids")):
        hits = sum(len({str(x) for x in gt[key][i]} & set(fn(i))) for i in range(checks))
        out[name]["recall_at_10"] = round(hits / (10 * checks), 4)
    return out


def scatter_floor(db: Any, count: int) -> dict[str, Any]:
    shards = db._shards

    def ping(_: int) -> Any:
        return shards.all("ping")

    for i in range(50):
        ping(i)
    return timed(ping, count)


def rss_mib(pid: int | str = "self") -> float | None:
    """Resident memory of a process on this machine (the shards run here too), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--skip-embedded", action="store_true")
    ap.add_argument("--embedded-last", action="store_true", help="run the full embedded system after the sharded ones")
    ap.add_argument(
        "--embedded-from-shard", action="store_true",
        help="after the 1-shard system, query its shard directory with likewise.open (same graph, no Ray)",
    )
    ap.add_argument("--write-timeout", type=float, default=7200.0, help="lwd.open(write_timeout_s=...): optimize at 1M takes minutes")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/lwray"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ray.json")
    args = ap.parse_args()

    import ray

    report: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": {"ray": ray.__version__, "likewise": likewise.__version__, "numpy": np.__version__},
        "machine": {"cores": os.cpu_count(), "loadavg_at_start": loadavg()},
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "systems": {},
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    args.workdir.mkdir(parents=True, exist_ok=True)
    meta = make_data(args.workdir, args.n, args.dim, args.queries)
    data_dir = Path(meta["dir"])
    queries = np.load(data_dir / "queries.npy")
    gt = np.load(data_dir / "gt.npz")
    report["data"] = meta
    save()

    def embedded() -> None:
        path = args.workdir / "embedded"
        shutil.rmtree(path, ignore_errors=True)
        print("embedded ...", flush=True)
        rep: dict[str, Any] = {"loadavg_before": loadavg()}
        report["systems"]["embedded"] = rep
        with likewise.open(path) as db:
            idx = db.create_index("bench", dimensions=args.dim, metric="cosine")
            idx.create_metadata_index("c10", "number")
            ingest(idx, data_dir, args.n, args.dim, args.batch, rep, save)
            rep["disk_mib"] = round(dir_mib(path), 1)
            rep["rss_mib"] = rss_mib()
            rep["query"] = measure_queries(idx, queries, gt, args.queries, args.threads)
        rep["loadavg_after"] = loadavg()
        save()
        print(json.dumps(rep), flush=True)
        shutil.rmtree(path, ignore_errors=True)

    def embedded_from_shard(shard_dir: Path) -> None:
        print("embedded on the 1-shard system's shard directory ...", flush=True)
        rep: dict[str, Any] = {"loadavg_before": loadavg(), "directory": str(shard_dir)}
        report["systems"]["embedded-same-graph"] = rep
        rep["rss_before_open_mib"] = rss_mib()
        t0 = time.perf_counter()
        with likewise.open(shard_dir) as db:
            idx = db.index("bench")
            rep["open_s"] = round(time.perf_counter() - t0, 2)  # snapshot load of the whole shard
            rep["rss_after_open_mib"] = rss_mib()
            rep["vectors"] = len(idx)
            save()
            rep["query"] = measure_queries(idx, queries, gt, args.queries, args.threads)
            rep["rss_after_queries_mib"] = rss_mib()
        rep["loadavg_after"] = loadavg()
        save()
        print(json.dumps(rep), flush=True)

    if not args.skip_embedded and not args.embedded_last:
        embedded()

    import likewise.distributed as lwd

    def start_ray() -> None:
        ray.init(address="local", include_dashboard=False, num_cpus=os.cpu_count(), object_store_memory=512 * 2**20)

    start_ray()
    for shards in [int(s) for s in args.shards.split(",")]:
        if not ray.is_initialized():
            start_ray()
        path = args.workdir / f"sharded-{shards}"
        shutil.rmtree(path, ignore_errors=True)
        print(f"{shards} shards ...", flush=True)
        rep: dict[str, Any] = {"loadavg_before": loadavg()}
        report["systems"][f"sharded-{shards}"] = rep
        t0 = time.perf_counter()
        db = lwd.open(path, shards=shards, write_timeout_s=args.write_timeout)
        rep["open_s"] = round(time.perf_counter() - t0, 2)
        try:
            idx = db.create_index("bench", dimensions=args.dim, metric="cosine")
            idx.create_metadata_index("c10", "number")
            ingest(idx, data_dir, args.n, args.dim, args.batch, rep, save)
            rep["disk_mib"] = round(dir_mib(path), 1)
            rep["per_shard_vectors"] = [db._shards.call("count", {i: ("bench",)})[0][i] for i in range(shards)]
            rep["shard_rss_mib"] = [rss_mib(st.pid) if st else None for st in db.shard_status()]
            rep["scatter_floor"] = scatter_floor(db, args.queries)
            save()
            rep["query"] = measure_queries(idx, queries, gt, args.queries, args.threads)
        finally:
            db.close()
        rep["loadavg_after"] = loadavg()
        save()
        print(json.dumps(rep), flush=True)
        if shards == 1 and args.embedded_from_shard:
            ray.shutdown()  # no Ray processes around while the embedded index is measured
            embedded_from_shard(path / "shard-0")
        shutil.rmtree(path, ignore_errors=True)
    if ray.is_initialized():
        ray.shutdown()
    if not args.skip_embedded and args.embedded_last:
        embedded()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()


if __name__ == "__main__":
    main()

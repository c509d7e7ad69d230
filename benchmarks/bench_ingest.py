"""Durable ingest in batches of 1,000: likewise against chromadb, on bench_core's 1M data set.

Issue 2 asks for an ingest of 1M × 384 vectors in batches of 1,000, durable, at ≥ 2× chromadb's
rate. Each system runs in its own fresh process into a fresh directory, one after the other on a
machine with nothing else running, and adds the vectors of ``base.f32`` (with bench_core's
``cat10``/``cat100`` metadata and string ids) until all are in or ``--cap-s`` seconds have passed:

- likewise: ``Index.upsert_arrays``, SQLite ``synchronous=FULL`` (every batch is synced before it
  returns); the HNSW graph is built behind the writes by the background indexer, which shares the
  two cores with the ingest, and ``close()`` (timed apart) snapshots what it has indexed.
- chromadb: ``PersistentClient`` ``collection.add``; it inserts into its HNSW index during ``add``.

Chroma's rate falls as its index grows, so when it stops at the cap its rate over the vectors it
reached is an upper bound on its rate over the full million. The report gives both systems' rates
over that same prefix, likewise's over the full million, and each system's rate per segment.

    .venv-corebench/bin/python benchmarks/bench_ingest.py --data /tmp/cbrun/data-1000000-384 \\
        --workdir /tmp/ingest --cap-s 900 --out benchmarks/results/ingest-1m.md

(``/tmp/cbrun/data-1000000-384`` is what ``bench_core.py --sizes 1000000 --workdir /tmp/cbrun``
writes; ``.venv-corebench`` has chromadb installed next to likewise.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
from bench_core import (
    EF_CONSTRUCTION,
    M,
    _chroma_client,
    _meta,
    batches,
    dir_mib,
    spawn,
    versions,
    worker,
)

MARK_EVERY = 50_000  # vectors between two marks; the prefix and segments of the report are multiples


def _ingest(add: Callable[[int, np.ndarray], None], ctx: dict[str, Any]) -> dict[str, Any]:
    """Add batches until all ``n`` are in or the cap has passed; marks every ``MARK_EVERY`` vectors."""
    marks: list[list[float]] = []
    t0 = time.perf_counter()
    done = 0
    for s, x in batches(Path(ctx["data_dir"]), ctx["n"], ctx["dim"]):
        add(s, x)
        done = s + len(x)
        elapsed = time.perf_counter() - t0
        if done % MARK_EVERY == 0 or done == ctx["n"]:
            marks.append([done, round(elapsed, 3)])
        if elapsed > ctx["cap_s"]:
            break
    wall = time.perf_counter() - t0
    return {
        "vectors": done,
        "ingest_s": wall,
        "rate": done / wall,
        "marks": marks,
        "capped": done < ctx["n"],
    }


def likewise_ingest(ctx: dict[str, Any]) -> dict[str, Any]:
    import likewise

    db = likewise.open(Path(ctx["sys_dir"]))  # synchronous=FULL, the default
    idx = db.create_index("bench", dimensions=ctx["dim"], metric="cosine")
    idx.create_metadata_index("cat10", "number")
    idx.create_metadata_index("cat100", "number")

    def add(s: int, x: np.ndarray) -> None:
        idx.upsert_arrays([str(i) for i in range(s, s + len(x))], x, metadata=_meta(s, len(x)))

    out = _ingest(add, ctx)
    out["indexed_when_ingest_returned"] = idx._engine.indexed  # read-only peek for the report
    if ctx["until_indexed"]:
        # optimize() returns when the graph holds every row: the time chroma's add() includes.
        t = time.perf_counter()
        idx.optimize()
        out["fully_indexed_s"] = out["ingest_s"] + time.perf_counter() - t
    t = time.perf_counter()
    db.close()
    out["close_s"] = time.perf_counter() - t
    return out


def chroma_ingest(ctx: dict[str, Any]) -> dict[str, Any]:
    client = _chroma_client(Path(ctx["sys_dir"]))
    col = client.create_collection(
        "bench",
        configuration={
            "hnsw": {"space": "ip", "ef_construction": EF_CONSTRUCTION, "max_neighbors": M}
        },
        embedding_function=None,
    )

    def add(s: int, x: np.ndarray) -> None:
        col.add(
            ids=[str(i) for i in range(s, s + len(x))], embeddings=x, metadatas=_meta(s, len(x))
        )

    out = _ingest(add, ctx)
    out["count"] = col.count()
    return out


WORKERS: dict[str, dict[str, Callable[[dict[str, Any]], dict[str, Any]] | None]] = {
    "likewise": {"ingest": likewise_ingest},
    "chroma": {"ingest": chroma_ingest},
}


def _run(system: str, ctx: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One system's ingest in a fresh process (bench_core's ``spawn``), with its disk size."""
    res = spawn("ingest", system, ctx, workdir, timeout=ctx["cap_s"] + 3600, script=Path(__file__))
    if "error" in res:
        raise SystemExit(f"{system} failed: {res['error']}\n{res['stderr_tail']}")
    res["disk_mib"] = dir_mib(Path(ctx["sys_dir"]))
    return res


def _rate_upto(marks: list[list[float]], count: int) -> float | None:
    """Vectors per second over the first ``count`` vectors, from the marks."""
    for done, secs in marks:
        if done == count:
            return done / secs
    return None


def report(results: dict[str, Any]) -> str:
    runs = results["systems"]
    lines = [
        "# Durable ingest, batches of 1,000 (bench_ingest)\n",
        f"Command: `{results['command']}`  ",
        (
            f"likewise {results['versions'].get('likewise_git', '?')[:7]}, chromadb "
            f"{results['versions'].get('chromadb')}, {results['versions'].get('cores')} cores, "
            f"{results['started']}; cap {results['cap_s']:.0f} s a system\n"
        ),
        "| system | vectors | seconds | vectors/s | capped | load before, after | peak RSS MiB | disk MiB |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for name, r in runs.items():
        la = r["loadavg_1min_before_after"]
        lines.append(
            f"| {name} | {r['vectors']:,} | {r['ingest_s']:.1f} | {r['rate']:,.0f} | "
            f"{'yes' if r['capped'] else 'no'} | {la[0]:.1f}, {la[1]:.1f} | {r['peak_rss_mib']:,.0f} | "
            f"{r['disk_mib']:,.0f} |"
        )
    lw, ch = runs.get("likewise"), runs.get("chroma")
    if lw and ch:
        common = min(lw["vectors"], ch["vectors"]) // MARK_EVERY * MARK_EVERY
        a, b = _rate_upto(lw["marks"], common), _rate_upto(ch["marks"], common)
        lines.append("")
        if a and b:
            lines.append(
                f"Over the first {common:,} vectors (both systems): likewise {a:,.0f}/s, chroma "
                f"{b:,.0f}/s: **{a / b:.1f}×**.  "
            )
        if ch["capped"]:
            lines.append(
                f"likewise over all its {lw['vectors']:,} vectors, against chroma over its "
                f"{ch['vectors']:,} (an upper bound on chroma's rate over more, since it slows as "
                f"it grows): **{lw['rate'] / ch['rate']:.1f}×**."
            )
    top = max(r["vectors"] for r in runs.values())
    stride = max(MARK_EVERY, top // 10 // MARK_EVERY * MARK_EVERY)
    lines += [
        "",
        f"Rate per segment of {stride:,} vectors (vectors/s; a system's last segment may be shorter):\n",
        "| vectors | " + " | ".join(runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for end in range(stride, top + stride, stride):
        cells = []
        for r in runs.values():
            at = {int(c): t for c, t in r["marks"]}
            last = max(at)
            stop = end if end in at else (last if end - stride < last < end else None)
            start = end - stride
            if stop is None:
                cells.append("")
            else:
                rate = (stop - start) / (at[stop] - at.get(start, 0.0))
                cells.append(f"{rate:,.0f}" if stop == end else f"{rate:,.0f} (to {stop:,})")
        lines.append(f"| {min(end, top):,} | " + " | ".join(cells) + " |")
    if lw:
        lines.append(
            f"\nlikewise had indexed {lw['indexed_when_ingest_returned']:,} of them in its HNSW graph when "
            f"the last batch returned (the rest are searched exactly until the indexer reaches them); "
            f"close() took {lw['close_s']:.1f} s."
        )
        if lw.get("fully_indexed_s"):
            lines.append(
                f"With `--until-indexed`: every vector was in likewise's graph {lw['fully_indexed_s']:,.0f} s "
                f"after the first batch ({lw['vectors'] / lw['fully_indexed_s']:,.0f} vectors/s)"
                + (f"; chroma indexes inside add(): {ch['ingest_s']:,.0f} s." if ch else ".")
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", default="/tmp/cbrun/data-1000000-384", help="a bench_core data folder"
    )
    ap.add_argument("--systems", default="likewise,chroma")
    ap.add_argument(
        "--cap-s", type=float, default=900.0, help="seconds after which a system stops adding"
    )
    ap.add_argument(
        "--until-indexed",
        action="store_true",
        help="after its ingest, time likewise until its HNSW graph holds every vector",
    )
    ap.add_argument("--workdir", default="/tmp/likewise-ingest")
    ap.add_argument(
        "--out",
        default=str(HERE / "results" / "ingest-1m.md"),
        help="report (.md; .json beside it)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--system", help=argparse.SUPPRESS)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.system, Path(args.ctx), Path(args.result), WORKERS)
        return
    data = Path(args.data)
    meta = json.loads((data / "meta.json").read_text())
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": "python benchmarks/bench_ingest.py " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "versions": versions(),
        "cap_s": args.cap_s,
        "systems": {},
    }
    for system in args.systems.split(","):
        sys_dir = workdir / system
        shutil.rmtree(sys_dir, ignore_errors=True)
        ctx = {
            "data_dir": str(data),
            "n": meta["n"],
            "dim": meta["dim"],
            "cap_s": args.cap_s,
            "sys_dir": str(sys_dir),
            "until_indexed": args.until_indexed,
        }
        print(f"-- {system}", flush=True)
        results["systems"][system] = r = _run(system, ctx, workdir)
        print(
            f"   {r['vectors']:,} vectors in {r['ingest_s']:.1f} s: {r['rate']:,.0f}/s", flush=True
        )
        shutil.rmtree(sys_dir, ignore_errors=True)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()

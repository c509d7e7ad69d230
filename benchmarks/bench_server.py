"""HTTP service benchmark: ``likewise serve`` against Chroma's own server (``chroma run``), same data.

Both servers run as separate processes on 127.0.0.1 and are driven over loopback by their own Python
clients (``likewise.Client``; ``chromadb.HttpClient``), with 1 and 8 concurrent clients (threads, one
client object each). Measured, for each system:

* upsert: batches of 1,000 vectors (the initial load of N vectors with one client, then more batches
  of new ids with 8 clients); likewise also with ``upsert_arrays`` (base64 float32 instead of JSON);
* query: top-10 nearest neighbours of a random vector, no filter, after the load;
* embed (likewise only): one text per request to ``/v1/embed`` with the bundled all-MiniLM-L6-v2.
  Chroma's server has no embedding endpoint (its clients embed locally, and its default embedder
  downloads its weights, which an offline machine cannot do), so there is no Chroma number for it.

Also measured in-process (``likewise.open`` on the same data) to give the HTTP layer's own cost:
overhead = HTTP p50 − embedded p50 for the same operation. Recall@10 against brute force is reported
for both systems so that speed is not bought with accuracy.

Run (in the benchmark venv, which has chromadb and likewise[server])::

    .venv-bench/bin/python benchmarks/bench_server.py --n 100000 --dim 384 --out benchmarks/results/server.json

``likewise serve`` runs its kernels with one thread per request (OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1,
OMP_WAIT_POLICY=PASSIVE, set by the command itself); this script sets the same for its own process, so
that the in-process baseline is measured the same way, and starts Chroma without them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

for _name, _value in (("OMP_NUM_THREADS", "1"), ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
                      ("OMP_WAIT_POLICY", "PASSIVE")):
    os.environ.setdefault(_name, _value)  # before numpy and faiss load (see the docstring)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def stats(latencies: list[float], wall: float, units_per_call: int = 1) -> dict[str, float]:
    lat = sorted(latencies)
    return {
        "calls": len(lat),
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "mean_ms": 1000 * statistics.fmean(lat),
        "per_s": len(lat) * units_per_call / wall,
    }


def run_clients(n_clients: int, make_client: Callable[[], Any], jobs: list[list[Any]],
                call: Callable[[Any, Any], None]) -> tuple[list[float], float]:
    """Run ``jobs[i]`` (a list of work items) on client ``i``, all at once; latencies and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    clients = [make_client() for _ in range(n_clients)]
    barrier = threading.Barrier(n_clients + 1)

    def worker(i: int) -> None:
        mine: list[float] = []
        barrier.wait()
        for item in jobs[i]:
            t = time.perf_counter()
            call(clients[i], item)
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    for c in clients:
        close = getattr(c, "close", None)
        if callable(close):
            close()
    return latencies, wall


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def split(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i::n] for i in range(n)]


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


# -- systems -------------------------------------------------------------------------------------


class Likewise:
    name = "likewise"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "likewise-server.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "likewise"), "serve", "--data", str(workdir / "likewise"), "--port", str(self.port),
             "--log-level", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/healthz")
        import likewise

        self.client = likewise.Client(self.url, timeout=600)
        self.index = self.client.create_index("bench", dimensions=DIM, metric="cosine")

    def make_client(self) -> Any:
        import likewise

        return likewise.Client(self.url, timeout=600).index("bench")

    def upsert(self, c: Any, batch: tuple[list[str], np.ndarray]) -> None:
        import likewise

        ids, mat = batch
        c.upsert([likewise.Vector(i, row) for i, row in zip(ids, mat)])

    def upsert_arrays(self, c: Any, batch: tuple[list[str], np.ndarray]) -> None:
        c.upsert_arrays(batch[0], batch[1])

    def query(self, c: Any, q: np.ndarray) -> list[str]:
        return list(c.query(q, top_k=10).ids)

    def settle(self) -> None:
        self.index.optimize()  # index the whole tail into the HNSW graph (Chroma indexes on add)

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


class Chroma:
    name = "chroma"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = open(workdir / "chroma-server.log", "w")  # noqa: SIM115
        # Chroma gets the environment without the kernel-thread settings likewise's server uses.
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                 "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
        self.proc = subprocess.Popen(
            [str(BIN / "chroma"), "run", "--path", str(workdir / "chroma"), "--port", str(self.port), "--host", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        wait_http(f"http://127.0.0.1:{self.port}/api/v2/heartbeat")
        self.client = self._client()
        self.collection = self.client.create_collection("bench", metadata={"hnsw:space": "cosine"})

    def _client(self) -> Any:
        import chromadb

        return chromadb.HttpClient(host="127.0.0.1", port=self.port)

    def make_client(self) -> Any:
        return self._client().get_collection("bench")

    def upsert(self, c: Any, batch: tuple[list[str], np.ndarray]) -> None:
        c.upsert(ids=batch[0], embeddings=batch[1])

    def query(self, c: Any, q: np.ndarray) -> list[str]:
        return list(c.query(query_embeddings=[q], n_results=10, include=["distances"])["ids"][0])

    def settle(self) -> None:
        pass

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


# -- the benchmark -------------------------------------------------------------------------------

DIM = 384


def bench_system(sys_: Any, data: np.ndarray, ids: list[str], queries: np.ndarray, truth: list[list[str]],
                 args: argparse.Namespace, out: dict[str, Any]) -> None:
    name = sys_.name
    batches = [(ids[i : i + 1000], data[i : i + 1000]) for i in range(0, len(ids), 1000)]
    lat, wall = run_clients(1, sys_.make_client, [batches], sys_.upsert)
    out[f"{name} upsert 1 client"] = stats(lat, wall, 1000)
    print(f"{name}: loaded {len(ids)} in {wall:.1f}s", flush=True)
    sys_.settle()
    for clients in (1, 8):
        per = args.queries if clients == 1 else args.queries // 2
        jobs = [list(queries[(i * per) % len(queries):][:per]) for i in range(clients)]
        cpu0 = process_cpu(sys_.proc.pid)
        lat, wall = run_clients(clients, sys_.make_client, jobs, lambda c, q: sys_.query(c, q))
        key = f"{name} query {clients} client{'s' if clients > 1 else ''}"
        out[key] = stats(lat, wall)
        out[key]["server_cpu_ms"] = 1000 * (process_cpu(sys_.proc.pid) - cpu0) / len(lat)
        print(f"{name}: query x{clients}: {out[f'{name} query {clients} client' + ('s' if clients > 1 else '')]}", flush=True)
    c = sys_.make_client()
    found = [sys_.query(c, q) for q in queries[: len(truth)]]
    out[f"{name} recall@10"] = recall(found, truth)
    rng = np.random.default_rng(7)
    extra = data[rng.integers(0, len(data), 8 * args.extra_batches * 1000)] + rng.standard_normal((8 * args.extra_batches * 1000, DIM)).astype(np.float32)
    extra_ids = [f"x{i}" for i in range(len(extra))]
    eb = [(extra_ids[i : i + 1000], extra[i : i + 1000]) for i in range(0, len(extra), 1000)]
    lat, wall = run_clients(8, sys_.make_client, split(eb, 8), sys_.upsert)
    out[f"{name} upsert 8 clients"] = stats(lat, wall, 1000)
    if hasattr(sys_, "upsert_arrays"):
        more = data[rng.integers(0, len(data), 8 * args.extra_batches * 1000)] + rng.standard_normal((8 * args.extra_batches * 1000, DIM)).astype(np.float32)
        more_ids = [f"y{i}" for i in range(len(more))]
        mb = [(more_ids[i : i + 1000], more[i : i + 1000]) for i in range(0, len(more), 1000)]
        lat, wall = run_clients(1, sys_.make_client, [mb[: len(mb) // 2]], sys_.upsert_arrays)
        out[f"{name} upsert_arrays 1 client"] = stats(lat, wall, 1000)
        lat, wall = run_clients(8, sys_.make_client, split(mb[len(mb) // 2 :], 8), sys_.upsert_arrays)
        out[f"{name} upsert_arrays 8 clients"] = stats(lat, wall, 1000)


def interleaved(servers: list[Any], queries: np.ndarray, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Query throughput with both servers up, in alternating rounds (ABBA), so that load from other
    work on the machine, which comes and goes, weighs on both alike; the ratio is taken per round."""
    per_round = max(100, args.queries // 2)
    lat: dict[str, dict[int, list[float]]] = {s.name: {1: [], 8: []} for s in servers}
    wall: dict[str, dict[int, float]] = {s.name: {1: 0.0, 8: 0.0} for s in servers}
    cpu: dict[str, dict[int, float]] = {s.name: {1: 0.0, 8: 0.0} for s in servers}
    ratios: dict[int, list[float]] = {1: [], 8: []}
    for r in range(args.rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        for clients in (1, 8):
            qps: dict[str, float] = {}
            for sys_ in order:
                per = per_round if clients == 1 else per_round // 2
                start = (r * 7919) % len(queries)
                jobs = [list(np.roll(queries, -(start + i * per), axis=0)[:per]) for i in range(clients)]
                cpu0 = process_cpu(sys_.proc.pid)
                got, seconds = run_clients(clients, sys_.make_client, jobs, lambda c, q, s=sys_: s.query(c, q))
                cpu[sys_.name][clients] += process_cpu(sys_.proc.pid) - cpu0
                lat[sys_.name][clients] += got
                wall[sys_.name][clients] += seconds
                qps[sys_.name] = len(got) / seconds
            ratios[clients].append(qps[servers[0].name] / qps[servers[1].name])
        print(f"round {r + 1}: likewise/chroma QPS 1 client {ratios[1][-1]:.2f}x, 8 clients {ratios[8][-1]:.2f}x",
              flush=True)
    for sys_ in servers:
        for clients in (1, 8):
            key = f"{sys_.name} query {clients} client{'s' if clients > 1 else ''}, interleaved ({args.rounds} rounds)"
            out[key] = stats(lat[sys_.name][clients], wall[sys_.name][clients])
            out[key]["server_cpu_ms"] = 1000 * cpu[sys_.name][clients] / len(lat[sys_.name][clients])
    for clients in (1, 8):
        out[f"likewise/chroma query QPS, {clients} client{'s' if clients > 1 else ''}, per-round ratios"] = (
            ", ".join(f"{x:.2f}" for x in ratios[clients]) + f" (median {statistics.median(ratios[clients]):.2f})"
        )


def bench_embedded(data: np.ndarray, ids: list[str], queries: np.ndarray, workdir: Path,
                   args: argparse.Namespace, out: dict[str, Any]) -> None:
    import likewise

    db = likewise.open(workdir / "embedded")
    idx = db.create_index("bench", dimensions=DIM)
    for i in range(0, len(ids), 1000):
        idx.upsert_arrays(ids[i : i + 1000], data[i : i + 1000])
    idx.optimize()
    lat = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for q in queries[: args.queries]:
        t = time.perf_counter()
        idx.query(q, top_k=10)
        lat.append(time.perf_counter() - t)
    out["embedded query 1 client"] = stats(lat, time.perf_counter() - t0)
    out["embedded query 1 client"]["server_cpu_ms"] = 1000 * (time.process_time() - cpu0) / len(lat)
    batch = [likewise.Vector(f"e{i}", row) for i, row in enumerate(data[:1000])]
    lat = []
    t0 = time.perf_counter()
    for _ in range(args.extra_batches):
        t = time.perf_counter()
        idx.upsert(batch)
        lat.append(time.perf_counter() - t)
    out["embedded upsert 1 client"] = stats(lat, time.perf_counter() - t0, 1000)
    db.close()


def bench_embed(lw: Likewise, texts: list[str], args: argparse.Namespace, out: dict[str, Any]) -> None:
    import likewise
    from likewise.embedders.text import TextEmbedder

    lw.client.embed(["warm up the model"])
    te = TextEmbedder()
    te.embed_batch(["warm up"])
    for clients in (1, 8):
        per = args.texts if clients == 1 else args.texts // 2
        jobs = [texts[i * per : (i + 1) * per] for i in range(clients)]
        cpu0 = process_cpu(lw.proc.pid)
        lat, wall = run_clients(clients, lambda: likewise.Client(lw.url, timeout=600), jobs, lambda c, t: c.embed([t]))
        key = f"likewise embed {clients} client{'s' if clients > 1 else ''}"
        out[key] = stats(lat, wall)
        out[key]["server_cpu_ms"] = 1000 * (process_cpu(lw.proc.pid) - cpu0) / len(lat)
        if clients == 1:  # in-process right after, so that both see the same machine load
            lat = []
            t0, cpu0 = time.perf_counter(), time.process_time()
            for t in texts[: args.texts]:
                s = time.perf_counter()
                te.embed_batch([t])
                lat.append(time.perf_counter() - s)
            out["embedded embed 1 client"] = stats(lat, time.perf_counter() - t0)
            out["embedded embed 1 client"]["server_cpu_ms"] = 1000 * (time.process_time() - cpu0) / len(lat)


def table(out: dict[str, Any]) -> str:
    rows = [
        "| measurement | calls | p50 ms | p99 ms | per second | server CPU ms/call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, v in out.items():
        if isinstance(v, dict):
            unit = "vectors" if "upsert" in key else ("texts" if " embed " in key else "queries")
            cpu = f"{v['server_cpu_ms']:.2f}" if "server_cpu_ms" in v else ""
            rows.append(
                f"| {key} | {v['calls']} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['per_s']:,.0f} {unit} | {cpu} |"
            )
    for key, v in out.items():
        if not isinstance(v, dict):
            rows.append(f"| {key} | | | | {v if isinstance(v, str) else f'{v:.3f}'} | |")
    return "\n".join(rows)


def main() -> None:
    global DIM
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=1000, help="queries for 1 client (8 clients: half each)")
    p.add_argument("--texts", type=int, default=200, help="embed requests for 1 client (8 clients: half each)")
    p.add_argument("--extra-batches", type=int, default=3, help="1,000-vector batches per client for 8-client upserts")
    p.add_argument("--systems", default="likewise,chroma,embedded,embed")
    p.add_argument("--rounds", type=int, default=4,
                   help="interleaved query rounds with both servers up (0: none), after the sequential runs")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    DIM = args.dim
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-server-"))
    # Clustered like real embeddings (pure Gaussian noise in 384-d has no neighbours worth finding,
    # and every ANN index scores near-zero recall on it): 1,000 centres, points spread around them;
    # queries are new points from the same mixture.
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, DIM))

    def sample(count: int) -> np.ndarray:
        return (centres[rng.integers(0, len(centres), count)] + 0.5 * rng.standard_normal((count, DIM))).astype(np.float32)

    data = sample(args.n)
    ids = [f"v{i}" for i in range(args.n)]
    queries = sample(max(args.queries, 200))
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    sims = (queries[:100] / np.linalg.norm(queries[:100], axis=1, keepdims=True)) @ unit.T
    truth = [[ids[j] for j in np.argsort(-row)[:10]] for row in sims]
    systems = args.systems.split(",")
    out: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        "data": f"{args.n} x {DIM} float32 (1,000 Gaussian clusters), cosine, top-10, no filter",
    }
    lw: Likewise | None = None
    ch: Chroma | None = None
    try:
        if "likewise" in systems or "embed" in systems:
            lw = Likewise(workdir)
        if "likewise" in systems:
            bench_system(lw, data, ids, queries, truth, args, out)
        if "embed" in systems and lw is not None:
            texts = [f"benchmark sentence number {i} about topic {i % 17}" for i in range(args.texts)]
            bench_embed(lw, texts, args, out)
        if "embedded" in systems:
            bench_embedded(data, ids, queries, workdir, args, out)
        if "chroma" in systems:
            ch = Chroma(workdir)
            bench_system(ch, data, ids, queries, truth, args, out)
        if args.rounds and lw is not None and ch is not None and "likewise" in systems:
            interleaved([lw, ch], queries, args, out)
    finally:
        for server in (lw, ch):
            if server is not None:
                server.stop()
    for op in ("query", "embed"):
        http_key, local_key = f"likewise {op} 1 client", f"embedded {op} 1 client"
        if http_key in out and local_key in out:
            out[f"HTTP overhead per {op}, latency (p50 difference, ms)"] = out[http_key]["p50_ms"] - out[local_key]["p50_ms"]
            out[f"HTTP overhead per {op}, server CPU (ms)"] = (
                out[http_key]["server_cpu_ms"] - out[local_key]["server_cpu_ms"]
            )
    out["load average at end"] = f"{os.getloadavg()[0]:.1f}"
    print(table(out))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
        args.out.with_suffix(".md").write_text(table(out) + "\n")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

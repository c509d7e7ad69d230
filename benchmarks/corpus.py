"""The Debian corpus for benchmarks: load it, split synopsis from description, embed once (cached).

    python benchmarks/corpus.py bench-data/debian.jsonl      # writes bench-data/debian-*.npy

The corpus itself comes from ../shared/tools/debian-corpus (about 63,000 package descriptions);
nothing of it is committed. Each record's text is "synopsis. long description": the synopsis is a
natural query and the rest (synopsis removed) is the document to find.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "bench-data"


@dataclass
class Package:
    id: int
    name: str
    section: str
    synopsis: str
    document: str


def load(path: Path = DATA / "debian.jsonl") -> list[Package]:
    """Every package whose description has text beyond its synopsis."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        synopsis, _, rest = rec["text"].partition(". ")
        if rest.strip():
            out.append(Package(rec["id"], rec["name"], rec["section"], synopsis.strip(), rest.strip()))
    return out


def embed_all(packages: list[Package], what: str, out: Path) -> np.ndarray:
    """Embed documents or synopses with the default model (ONNX, through a persistent cache)."""
    if out.exists():
        return np.load(out)
    from likewise.embedders import TextEmbedder

    te = TextEmbedder(cache=DATA / "embedding-cache.db", threads=2)
    texts = [getattr(p, what) for p in packages]
    started = time.perf_counter()
    parts = []
    for s in range(0, len(texts), 2048):
        parts.append(te.embed_batch(texts[s : s + 2048]))
        done = min(len(texts), s + 2048)
        rate = done / (time.perf_counter() - started)
        print(f"{what}: {done}/{len(texts)} ({rate:.0f} texts/s)", flush=True)
    matrix = np.vstack(parts).astype(np.float32)
    np.save(out, matrix)
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus", nargs="?", default=str(DATA / "debian.jsonl"))
    args = parser.parse_args()
    packages = load(Path(args.corpus))
    print(f"{len(packages)} packages")
    embed_all(packages, "synopsis", DATA / "debian-synopsis-minilm.npy")
    embed_all(packages, "document", DATA / "debian-document-minilm.npy")


if __name__ == "__main__":
    main()

"""In-process A/B of TextEmbedder's CPU settings: the tokenizer call and bf16 batch shapes.

Two comparisons behind defaults in ``likewise.embedders.text``, each side in the same process and
taking turns round by round, so both see the same machine load:

* tokenising: ``encode_batch`` against ``encode_batch_fast`` (no character offsets) of the model's
  tokenizer, truncated at the model's limit, and whether their ids agree;
* bf16 on a CPU: texts/s of ``TextEmbedder(precision="bf16")`` with batches of 64 texts padded to
  32 tokens (the former setting) against other batch sizes and padding multiples.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embed_ab.py --n 500 --rounds 6

Texts are the ``text`` field of bench-data/debian.jsonl (written by benchmarks/corpus.py). The
bf16 part needs torch and a CPU with AMX-BF16 to say anything about the shipped default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_embed import load_texts  # the same reader as the other embedding benchmarks


def take_turns(sides: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each side, the order rotating each round."""
    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            sides[name]()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def report(title: str, n: int, seconds: dict[str, list[float]]) -> list[str]:
    base = statistics.median(next(iter(seconds.values())))
    lines = [f"### {title}", "", "| side | texts/s (median) | × first row |", "|---|---:|---:|"]
    for name, s in seconds.items():
        lines.append(
            f"| {name} | {n / statistics.median(s):,.1f} | {base / statistics.median(s):.2f}× |"
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=Path, default=ROOT / "bench-data" / "debian.jsonl")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--tokenizer-n", type=int, default=5000, help="texts for the tokenizer A/B")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*truncated.*")

    from likewise.embedders import TextEmbedder
    from likewise.embedders.text import cpu_has_amx_bf16

    lines: list[str] = []
    plain = TextEmbedder(backend="onnx").load()
    tokenizer = plain._tokenizer
    assert tokenizer is not None
    tok = tokenizer._tok
    texts = [t.lower() for t in load_texts(args.texts, args.tokenizer_n)]
    slow = tok.encode_batch(texts)
    fast = tok.encode_batch_fast(texts)
    same = all(a.ids == b.ids for a, b in zip(slow, fast, strict=True))
    seconds = take_turns(
        {
            "encode_batch": lambda: tok.encode_batch(texts),
            "encode_batch_fast": lambda: tok.encode_batch_fast(texts),
        },
        args.rounds,
    )
    lines += report(
        f"Tokenizer, {len(texts):,} texts, {os.cpu_count()} CPU threads", len(texts), seconds
    )
    lines.append(f"Same ids from both: {same}.\n")

    texts = load_texts(args.texts, args.n)
    if cpu_has_amx_bf16():
        settings = {
            "batch 64, pad 32 (former)": (64, 32),
            "batch 32, pad 16 (default)": (32, 16),
            "batch 32, pad 32": (32, 32),
            "batch 16, pad 16": (16, 16),
        }
        sides: dict[str, Callable[[], Any]] = {}
        for name, (batch, pad) in settings.items():
            e = TextEmbedder(
                backend="torch",
                device="cpu",
                precision="bf16",
                threads=args.threads,
                batch_size=batch,
            )
            e.load()._pad_to = pad
            e.embed_batch(texts[:50])  # warm-up: oneDNN builds its kernels
            sides[name] = lambda e=e: e.embed_batch(texts)
        seconds = take_turns(sides, args.rounds)
        lines += report(
            f"bf16 on the CPU, {len(texts):,} texts, {args.threads} threads", len(texts), seconds
        )
    else:
        lines.append("No AMX-BF16 on this CPU: the bf16 comparison was skipped.\n")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

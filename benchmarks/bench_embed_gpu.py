"""Text embedding speed on a CUDA GPU: likewise's TextEmbedder against sentence-transformers.

Anchor: ``SentenceTransformer(model, device="cuda").encode(texts)`` with its defaults (fp32 weights,
batches of 32), the same model and the same texts, in the same process and run, taking turns with
likewise round by round. likewise runs with its GPU defaults (fp16 weights; batches of up to 1,024
texts or 131,072 padded tokens, widths rounded up to 16 tokens; inputs uploaded from pinned memory
without waiting, one copy back), then with the variants the report compares: bf16, fp32, widths
not rounded.

Also measured:

* the agreement of the vectors with the anchor's (cosine per text: mean and minimum);
* a large run: each side embeds its own slice of further texts twice, fresh and again, since new
  text lengths mean new batch shapes for the runtime;
* the ceiling for this encoder size: the model's architecture with random weights in bf16, batches
  of 1,024 texts of exactly 128 tokens, forward passes only, timed with CUDA events;
* tokenisation alone (the CPU's share of likewise's time).

    python benchmarks/bench_embed_gpu.py --model-dir DIR --texts bench-data/debian.jsonl

``--texts`` is a JSON-lines file with a ``text`` field (bench-data/debian.jsonl, written by
benchmarks/corpus.py), optionally xz-compressed (``.xz``). Writes markdown to ``--out`` and the raw
figures to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Both sides tokenise with the same Rust tokenizer; let it use the cores, as users' runs would.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_embed import load_texts  # the same reader as the CPU benchmark

DEFAULT = "likewise fp16 (default)"
ANCHOR = "sentence-transformers (anchor)"
NO_PAD = "likewise fp16, widths not rounded to 16"


def timed_rounds(
    sides: dict[str, Callable[[list[str]], Any]], texts: list[str], rounds: int
) -> dict[str, list[float]]:
    """Seconds per round for each side; the sides take turns (A B C, B C A, ...)."""
    import torch

    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            torch.cuda.synchronize()
            started = time.perf_counter()
            sides[name](texts)
            torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def ceiling(model_dir: Path, batch: int = 1024, tokens: int = 128, iterations: int = 20) -> float:
    """Texts/s of the bare encoder (random weights, bf16, fixed shape): what the GPU can give."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    model = (
        transformers.AutoModel.from_config(config).to(device="cuda", dtype=torch.bfloat16).eval()
    )
    ids = torch.randint(1000, config.vocab_size, (batch, tokens), device="cuda")
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        for _ in range(3):
            model(input_ids=ids, attention_mask=mask)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iterations):
            model(input_ids=ids, attention_mask=mask)
        end.record()
        torch.cuda.synchronize()
    return batch * iterations / (start.elapsed_time(end) / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="model folder [default: the bundled MiniLM]"
    )
    parser.add_argument("--texts", type=Path, default=ROOT / "bench-data" / "debian.jsonl")
    parser.add_argument("--n", type=int, default=5000, help="texts per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--large",
        type=int,
        default=58000,
        help="texts of the large run, split between sides (0: skip)",
    )
    parser.add_argument("--out", type=Path, default=None, help="markdown report")
    parser.add_argument("--json", type=Path, default=None, help="raw figures")
    args = parser.parse_args()

    import sentence_transformers
    import torch
    import transformers

    from likewise.embedders import TextEmbedder
    from likewise.embedders.models import resolve_model

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here")
    model_dir = args.model_dir or resolve_model(None).path
    texts = load_texts(args.texts, args.n + args.large)
    small = texts[: args.n]

    anchor_model = sentence_transformers.SentenceTransformer(str(model_dir), device="cuda")
    embedders = {
        DEFAULT: TextEmbedder(str(model_dir), device="cuda"),
        NO_PAD: TextEmbedder(str(model_dir), device="cuda"),
        "likewise bf16": TextEmbedder(str(model_dir), device="cuda", precision="bf16"),
        "likewise fp32": TextEmbedder(str(model_dir), device="cuda", precision="fp32"),
    }
    embedders[NO_PAD]._pad_to = 1
    default = embedders[DEFAULT]
    assert default.precision == "fp16" and default.batch_size == 1024, default

    def anchor(batch: list[str]) -> Any:
        return anchor_model.encode(batch)

    sides: dict[str, Callable[[list[str]], Any]] = {ANCHOR: anchor}
    sides.update({name: e.embed_batch for name, e in embedders.items()})
    for fn in sides.values():  # warm-up: load, CUDA kernels, allocator, tokenizer threads
        fn(small[:2048])

    reference = np.asarray(anchor(small), dtype=np.float32)
    agreement = {}
    for name, e in embedders.items():
        cosines = (e.embed_batch(small) * reference).sum(axis=1)
        agreement[name] = (float(cosines.mean()), float(cosines.min()))

    seconds = timed_rounds(sides, small, args.rounds)
    rate = {name: args.n / statistics.median(s) for name, s in seconds.items()}
    base = rate[ANCHOR]

    tokenizer = default._tokenizer
    assert tokenizer is not None
    started = time.perf_counter()
    encodings, truncated = tokenizer.encode(small)
    tokenizer.batches(encodings, default.batch_size, default._max_tokens)
    tokenise_s = time.perf_counter() - started
    mean_tokens = float(np.mean([len(e) for e in encodings]))

    # The large run: each side gets its own slice of fresh texts (new lengths, so new batch
    # shapes for the runtime), embedded twice: "first" is what a user sees, "again" the same
    # texts with every shape seen before.
    large: dict[str, tuple[float, float]] = {}
    parts: dict[str, float] = {}
    if args.large:
        names = [ANCHOR, DEFAULT, NO_PAD]
        rest = texts[args.n :]
        size = min(args.large, len(rest)) // len(names)
        for i, name in enumerate(names):
            part = rest[i * size : (i + 1) * size]
            first, again = timed_rounds({name: sides[name]}, part, 2)[name]
            large[name] = (size / first, size / again)
        # Where likewise's time goes: the tokenizer alone, and the model alone on batches made
        # beforehand (shapes seen before).
        part = rest[size : 2 * size]
        started = time.perf_counter()
        batches, _ = default._prepare(part)
        parts["tokenise"] = time.perf_counter() - started
        out = np.empty((len(part), default.dimensions), dtype=np.float32)
        runner = default._runner
        assert runner is not None
        torch.cuda.synchronize()
        started = time.perf_counter()
        runner.pool_into(batches, out)
        parts["model"] = time.perf_counter() - started
        parts["texts"] = size

    top = ceiling(Path(model_dir))
    gpu = torch.cuda.get_device_name()
    lines = [
        (
            f"### {gpu}: {args.n:,} Debian texts (mean {mean_tokens:.0f} tokens, {truncated} truncated at "
            f"{default.max_length}), median of {args.rounds} rounds"
        ),
        "",
        "| side | texts/s | × anchor | mean / min cosine to the anchor |",
        "|---|---:|---:|---|",
    ]
    for name, r in rate.items():
        cos = agreement.get(name)
        cell = f"{cos[0]:.7f} / {cos[1]:.7f}" if cos else "—"
        lines.append(f"| {name} | {r:,.0f} | {r / base:.2f}× | {cell} |")
    lines += [
        "",
        (
            f"- Tokenising and batching the {args.n:,} texts alone: {tokenise_s * 1000:.0f} ms "
            f"({args.n / tokenise_s:,.0f} texts/s on {os.cpu_count()} CPU threads)."
        ),
        (
            f"- Ceiling, the bare encoder with random weights in bf16, 1,024 × 128 tokens: {top:,.0f} texts/s "
            f"(likewise's default reaches {rate[DEFAULT] / top:.0%} of it on real texts of "
            f"{mean_tokens:.0f} tokens on average)."
        ),
    ]
    if large:
        size = int(parts["texts"])
        lines += [
            "",
            (
                f"Large run: each side embeds its own {size:,} further texts twice (first: fresh "
                "lengths; again: the same texts)"
            ),
            "",
            "| side | first: texts/s | × anchor | again: texts/s | × anchor |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, (first, again) in large.items():
            lines.append(
                f"| {name} | {first:,.0f} | {first / large[ANCHOR][0]:.2f}× | {again:,.0f} | "
                f"{again / large[ANCHOR][1]:.2f}× |"
            )
        lines.append(
            f"- The default's slice: the tokenizer alone takes {parts['tokenise']:.2f} s "
            f"({size / parts['tokenise']:,.0f} texts/s), the model alone {parts['model']:.2f} s "
            f"({size / parts['model']:,.0f} texts/s)."
        )
    lines += [
        "",
        (
            f"Versions: torch {torch.__version__}, transformers {transformers.__version__}, "
            f"sentence-transformers {sentence_transformers.__version__}, Python {platform.python_version()}."
        ),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
    if args.json:
        figures = {
            "gpu": gpu,
            "n": args.n,
            "rounds": args.rounds,
            "seconds": seconds,
            "texts_per_s": rate,
            "agreement": agreement,
            "tokenise_s": tokenise_s,
            "mean_tokens": mean_tokens,
            "truncated": truncated,
            "large": large,
            "large_parts_s": parts,
            "ceiling_texts_per_s": top,
        }
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

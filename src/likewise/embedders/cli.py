"""The ``likewise embed`` command: texts in, vectors out.

Thin by design: arguments go to :class:`~likewise.embedders.text.TextEmbedder`, results go to the
terminal, a JSON document, or a ``.npy`` file. It is a standalone click command so the main CLI
registers it with ``main.add_command(embed)``::

    likewise embed "a text" [--model M] [--json]
    likewise embed --file texts.txt --out vecs.npy      # progress bar, texts/s, cache hits
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

import click
import numpy as np

from likewise.errors import LikewiseError

__all__ = ["embed"]


def _embedder(
    model: str | None, batch_size: int | None, threads: int | None, cache: bool, precision: str = "auto"
) -> Any:
    from likewise.embedders.text import TextEmbedder

    return TextEmbedder(model, batch_size=batch_size, threads=threads, cache=cache or None, precision=precision)  # type: ignore[arg-type]


def _cache_note(embedder: Any) -> dict[str, int] | None:
    if embedder.cache is None:
        return None
    return {"hits": embedder.cache.hits, "misses": embedder.cache.misses}


@click.command("embed")
@click.argument("text", required=False)
@click.option(
    "--file",
    "-f",
    "file",
    type=click.File("r", encoding="utf-8"),
    help="Embed every line of this file instead (one text per line; '-' reads stdin).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the vectors to this .npy file (float32, row i for line i).",
)
@click.option(
    "--model",
    "-m",
    default=None,
    metavar="MODEL",
    help="Hugging Face id, @cf/… name or local folder [default: all-MiniLM-L6-v2].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a summary.")
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Texts per model call [default: 64 on a CPU, 32 in bf16, 1024 on a GPU].",
)
@click.option("--threads", type=int, default=None, help="CPU threads [default: all cores].")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="On a CPU: bf16 (torch, about 2x faster, cosine 0.99999 to fp32) or fp32 (ONNX Runtime); "
    "auto takes bf16 where the CPU has AMX-BF16. On a GPU: fp16 (auto), bf16 or fp32.",
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Reuse vectors from the persistent cache in $LIKEWISE_CACHE_DIR (~/.cache/likewise).",
)
def embed(
    text: str | None,
    file: IO[str] | None,
    out: Path | None,
    model: str | None,
    as_json: bool,
    batch_size: int | None,
    threads: int | None,
    precision: str,
    cache: bool,
) -> None:
    """Embed TEXT, or every line of --file, with a text model (offline).

    \b
    Examples:
      likewise embed "a text" --json
      likewise embed --file texts.txt --out vecs.npy --model @cf/baai/bge-small-en-v1.5
    """
    if (text is None) == (file is None):
        raise click.UsageError("give either TEXT or --file, not both and not neither")
    try:
        embedder = _embedder(model, batch_size, threads, cache, precision)
        if text is not None:
            _one(embedder, text, out, as_json)
        else:
            assert file is not None
            _many(embedder, file.read().splitlines(), out, as_json)
    except LikewiseError as exc:
        raise click.ClickException(exc.message) from exc


def _one(embedder: Any, text: str, out: Path | None, as_json: bool) -> None:
    vector = embedder.embed(text)
    if out is not None:
        np.save(out, vector[None, :])
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": embedder.model_id,
                    "dimensions": embedder.dimensions,
                    "vector": [float(x) for x in vector],
                    "cache": _cache_note(embedder),
                }
            )
        )
        return
    shown = ", ".join(f"{x:+.4f}" for x in vector[:8])
    click.echo(f"{embedder.model_id} · {embedder.dimensions} dimensions · L2 norm 1.0")
    click.echo(f"[{shown}, …]" + (f"  → {out}" if out else ""))


def _many(embedder: Any, texts: list[str], out: Path | None, as_json: bool) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} texts/s" if speed else "… texts/s", style="cyan")

    vectors = np.empty((len(texts), embedder.dimensions), dtype=np.float32)
    chunk = max(embedder.batch_size * 8, 256)  # long enough for length bucketing to pay off
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
    ) as bar:
        task = bar.add_task("embed", total=len(texts))
        done = 0
        for part in embedder.embed_chunks(texts, chunk):
            vectors[done : done + len(part)] = part
            done += len(part)
            bar.update(task, advance=len(part))
    seconds = time.perf_counter() - started
    rate = len(texts) / seconds if seconds > 0 else 0.0
    if out is not None:
        np.save(out, vectors)
    summary = {
        "model": embedder.model_id,
        "count": len(texts),
        "dimensions": embedder.dimensions,
        "seconds": round(seconds, 3),
        "texts_per_second": round(rate, 1),
        "out": str(out) if out else None,
        "cache": _cache_note(embedder),
        "truncated": getattr(embedder, "truncated", 0),
    }
    if out is None:
        # No file to write: stream the vectors as JSON lines, one per input line.
        for t, v in zip(texts, vectors):
            click.echo(json.dumps({"text": t, "vector": [float(x) for x in v]}))
        click.echo(json.dumps(summary) if as_json else _describe(summary), err=True)
    elif as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(_describe(summary), err=True)


def _describe(s: dict[str, Any]) -> str:
    line = (
        f"Embedded {s['count']:,} texts in {s['seconds']:.1f} s ({s['texts_per_second']:,.0f} "
        f"texts/s) with {s['model']}"
    )
    if s["out"]:
        line += f" → {s['out']} ({s['count']}×{s['dimensions']} float32)"
    if s["cache"]:
        line += f"; cache: {s['cache']['hits']:,} hits, {s['cache']['misses']:,} misses"
    if s["truncated"]:
        line += f"; {s['truncated']:,} texts truncated at the model's token limit"
    return line

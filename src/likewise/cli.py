"""The ``likewise`` command line: arguments in, library calls, a table or ``--json`` out.

Kept thin on purpose: every command maps onto one library call. Errors from the library are
printed as one clear line (or a JSON error body with ``--json``) and exit with status 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import InvalidInputError, LikewiseError

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DATA = os.environ.get("LIKEWISE_DATA", "./likewise-data")
console = Console(stderr=True)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return value.to_dict()
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _emit(value: Any, as_json: bool, human: Callable[[], None] | None = None) -> None:
    if as_json or human is None:
        click.echo(json.dumps(_jsonable(value), ensure_ascii=False))
    else:
        human()


def data_option(func: F) -> F:
    return click.option(
        "--data",
        "data",
        default=DEFAULT_DATA,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Data directory (env LIKEWISE_DATA).",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LikewiseError as exc:
            if kwargs.get("as_json"):
                click.echo(json.dumps(exc.to_dict()), err=True)
            else:
                click.echo(f"error: {exc.message}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _open(data: Path) -> Any:
    import likewise

    return likewise.open(data)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="likewise")
def main() -> None:
    """likewise: embed, store, find and serve vectors, locally."""


# -- indexes -------------------------------------------------------------------------------------


@main.group("index")
def index_group() -> None:
    """Create, list, describe and delete indexes."""


@index_group.command("create")
@click.argument("name")
@click.option("--dimensions", "-d", type=int, required=True, help="Vector length (1-8192).")
@click.option(
    "--metric", "-m", type=click.Choice(["cosine", "euclidean", "dot-product"]), default="cosine", show_default=True
)
@click.option("--description", default=None, help="Free text shown in listings.")
@data_option
@json_option
@handle_errors
def index_create(name: str, dimensions: int, metric: str, description: str | None, data: Path, as_json: bool) -> None:
    """Create the index NAME."""
    with _open(data) as db:
        cfg = db.create_index(name, dimensions=dimensions, metric=metric, description=description).config
    _emit(cfg, as_json, lambda: click.echo(f"created index {cfg.name} ({cfg.dimensions}-d, {cfg.metric})"))


@index_group.command("list")
@data_option
@json_option
@handle_errors
def index_list(data: Path, as_json: bool) -> None:
    """List the indexes with their size."""
    with _open(data) as db:
        rows = [(cfg, db.index(cfg.name).info().vector_count) for cfg in db.list_indexes()]

    def table() -> None:
        t = Table("name", "dimensions", "metric", "vectors", "description")
        for cfg, n in rows:
            t.add_row(cfg.name, str(cfg.dimensions), cfg.metric, str(n), cfg.description or "")
        Console().print(t)

    _emit([{**_jsonable(cfg), "vector_count": n} for cfg, n in rows], as_json, table)


@index_group.command("info")
@click.argument("name")
@data_option
@json_option
@handle_errors
def index_info(name: str, data: Path, as_json: bool) -> None:
    """Show the configuration and state of NAME."""
    with _open(data) as db:
        idx = db.index(name)
        out = {
            "config": _jsonable(idx.config),
            "info": _jsonable(idx.info()),
            "metadata_indexes": _jsonable(idx.list_metadata_indexes()),
        }

    def human() -> None:
        for section, values in out.items():
            click.echo(f"{section}:")
            if isinstance(values, dict):
                for k, v in values.items():
                    click.echo(f"  {k}: {v}")
            else:
                for v in values:
                    click.echo(f"  {v}")

    _emit(out, as_json, human)


@index_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@data_option
@json_option
@handle_errors
def index_delete(name: str, yes: bool, data: Path, as_json: bool) -> None:
    """Delete the index NAME and all its vectors."""
    if not yes and not as_json:
        click.confirm(f"Delete index {name!r} and all its vectors?", abort=True)
    with _open(data) as db:
        db.delete_index(name)
    _emit({"deleted": name}, as_json, lambda: click.echo(f"deleted index {name}"))


# -- vectors -------------------------------------------------------------------------------------


def _ndjson(path: Path, discard: bool) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(bytes consumed so far, parsed line or None for a discarded one) for each non-blank line."""
    consumed = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            consumed += len(line)
            if not line.strip():
                continue
            try:
                item = json.loads(line, parse_constant=_reject_constant)
                if not isinstance(item, dict):
                    raise ValueError("a line must hold one JSON object")
            except ValueError as exc:
                if discard:
                    yield consumed, None
                    continue
                raise InvalidInputError(f"{path}:{number}: not a vector: {exc}", line=number) from exc
            yield consumed, item


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number likewise accepts")


@main.command("upsert")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "-i", "index_name", required=True, help="Index to write to.")
@click.option("--insert", "insert_only", is_flag=True, help="Keep vectors whose id exists instead of replacing.")
@click.option("--batch-size", default=1000, show_default=True, help="Vectors per mutation.")
@click.option("--discard-unparsable", is_flag=True, help="Skip lines that do not parse instead of failing.")
@data_option
@json_option
@handle_errors
def upsert_cmd(
    file: Path, index_name: str, insert_only: bool, batch_size: int, discard_unparsable: bool, data: Path, as_json: bool
) -> None:
    """Upsert vectors from a Vectorize NDJSON FILE (one {"id", "values", "metadata"?, "namespace"?} a line)."""
    total_bytes = file.stat().st_size
    written, skipped, mutations = 0, 0, []
    with _open(data) as db:
        idx = db.index(index_name)
        write = idx.insert if insert_only else idx.upsert
        batch: list[dict[str, Any]] = []
        progress = Progress(
            TextColumn("[bold]upsert"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[n]} vectors"),
            TimeRemainingColumn(), console=console, disable=as_json or not console.is_terminal,
        )
        with progress:
            task = progress.add_task("upsert", total=total_bytes, n=0)
            for consumed, item in _ndjson(file, discard_unparsable):
                if item is None:
                    skipped += 1
                    continue
                batch.append(item)
                if len(batch) >= batch_size:
                    mutations.append(write(batch))
                    written += len(batch)
                    batch = []
                    progress.update(task, completed=consumed, n=written)
            if batch:
                mutations.append(write(batch))
                written += len(batch)
            progress.update(task, completed=total_bytes, n=written)
    out = {"index": index_name, "vectors": written, "discarded": skipped, "mutation_id": mutations[-1] if mutations else None}
    _emit(out, as_json, lambda: click.echo(f"wrote {written} vectors to {index_name} (discarded {skipped})"))


def _parse_json_option(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"--{what} is not valid JSON: {exc}") from exc


@main.command("query")
@click.option("--index", "-i", "index_name", required=True, help="Index to search.")
@click.option("--vector", "vector", default=None, help="Query vector as a JSON array.")
@click.option("--id", "vector_id", default=None, help="Query with the stored vector of this id.")
@click.option("--top-k", "-k", default=5, show_default=True, help="Number of matches.")
@click.option("--filter", "filter_json", default=None, help='Metadata filter as JSON, e.g. \'{"genre": "sitcom"}\'.')
@click.option("--namespace", default=None, help="Only search this namespace.")
@click.option("--return-values", is_flag=True, help="Include the vectors' values.")
@click.option(
    "--return-metadata", type=click.Choice(["none", "indexed", "all"]), default="none", show_default=True
)
@data_option
@json_option
@handle_errors
def query_cmd(
    index_name: str,
    vector: str | None,
    vector_id: str | None,
    top_k: int,
    filter_json: str | None,
    namespace: str | None,
    return_values: bool,
    return_metadata: str,
    data: Path,
    as_json: bool,
) -> None:
    """Find the nearest vectors to --vector or to the vector stored under --id."""
    if (vector is None) == (vector_id is None):
        raise InvalidInputError("give exactly one of --vector or --id")
    flt = _parse_json_option(filter_json, "filter")
    with _open(data) as db:
        idx = db.index(index_name)
        kwargs: dict[str, Any] = dict(
            top_k=top_k, filter=flt, namespace=namespace, return_values=return_values, return_metadata=return_metadata
        )
        if vector_id is not None:
            res = idx.query_by_id(vector_id, **kwargs)
        else:
            res = idx.query(_parse_json_option(vector, "vector"), **kwargs)

    def table() -> None:
        t = Table("rank", "id", "score", "metadata")
        for rank, m in enumerate(res.matches, 1):
            t.add_row(str(rank), m.id, f"{m.score:.6f}", json.dumps(m.metadata) if m.metadata is not None else "")
        Console().print(t)

    _emit(res, as_json, table)


@main.command("get")
@click.argument("ids", nargs=-1, required=True)
@click.option("--index", "-i", "index_name", required=True, help="Index to read.")
@data_option
@json_option
@handle_errors
def get_cmd(ids: tuple[str, ...], index_name: str, data: Path, as_json: bool) -> None:
    """Print the stored vectors with these IDS (as NDJSON, the upsert format)."""
    with _open(data) as db:
        found = db.index(index_name).get_by_ids(list(ids))
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in found]))
    else:
        for v in found:
            click.echo(json.dumps(v.to_dict()))


@main.command("delete")
@click.argument("ids", nargs=-1, required=True)
@click.option("--index", "-i", "index_name", required=True, help="Index to delete from.")
@data_option
@json_option
@handle_errors
def delete_cmd(ids: tuple[str, ...], index_name: str, data: Path, as_json: bool) -> None:
    """Delete the vectors with these IDS."""
    with _open(data) as db:
        mutation = db.index(index_name).delete_by_ids(list(ids))
    _emit({"mutation_id": mutation}, as_json, lambda: click.echo(f"deleted (mutation {mutation})"))


# -- documents -----------------------------------------------------------------------------------


@main.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--index", "-i", "index_name", required=True, help="Index to sync into (created if missing).")
@click.option("--model", default=None, help="Text model for a new index (default: the bundled all-MiniLM-L6-v2).")
@click.option("--fields", default=None, help="Comma-separated JSON fields to embed (default: every string field).")
@click.option("--max-tokens", default=200, show_default=True, help="Token budget of a chunk.")
@click.option("--overlap", default=40, show_default=True, help="Tokens repeated between neighbouring chunks.")
@data_option
@json_option
@handle_errors
def ingest_cmd(
    paths: tuple[Path, ...], index_name: str, model: str | None, fields: str | None, max_tokens: int,
    overlap: int, data: Path, as_json: bool,
) -> None:
    """Sync files and folders (.txt .md .html .pdf .json .jsonl) into an index: new and changed files
    are chunked and embedded, unchanged ones skipped, vanished ones removed."""
    from .documents import ingest, iter_files
    from .errors import IndexNotFoundError
    from .embedders.models import DEFAULT_TEXT_MODEL

    with _open(data) as db:
        try:
            idx = db.index(index_name)
        except IndexNotFoundError:
            idx = db.create_index(index_name, model=model or DEFAULT_TEXT_MODEL)
        total = sum(1 for _ in iter_files(paths))
        progress = Progress(
            TextColumn("[bold]ingest"), BarColumn(), TextColumn("{task.completed}/{task.total} files"),
            TextColumn("{task.fields[chunks]} chunks"), TextColumn("{task.fields[rate]} chunks/s"),
            TimeRemainingColumn(), console=console, disable=as_json or not console.is_terminal,
        )
        with progress:
            task = progress.add_task("ingest", total=total, chunks=0, rate="-")
            started = time.perf_counter()

            def tick(_path: str, done: int, chunks: int) -> None:
                rate = chunks / max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=done, chunks=chunks, rate=f"{rate:.0f}")

            report = ingest(
                idx, list(paths), fields=fields.split(",") if fields else None, max_tokens=max_tokens,
                overlap=overlap, progress=tick,
            )
            progress.update(task, completed=total)
    out = {**{k: v for k, v in report.__dict__.items() if k != "skipped"},
           "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
           "chunks_per_second": round(report.chunks_per_second, 1)}

    def human() -> None:
        click.echo(
            f"{report.files} files: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.deleted} deleted; {report.chunks} chunks ({report.chunks_per_second:.0f}/s)"
        )
        for path, reason in report.skipped:
            click.echo(f"skipped {path}: {reason}", err=True)

    _emit(out, as_json, human)


@main.command("search")
@click.argument("text")
@click.option("--index", "-i", "index_name", required=True, help="Index to search.")
@click.option("--mode", type=click.Choice(["vector", "keyword", "hybrid"]), default="hybrid", show_default=True)
@click.option("--top-k", "-k", default=10, show_default=True, help="Number of hits.")
@click.option("--filter", "filter_json", default=None, help="Metadata filter as JSON.")
@click.option("--namespace", default=None, help="Only search this namespace.")
@data_option
@json_option
@handle_errors
def search_cmd(
    text: str, index_name: str, mode: str, top_k: int, filter_json: str | None, namespace: str | None,
    data: Path, as_json: bool,
) -> None:
    """Search an index's texts for TEXT by meaning, keywords (BM25) or both."""
    with _open(data) as db:
        res = db.index(index_name).search(
            text, mode=mode, top_k=top_k, filter=_parse_json_option(filter_json, "filter"), namespace=namespace
        )

    def human() -> None:
        for rank, hit in enumerate(res.hits, 1):
            where = f"{hit.source}#{hit.position}" if hit.source else hit.id
            click.echo(f"{rank:>2}. {hit.score:.3f}  {where}\n    {hit.snippet or ''}")

    _emit(res.to_dict(), as_json, human)


def _register_optional() -> None:
    """Commands that live beside their subsystem (embedding, serving) join the group here.

    Each is skipped when its module is absent, so the core CLI works without the optional extras
    (the commands themselves import their heavy dependencies lazily and name the extra to install).
    """
    import importlib

    for module, name in (
        ("likewise.embedders.cli", "embed"),
        ("likewise.server.cli", "serve"),
        ("likewise.admin_cli", "verify_cmd"),
        ("likewise.admin_cli", "backup_cmd"),
        ("likewise.admin_cli", "restore_cmd"),
        ("likewise.admin_cli", "export_cmd"),
        ("likewise.admin_cli", "import_cmd"),
    ):
        try:
            command = getattr(importlib.import_module(module), name)
        except ImportError:
            continue
        main.add_command(command)


_register_optional()

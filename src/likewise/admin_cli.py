"""Commands that look after a data directory: verify, backup, restore, export, import.

They join the ``likewise`` group from :mod:`likewise.cli`; the work is in :mod:`likewise.maintenance`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli import _emit, _open, data_option, handle_errors, json_option
from .maintenance import backup, export_index, import_index, restore, verify

__all__ = ["backup_cmd", "export_cmd", "import_cmd", "restore_cmd", "verify_cmd"]


@click.command("verify")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@json_option
@handle_errors
def verify_cmd(directory: Path, as_json: bool) -> None:
    """Check DIRECTORY (write-ahead log, SQLite integrity, row checksums, texts, ANN snapshots against the
    store) without changing it; print what is wrong and exit 1 on errors."""
    report = verify(directory)
    out = {
        "ok": report.ok,
        "indexes": report.indexes,
        "vectors": report.vectors,
        "checked_rows": report.checked_rows,
        "checked_snapshot_vectors": report.checked_snapshot_vectors,
        "problems": [p.__dict__ for p in report.problems],
    }

    def human() -> None:
        click.echo(
            f"{directory}: {report.indexes} indexes, {report.vectors} vectors, {report.checked_rows} row "
            f"checksums, {report.checked_snapshot_vectors} snapshot vectors compared with the store"
        )
        for p in report.problems:
            click.echo(f"{p.severity}: {p.file}: {p.message}")
        click.echo("ok" if report.ok else "PROBLEMS FOUND")

    _emit(out, as_json, human)
    if not report.ok:
        sys.exit(1)


@click.command("backup")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@json_option
@handle_errors
def backup_cmd(directory: Path, out: Path, as_json: bool) -> None:
    """Copy the data DIRECTORY to OUT consistently, even while a service writes to it."""
    target = backup(directory, out)
    _emit({"backup": str(target)}, as_json, lambda: click.echo(f"backed up {directory} to {target}"))


@click.command("restore")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("directory", type=click.Path(path_type=Path))
@json_option
@handle_errors
def restore_cmd(backup_dir: Path, directory: Path, as_json: bool) -> None:
    """Restore BACKUP_DIR into the (new or empty) data DIRECTORY."""
    target = restore(backup_dir, directory)
    _emit({"restored": str(target)}, as_json, lambda: click.echo(f"restored {backup_dir} to {target}"))


@click.command("export")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--index", "-i", "index_name", required=True, help="Index to export.")
@click.option("--format", "fmt", type=click.Choice(["ndjson", "parquet"]), default=None,
              help="Default: from OUT's extension (.parquet), else ndjson.")
@data_option
@json_option
@handle_errors
def export_cmd(out: Path, index_name: str, fmt: str | None, data: Path, as_json: bool) -> None:
    """Export every vector of an index to OUT (Vectorize NDJSON or Parquet)."""
    fmt = fmt or ("parquet" if out.suffix == ".parquet" else "ndjson")
    with _open(data) as db:
        n = export_index(db.index(index_name), out, fmt)
    _emit({"index": index_name, "vectors": n, "file": str(out)}, as_json, lambda: click.echo(f"exported {n} vectors to {out}"))


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "-i", "index_name", required=True, help="Index to upsert into (it must exist).")
@data_option
@json_option
@handle_errors
def import_cmd(file: Path, index_name: str, data: Path, as_json: bool) -> None:
    """Upsert the vectors of an NDJSON or Parquet export FILE into an index."""
    with _open(data) as db:
        n = import_index(db.index(index_name), file)
    _emit({"index": index_name, "vectors": n}, as_json, lambda: click.echo(f"imported {n} vectors into {index_name}"))

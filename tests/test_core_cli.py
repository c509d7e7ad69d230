"""The CLI: every command works end to end on a real data directory, with --json and with help text."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from likewise.cli import main


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_index_vectors_query_roundtrip(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    code, out, _ = run("index", "create", "shows", "-d", "3", "--metric", "euclidean", "--data", data, "--json")
    assert code == 0 and json.loads(out)["dimensions"] == 3
    nd = tmp_path / "v.ndjson"
    nd.write_text(
        '{"id": "a", "values": [0, 0, 1], "metadata": {"genre": "sitcom"}}\n'
        "not json\n"
        '{"id": "b", "values": [5, 5, 5], "namespace": "ns"}\n\n'
    )
    code, _, err = run("upsert", str(nd), "--index", "shows", "--data", data)
    assert code == 1 and "line" in err or "2" in err  # the bad line fails the whole file by default
    code, out, _ = run("upsert", str(nd), "-i", "shows", "--data", data, "--discard-unparsable", "--json")
    assert code == 0 and json.loads(out) == {"index": "shows", "vectors": 2, "discarded": 1, "mutation_id": "1"}
    code, out, _ = run("query", "-i", "shows", "--vector", "[0,0,0]", "-k", "2", "--data", data, "--json",
                       "--return-metadata", "all")
    res = json.loads(out)
    assert code == 0 and [m["id"] for m in res["matches"]] == ["a", "b"] and res["matches"][0]["score"] == 1.0
    code, out, _ = run("query", "-i", "shows", "--id", "a", "--filter", '{"genre": "sitcom"}', "--data", data, "--json")
    assert [m["id"] for m in json.loads(out)["matches"]] == ["a"]
    code, out, _ = run("get", "a", "b", "-i", "shows", "--data", data)
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["a", "b"]
    code, out, _ = run("index", "list", "--data", data, "--json")
    assert json.loads(out)[0]["vector_count"] == 2
    code, out, _ = run("delete", "a", "-i", "shows", "--data", data, "--json")
    assert code == 0
    code, out, _ = run("index", "info", "shows", "--data", data, "--json")
    assert json.loads(out)["info"]["vector_count"] == 1
    code, out, _ = run("index", "delete", "shows", "--yes", "--data", data)
    assert code == 0 and "deleted" in out


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    code, _, err = run("index", "info", "nope", "--data", data)
    assert code == 1 and err.strip() == "error: no index named 'nope'"
    run("index", "create", "tv", "-d", "2", "--data", data)
    code, _, err = run("query", "-i", "tv", "--vector", "[1,2,3]", "--data", data, "--json")
    assert code == 1 and json.loads(err)["error"]["code"] == "dimension_mismatch"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append(prefix + (name,))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, prefix + (name,))
    return out


@pytest.mark.parametrize("path", _commands(main), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    code, out, _ = run(*path, "--help")
    assert code == 0 and "Usage:" in out
    cmd: click.Command = main
    for part in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[part]
    assert cmd.help, f"likewise {' '.join(path)} has no help text"

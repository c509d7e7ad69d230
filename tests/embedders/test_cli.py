"""The ``embed`` command, invoked directly with click's CliRunner on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from likewise.embedders.cli import embed


def test_one_text_as_json(tiny_text_model: Path) -> None:
    result = CliRunner().invoke(embed, ["hello world", "--model", str(tiny_text_model), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dimensions"] == 32 and len(doc["vector"]) == 32
    assert abs(np.linalg.norm(doc["vector"]) - 1) < 1e-5


def test_one_text_summary(tiny_text_model: Path) -> None:
    result = CliRunner().invoke(embed, ["hello world", "-m", str(tiny_text_model), "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "32 dimensions" in result.stdout


def test_file_to_npy_with_cache(tiny_text_model: Path, tmp_path: Path) -> None:
    lines = [f"line number {i} of the file" for i in range(300)] + ["", "line number 1 of the file"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "vecs.npy"
    args = ["--file", str(source), "--out", str(out), "--model", str(tiny_text_model), "--json"]
    result = CliRunner().invoke(embed, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    vectors = np.load(out)
    assert vectors.shape == (len(lines), 32) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[1], vectors[-1])
    assert summary["count"] == len(lines) and summary["texts_per_second"] > 0
    # Every distinct line missed; the repeated one is a hit if the CLI's chunks put it apart from
    # its first copy (the chunk size follows the device's batch size), else a second miss.
    cache = summary["cache"]
    assert cache["hits"] + cache["misses"] == len(lines) and cache["misses"] >= len(set(lines))

    # Second run: everything comes from the persistent cache; the human summary says so.
    result = CliRunner().invoke(embed, args[:-1])
    assert result.exit_code == 0, result.output
    assert f"{len(lines)} hits, 0 misses" in result.output and "texts/s" in result.output
    np.testing.assert_array_equal(np.load(out), vectors)


def test_file_to_json_lines(tiny_text_model: Path, tmp_path: Path) -> None:
    source = tmp_path / "t.txt"
    source.write_text("alpha\nbeta\n", encoding="utf-8")
    result = CliRunner().invoke(embed, ["-f", str(source), "-m", str(tiny_text_model)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["alpha", "beta"] and len(rows[0]["vector"]) == 32


def test_usage_and_model_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(embed, []).exit_code == 2
    result = runner.invoke(embed, ["x", "--model", str(tmp_path / "absent")])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert "Embed TEXT" in runner.invoke(embed, ["--help"]).output

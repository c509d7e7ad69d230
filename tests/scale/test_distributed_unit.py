"""The parts of likewise.distributed that need no Ray: routing, manifest, clocks, cursors, the shard class.

Not marked ``ray``: these run in every plain ``pytest``, Ray installed or not.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import likewise
from likewise import errors as E
from likewise.distributed import ShardUnavailableError, shard_of
from likewise.distributed.common import (
    check_shard_count,
    create_manifest,
    decode_cursor,
    encode_cursor,
    format_clock,
    parse_clock,
    read_manifest,
    route,
)
from likewise.distributed.shard import ShardActor

# blake2b-64 of the UTF-8 id, mod N: pinned, since a change would misroute existing databases' ids.
PINNED_4 = [3, 1, 1, 2, 3]
PINNED_1000 = [343, 333, 713, 858, 335]


def test_import_likewise_never_imports_ray() -> None:
    code = "import sys, likewise, likewise.distributed; assert 'ray' not in sys.modules, 'ray was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_routing_is_stable_and_balanced() -> None:
    # Fixed values: a change of routing would send ids of existing databases to the wrong shard.
    ids = ("a", "b", "seinfeld", "v1", "ü")
    assert [shard_of(v, 4) for v in ids] == PINNED_4
    assert [shard_of(v, 1000) for v in ids] == PINNED_1000
    counts = [0] * 4
    for i in range(4000):
        counts[shard_of(f"id{i}", 4)] += 1
    assert min(counts) > 900
    groups = route(["x", "y", "z", "x2"], 2)
    assert sorted(p for ps in groups.values() for p in ps) == [0, 1, 2, 3]
    assert all(shard_of(["x", "y", "z", "x2"][p], 2) == s for s, ps in groups.items() for p in ps)


def test_manifest(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    m = create_manifest(tmp_path, 3)
    assert read_manifest(tmp_path) == m
    assert create_manifest(tmp_path, 5) == m  # never replaced
    assert check_shard_count(m, None, tmp_path) == 3
    with pytest.raises(E.InvalidArgumentError, match="3 shards"):
        check_shard_count(m, 4, tmp_path)
    (tmp_path / "likewise-shards.json").write_text("{")
    with pytest.raises(E.CorruptionError):
        read_manifest(tmp_path)


def test_clocks_and_cursors() -> None:
    assert format_clock([0, 0]) is None and format_clock([3, 0, 7]) == "3.0.7"
    assert parse_clock("3.0.7", 3) == [3, 0, 7] and parse_clock(None, 2) == [0, 0]
    now = time.time()
    c = encode_cursor("db", "idx", "v9", [4, 5], now + 60)
    assert decode_cursor(c, "db", "idx", 2, now) == ("v9", [4, 5], float(int(now + 60)))
    for bad in ("garbage", encode_cursor("db", "other", "v", [1, 2], now + 60), encode_cursor("db", "idx", "v", [1], now + 60)):
        with pytest.raises(E.InvalidCursorError):
            decode_cursor(bad, "db", "idx", 2, now)
    with pytest.raises(E.InvalidCursorError, match="expired"):
        decode_cursor(encode_cursor("db", "idx", "v", [1, 2], now - 1), "db", "idx", 2, now)


def test_shard_error_is_a_503_storage_error() -> None:
    err = ShardUnavailableError("down", shards=[1])
    assert isinstance(err, E.StorageError) and err.http_status == 503 and err.code == "shard_unavailable"


def test_shard_without_its_data_refuses_to_serve(tmp_path: Path) -> None:
    engine = likewise.EngineParams(background=False)
    shard = ShardActor(str(tmp_path), 1, 2, "db1", engine)
    with pytest.raises(ShardUnavailableError, match="no data"):
        shard.open()  # a restarted actor on a node without this shard's directory
    shard.initialize()
    shard.create_index("i", 2, "cosine", None, None, None)
    shard.upsert_arrays("i", ["a"], [[1.0, 0.0]], None, None, None)
    shard.close()
    again = ShardActor(str(tmp_path), 1, 2, "db1", engine)
    assert again.count("i") == 1  # reopened from disk on first use
    again.close()
    with pytest.raises(E.CorruptionError):
        ShardActor(str(tmp_path), 1, 2, "another-db", engine).open()


def test_serve_has_a_cluster_option() -> None:
    from click.testing import CliRunner

    from likewise.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--cluster" in result.output and "--shards" in result.output

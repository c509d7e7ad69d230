"""The web explorer over a sharded database: the map, a point's neighbours and search, over HTTP.

The explorer may only use the public ``Index`` interface (a sharded index has no engine in the
serving process), so it must draw the same picture and list the same neighbours for a sharded
index as for an embedded index holding the same vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import likewise
from likewise.server import create_app
from likewise.server.explorer import project
from likewise.server.testing import ThreadedServer

N, DIMS = 90, 8


def _fill(idx: Any) -> None:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((3, DIMS)) * 4
    genres = ["sitcom", "horror", "drama"]
    idx.upsert_arrays(
        [f"p{i:03d}" for i in range(N)],
        # Rows of very different lengths: the cosine picture must be of directions, not lengths.
        np.array([(centres[i % 3] + rng.standard_normal(DIMS)) * (1 + 10 * (i % 2)) for i in range(N)]),
        metadata=[{"genre": genres[i % 3], "i": i} for i in range(N)],
        texts=[f"a {genres[i % 3]} show, number {i}" for i in range(N)],
    )


def _explore(url: str, name: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=60) as http:
        listing = http.get("/explorer/api/indexes").json()["indexes"]
        found = http.get(f"/explorer/api/indexes/{name}/map", params={"limit": 60})
        assert found.status_code == 200, found.text
        near = http.post(f"/explorer/api/indexes/{name}/neighbors", json={"id": "p004", "top_k": 5})
        assert near.status_code == 200, near.text
        by_id = http.post(f"/explorer/api/indexes/{name}/search", json={"id": "p010", "top_k": 4})
        assert by_id.status_code == 200, by_id.text
        # No embedder bound: a text is read as an id (the explorer asks the index, not its private row).
        by_text = http.post(f"/explorer/api/indexes/{name}/search", json={"text": "p011", "top_k": 4})
        assert by_text.status_code == 200, by_text.text
    return {"listing": listing, "map": found.json(), "near": near.json(), "by_id": by_id.json(),
            "by_text": by_text.json()}


def test_prepared_uses_only_the_metric(tmp_path: Path) -> None:
    """Not marked ``ray``: the explorer's normalisation, from public facts, on an embedded index."""
    from likewise.server.explorer import _prepared

    with likewise.open(tmp_path / "db") as local:
        cos = local.create_index("cos", dimensions=3, metric="cosine")
        euc = local.create_index("euc", dimensions=3, metric="euclidean")
        assert not cos.has_embedder
        rows = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1e30, 0.0, 0.0]], dtype=np.float32)
        np.testing.assert_allclose(_prepared(cos, rows), [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        np.testing.assert_array_equal(_prepared(euc, rows), rows)
        assert _prepared(cos, np.zeros((0, 3), np.float32)).shape == (0, 3)


@pytest.mark.ray
def test_explorer_on_a_sharded_index_matches_embedded(db: Any, tmp_path: Path) -> None:
    sharded = db.create_index("explore", dimensions=DIMS, metric="cosine")
    _fill(sharded)
    assert not sharded.has_embedder
    with ThreadedServer(create_app(db, close_db=False)) as server:
        got = _explore(server.url, "explore")

    assert {i["name"]: i["vector_count"] for i in got["listing"]}["explore"] == N
    m = got["map"]
    assert (m["total"], m["sampled"], m["metric"]) == (N, 60, "cosine")
    assert set(m["fields"]) == {"genre", "i"}
    xy = np.array([[p["x"], p["y"]] for p in m["points"]])
    assert xy.shape == (60, 2) and np.isfinite(xy).all() and np.ptp(xy, axis=0).min() > 0.1
    neighbours = got["near"]["neighbors"]
    assert len(neighbours) == 5 and "p004" not in [n["id"] for n in neighbours]
    assert all(n["x"] is not None and n["y"] is not None and n["metadata"]["genre"] for n in neighbours)
    assert [n["score"] for n in neighbours] == sorted((n["score"] for n in neighbours), reverse=True)
    assert got["by_id"]["by"] == "id" and got["by_id"]["matches"][0]["id"] == "p010"
    assert got["by_text"]["by"] == "id" and got["by_text"]["matches"][0]["id"] == "p011"
    assert got["by_id"]["matches"][0]["text"] == "a horror show, number 10"

    # The same vectors in an embedded index: the same sample, the same picture, the same neighbours.
    local_db = likewise.open(tmp_path / "embedded")
    try:
        local = local_db.create_index("explore", dimensions=DIMS, metric="cosine")
        _fill(local)
        with ThreadedServer(create_app(local_db, close_db=False)) as server:
            want = _explore(server.url, "explore")
        assert [p["id"] for p in m["points"]] == [p["id"] for p in want["map"]["points"]]
        want_xy = np.array([[p["x"], p["y"]] for p in want["map"]["points"]])
        np.testing.assert_allclose(xy, want_xy, atol=1e-4)
        assert [n["id"] for n in neighbours] == [n["id"] for n in want["near"]["neighbors"]]
        np.testing.assert_allclose(
            [[n["x"], n["y"]] for n in neighbours], [[n["x"], n["y"]] for n in want["near"]["neighbors"]], atol=1e-4
        )
        # The projection is cached per index object: two indexes called "explore" never share one.
        assert project(local, limit=60) is not project(sharded, limit=60)
    finally:
        local_db.close()

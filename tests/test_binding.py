"""Indexes that embed: an index bound to an embedder embeds on upsert and query, and keeps it on reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

import likewise
from likewise import errors as E
from likewise.embedders import ItemEmbedder, RecordEmbedder

CITIES = {
    "vancouver": {"lat": 49.2611, "lon": -123.1139, "population": 662248},
    "burnaby": {"lat": 49.2667, "lon": -122.9667, "population": 249125},
    "seattle": {"lat": 47.6062, "lon": -122.3321, "population": 749256},
    "portland": {"lat": 45.5152, "lon": -122.6784, "population": 652503},
}


def test_record_index_embeds_and_survives_reopen(tmp_path: Path) -> None:
    emb = RecordEmbedder({"lat": "number", "lon": "number"}, scaling="none").fit(list(CITIES.values()))
    with likewise.open(tmp_path / "d") as db:
        idx = db.create_index("cities", embedder=emb)
        assert (idx.dimensions, idx.metric) == (emb.dimensions, "euclidean")
        idx.upsert_records([(name, rec, {"population": rec["population"]}) for name, rec in CITIES.items()])
        res = idx.query_record(CITIES["vancouver"], top_k=2)
        assert res.ids == ["vancouver", "burnaby"]
    with likewise.open(tmp_path / "d") as db:
        idx = db.index("cities")
        assert idx.query_record(CITIES["vancouver"], top_k=2).ids == ["vancouver", "burnaby"]
        assert idx.query_record(CITIES["vancouver"], top_k=1, filter={"population": {"$gt": 700000}}).ids == ["seattle"]


def test_item_index_upserts_learned_vectors(tmp_path: Path) -> None:
    sessions = [["a", "b", "c"], ["a", "b"], ["x", "y", "z"], ["y", "z"]] * 20
    emb = ItemEmbedder(dimensions=8, epochs=5, progress=False).fit(sessions)
    with likewise.open(tmp_path / "d") as db:
        idx = db.create_index("items", embedder=emb)
        idx.upsert_items(metadata={"a": {"kind": "first"}})
        assert idx.info().vector_count == 6
        assert idx.get_by_ids(["a"])[0].metadata == {"kind": "first"}
    with likewise.open(tmp_path / "d") as db:
        assert db.index("items").embedder.vectors()[0] == emb.vectors()[0]


def test_index_without_embedder_says_so(tmp_path: Path) -> None:
    with likewise.open(tmp_path / "d") as db:
        idx = db.create_index("plain", dimensions=3)
        with pytest.raises(E.InvalidArgumentError, match="has no embedder"):
            idx.query_text("hello")
        with pytest.raises(E.InvalidArgumentError, match="disagrees"):
            db.create_index("bad", dimensions=3, embedder=RecordEmbedder({"a": "number"}, scaling="none"))
        with pytest.raises(E.InvalidArgumentError, match="not both"):
            db.create_index("bad", model="x", embedder=object())


def test_missing_model_fails_at_once(tmp_path: Path) -> None:
    with likewise.open(tmp_path / "d") as db:
        with pytest.raises(E.ModelNotFoundError):
            db.create_index("docs", model="nobody/no-such-model")
        assert db.list_indexes() == []


@pytest.mark.model
def test_text_index_with_bundled_model(tmp_path: Path) -> None:
    with likewise.open(tmp_path / "d") as db:
        idx = db.create_index("docs", model="sentence-transformers/all-MiniLM-L6-v2")
        assert (idx.dimensions, idx.metric, idx.config.model) == (384, "cosine", "sentence-transformers/all-MiniLM-L6-v2")
        idx.upsert_texts(
            [
                ("cat", "The cat sat on the mat and purred.", {"topic": "pets"}),
                ("stock", "Shares fell sharply on the stock exchange today.", {"topic": "finance"}),
                ("dog", "A puppy chased its tail in the garden.", {"topic": "pets"}),
            ]
        )
        assert idx.query_text("kitten sleeping on a rug", top_k=1).ids == ["cat"]
        assert idx.query_text("market crash", top_k=1).ids == ["stock"]
        assert idx.query_text("kitten", top_k=3, filter={"topic": "finance"}).ids == ["stock"]
    with likewise.open(tmp_path / "d") as db:
        assert db.index("docs").query_text("dogs playing outside", top_k=1).ids == ["dog"]
        assert (tmp_path / "d" / "embedding-cache.db").exists()

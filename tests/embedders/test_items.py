"""ItemEmbedder: planted communities are recovered, training is deterministic, state round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from likewise.embedders import ItemEmbedder
from likewise.errors import InvalidArgumentError, InvalidInputError

COMMUNITIES = ["sitcom", "horror", "documentary", "anime", "drama"]


def planted_interactions(
    seed: int = 0, users: int = 400, per: int = 20, noise: float = 0.15
) -> list[tuple[str, str]]:
    """Viewers of one community watch 8–15 of its shows, plus some random ones (noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        home = COMMUNITIES[rng.integers(len(COMMUNITIES))]
        for _ in range(rng.integers(8, 16)):
            community = (
                COMMUNITIES[rng.integers(len(COMMUNITIES))] if rng.random() < noise else home
            )
            rows.append((f"user{u}", f"{community}-{rng.integers(per)}"))
    return rows


def share_of_pure_neighbourhoods(ids: list[str], vectors: np.ndarray, k: int = 5) -> float:
    community = [i.split("-")[0] for i in ids]
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    pure = 0
    for i in range(len(ids)):
        neighbours = np.argsort(-sims[i])[:k]
        pure += all(community[j] == community[i] for j in neighbours)
    return pure / len(ids)


@pytest.fixture(scope="module")
def fitted() -> ItemEmbedder:
    return ItemEmbedder(dimensions=32, epochs=10, progress=False).fit(planted_interactions())


def test_planted_communities_are_recovered(fitted: ItemEmbedder) -> None:
    ids, vectors = fitted.vectors()
    assert len(ids) == 100 and vectors.shape == (100, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert share_of_pure_neighbourhoods(ids, vectors) >= 0.9
    assert fitted.losses[-1] < fitted.losses[0]


def test_deterministic_with_a_seed(fitted: ItemEmbedder) -> None:
    again = ItemEmbedder(dimensions=32, epochs=10, progress=False).fit(planted_interactions())
    np.testing.assert_array_equal(again.vectors()[1], fitted.vectors()[1])
    assert again.model_id == fitted.model_id
    one, two = (ItemEmbedder(dimensions=8, epochs=1, seed=s, progress=False) for s in (0, 1))
    rows = planted_interactions(users=50)
    assert not np.array_equal(one.fit(rows).vectors()[1], two.fit(rows).vectors()[1])


def test_sessions_and_weights() -> None:
    rng = np.random.default_rng(1)
    sessions = []
    for _ in range(300):
        home = COMMUNITIES[rng.integers(len(COMMUNITIES))]
        sessions.append([f"{home}-{rng.integers(20)}" for _ in range(rng.integers(4, 10))])
    emb = ItemEmbedder(dimensions=16, epochs=10, progress=False).fit(sessions)
    ids, vectors = emb.vectors()
    assert share_of_pure_neighbourhoods(ids, vectors) >= 0.9
    weighted = [{"user": u, "item": i, "weight": 2.0} for u, i in planted_interactions(users=50)]
    assert (
        ItemEmbedder(dimensions=8, epochs=1, progress=False).fit(weighted).vectors()[1].shape[1]
        == 8
    )


def test_save_load_and_embed(fitted: ItemEmbedder, tmp_path: Path) -> None:
    fitted.save(tmp_path / "items.json")
    again = ItemEmbedder.load(tmp_path / "items.json")
    np.testing.assert_array_equal(again.vectors()[1], fitted.vectors()[1])
    assert again.vectors()[0] == fitted.vectors()[0] and again.model_id == fitted.model_id
    np.testing.assert_array_equal(again.embed_batch(["sitcom-3"])[0], again.embed("sitcom-3"))
    from likewise.embedders import embedder_from_dict

    assert embedder_from_dict(fitted.to_dict()).model_id == fitted.model_id
    with pytest.raises(InvalidInputError, match="not in the training data"):
        again.embed_batch(["western-1"])


def test_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="not fitted"):
        ItemEmbedder().vectors()
    with pytest.raises(InvalidInputError, match="nothing to learn"):
        ItemEmbedder(progress=False).fit([("u1", "a"), ("u2", "b")])
    with pytest.raises(InvalidInputError, match="mixes"):
        ItemEmbedder(progress=False).fit([("u1", "a"), ["a", "b"]])
    with pytest.raises(InvalidInputError, match="weight"):
        ItemEmbedder(progress=False).fit([("u1", "a", -1.0)])

"""RecordEmbedder: the geography and TV facts from the issue, field types, scaling, persistence."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from likewise.embedders import Field, RecordEmbedder
from likewise.errors import InvalidArgumentError, InvalidInputError


def dms(d: float, m: float = 0, s: float = 0) -> float:
    return math.copysign(abs(d) + m / 60 + s / 3600, d)


VANCOUVER = {
    "name": "Vancouver",
    "lat": dms(49, 15, 40),
    "lon": dms(-123, 6, 50),
    "population": 662_248,
}
CITIES = [
    VANCOUVER,
    {"name": "Burnaby", "lat": dms(49, 16), "lon": dms(-122, 58), "population": 249_125},
    {"name": "Seattle", "lat": 47.6062, "lon": -122.3321, "population": 749_256},
    {"name": "Surrey", "lat": 49.1913, "lon": -122.8490, "population": 568_322},
    {"name": "Victoria", "lat": 48.4284, "lon": -123.3656, "population": 91_867},
    {"name": "Calgary", "lat": 51.0447, "lon": -114.0719, "population": 1_306_784},
    {"name": "Toronto", "lat": 43.6532, "lon": -79.3832, "population": 2_794_356},
]

SHOWS = [
    {
        "title": "Seinfeld",
        "genre": "sitcom",
        "year": 1989,
        "episode_length": "22-24",
        "seasons": 9,
        "episodes": 180,
    },
    {
        "title": "Wednesday",
        "genre": "horror",
        "year": 2022,
        "episode_length": "46-57",
        "seasons": 1,
        "episodes": 8,
    },
    {
        "title": "Cheers",
        "genre": "sitcom",
        "year": 1982,
        "episode_length": [21, 25],
        "seasons": 11,
        "episodes": 275,
    },
]


def nearest(vectors: np.ndarray, names: list[str], i: int) -> list[str]:
    distances = np.linalg.norm(vectors - vectors[i], axis=1)
    return [names[j] for j in np.argsort(distances) if j != i]


def test_burnaby_is_nearest_to_vancouver_by_latitude_and_longitude() -> None:
    cities = RecordEmbedder({"lat": "number", "lon": "number"}, scaling="none")
    vectors = cities.embed_batch(CITIES)  # scaling "none" needs no fit
    assert vectors.shape == (len(CITIES), 2) and cities.metric == "euclidean"
    assert nearest(vectors, [c["name"] for c in CITIES], 0)[0] == "Burnaby"


def test_adding_population_makes_seattle_nearer_than_burnaby() -> None:
    cities = RecordEmbedder(
        {"lat": "number", "lon": "number", "population": "number"}, scaling="none"
    )
    vectors = cities.embed_batch(CITIES)
    order = nearest(vectors, [c["name"] for c in CITIES], 0)
    assert order.index("Seattle") < order.index("Burnaby")


def test_cheers_is_nearest_to_seinfeld() -> None:
    shows = RecordEmbedder(
        {
            "genre": "category",
            "year": "number",
            "episode_length": "range",
            "seasons": "number",
            "episodes": "number",
        },
        scaling="standard",
        weights={"genre": 2.0},
    )
    vectors = shows.fit(SHOWS).embed_batch(SHOWS)
    assert nearest(vectors, [s["title"] for s in SHOWS], 0)[0] == "Cheers"
    assert shows.dimensions == vectors.shape[1] == 2 + 1 + 2 + 1 + 1
    assert shows.columns()[:2] == ["genre=sitcom", "genre=horror"]


def test_geo_distance_follows_the_earths_surface() -> None:
    places = RecordEmbedder({"where": "geo"}, scaling="none")
    records = [
        {"where": (VANCOUVER["lat"], VANCOUVER["lon"])},
        {"where": {"lat": 47.6062, "lng": -122.3321}},  # Seattle
        {"where": "49.2667, -122.9667"},  # Burnaby
        {"where": (0.0, 179.9)},
        {"where": (0.0, -179.9)},
    ]
    v = places.embed_batch(records)

    def km(i: int, j: int) -> float:
        return float(np.linalg.norm(v[i] - v[j]))

    assert km(0, 1) == pytest.approx(192, rel=0.03)  # Vancouver–Seattle great-circle ≈ 192 km
    assert km(0, 2) < km(0, 1)
    assert km(3, 4) == pytest.approx(22.2, rel=0.01)  # across the antimeridian: near, not 40,000 km


def test_geo_standard_scaling_keeps_geometry() -> None:
    places = RecordEmbedder({"where": "geo"}, scaling="standard")
    records = [{"where": (c["lat"], c["lon"])} for c in CITIES]
    raw = RecordEmbedder({"where": "geo"}, scaling="none").embed_batch(records)
    scaled = places.fit(records).embed_batch(records)
    d_raw = np.linalg.norm(raw[:, None] - raw[None], axis=2)
    d_scaled = np.linalg.norm(scaled[:, None] - scaled[None], axis=2)
    ratio = d_scaled[d_raw > 0] / d_raw[d_raw > 0]
    # One common scale: distances keep their proportions.
    assert np.allclose(ratio, ratio[0], rtol=1e-3)


def test_category_unseen_and_multi_values() -> None:
    emb = RecordEmbedder({"genre": "category"}).fit([{"genre": "sitcom"}, {"genre": "horror"}])
    v = emb.embed_batch([{"genre": "western"}, {"genre": ["sitcom", "horror"]}, {}])
    np.testing.assert_array_equal(v[0], [0, 0])
    np.testing.assert_allclose(v[1], [1 / math.sqrt(2)] * 2, rtol=1e-6)
    np.testing.assert_array_equal(v[2], [0, 0])
    assert emb.unseen == {"genre": 1}


def test_declared_categories_need_no_fit() -> None:
    emb = RecordEmbedder({"genre": Field("category", values=("a", "b", "c"))}, scaling="none")
    np.testing.assert_array_equal(emb.embed_batch([{"genre": "b"}]), [[0, 1, 0]])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("22-24", (22, 24)),
        ("22 – 24", (22, 24)),
        ([24, 22], (22, 24)),
        (30, (30, 30)),
        ("-5 to 5", (-5, 5)),
    ],
)
def test_range_forms(value: Any, expected: tuple[float, float]) -> None:
    emb = RecordEmbedder({"r": "range"}, scaling="none")
    np.testing.assert_allclose(emb.embed_batch([{"r": value}])[0] * math.sqrt(2), expected)


def test_minmax_scaling_and_missing_values_take_the_mean() -> None:
    records = [{"x": 0}, {"x": 10}, {"x": 5}]
    emb = RecordEmbedder({"x": "number"}, scaling="minmax").fit(records)
    np.testing.assert_allclose(emb.embed_batch(records + [{}])[:, 0], [0, 1, 0.5, 0.5])


def test_text_fields_use_the_text_embedder(fake_text: Any) -> None:
    emb = RecordEmbedder(
        {"title": "text", "year": "number"}, text_embedder=fake_text, weights={"title": 3}
    )
    records = [{"title": "Seinfeld", "year": 1989}, {"title": "Cheers", "year": 1982}]
    v = emb.fit(records).embed_batch(records)
    assert v.shape == (2, fake_text.dimensions + 1)
    np.testing.assert_allclose(np.linalg.norm(v[:, :-1], axis=1), 3.0, rtol=1e-5)


def test_save_and_load_reproduce_the_vectors(tmp_path: Path) -> None:
    spec = {
        "genre": "category",
        "year": "number",
        "episode_length": "range",
        "seasons": "number",
        "episodes": "number",
    }
    shows = RecordEmbedder(spec, scaling="standard", weights={"genre": 2.0}).fit(SHOWS)
    shows.save(tmp_path / "shows.json")
    again = RecordEmbedder.load(tmp_path / "shows.json")
    np.testing.assert_array_equal(shows.embed_batch(SHOWS), again.embed_batch(SHOWS))
    assert again.model_id == shows.model_id and again.dimensions == shows.dimensions
    assert RecordEmbedder.from_dict(shows.to_dict()).fields == shows.fields
    from likewise.embedders import embedder_from_dict

    via_dispatch = embedder_from_dict(json.loads(json.dumps(shows.to_dict())))
    assert via_dispatch.model_id == shows.model_id


def test_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="fit"):
        RecordEmbedder({"genre": "category"}).embed_batch([{"genre": "x"}])
    with pytest.raises(InvalidArgumentError, match="unknown field type"):
        RecordEmbedder({"x": "colour"})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="unknown field"):
        RecordEmbedder({"x": "number"}, weights={"y": 2})
    with pytest.raises(InvalidInputError, match="must be a number"):
        RecordEmbedder({"x": "number"}, scaling="none").embed_batch([{"x": "ten"}])
    with pytest.raises(InvalidInputError, match="latitude"):
        RecordEmbedder({"g": "geo"}, scaling="none").embed_batch([{"g": (91, 0)}])
    with pytest.raises(InvalidInputError, match="fit"):
        RecordEmbedder({"x": "number"}, scaling="none").embed_batch([{}])

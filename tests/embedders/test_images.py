"""ImageEmbedder on a tiny random CLIP built by the fixture: images and queries share one space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from likewise.embedders import ImageEmbedder
from likewise.errors import InvalidInputError


@pytest.fixture(scope="module")
def clip(tiny_clip_model: Path) -> ImageEmbedder:
    return ImageEmbedder(tiny_clip_model, batch_size=2)


def picture(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_images_from_files_pil_and_arrays(clip: ImageEmbedder, tmp_path: Path) -> None:
    picture(1).save(tmp_path / "one.png")
    picture(2).convert("L").save(tmp_path / "grey.jpg")  # grey files become RGB
    array = np.asarray(picture(3))
    vectors = clip.embed_batch(
        [tmp_path / "one.png", str(tmp_path / "grey.jpg"), picture(1), array, picture(4)]
    )
    assert vectors.shape == (5, 16) and vectors.dtype == np.float32 and clip.dimensions == 16
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-5)  # same picture, file or object
    assert float(vectors[0] @ vectors[4]) < 0.9999


def test_text_side_shares_the_space(clip: ImageEmbedder) -> None:
    texts = clip.text_embedder()
    assert (texts.model_id, texts.dimensions, texts.metric) == (clip.model_id, 16, "cosine")
    queries = texts.embed_batch(["a photo of a cat", "a red car", "a photo of a cat"])
    assert queries.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(queries[0], queries[2], atol=1e-6)
    # Scores against images are plain dot products in the shared space.
    scores = queries @ clip.embed_batch([picture(5), picture(6)]).T
    assert scores.shape == (3, 2) and np.all(np.abs(scores) <= 1.0 + 1e-5)


def test_bad_inputs(clip: ImageEmbedder, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        clip.embed_batch([tmp_path / "missing.png"])
    (tmp_path / "not-an-image.png").write_text("hello")
    with pytest.raises(InvalidInputError, match="cannot read"):
        clip.embed_batch([tmp_path / "not-an-image.png"])
    with pytest.raises(InvalidInputError, match="PIL image"):
        clip.embed_batch([42])


def test_to_dict_round_trip(clip: ImageEmbedder) -> None:
    from likewise.embedders import embedder_from_dict

    again = embedder_from_dict(clip.to_dict())
    assert isinstance(again, ImageEmbedder) and again.model_id == clip.model_id
    np.testing.assert_allclose(again.embed(picture(9)), clip.embed(picture(9)), atol=1e-6)

"""Images and the texts that find them: :class:`ImageEmbedder` (CLIP-style models).

A CLIP-style model has two towers trained into one space: images go through the vision tower,
queries through the text tower, and a text lands near the images it describes. This module runs a
local model of that kind with transformers (``AutoModel`` exposing ``get_image_features`` and
``get_text_features``: CLIP, and models built like it), its image processor, and its tokenizer:

    images = ImageEmbedder("/models/clip-vit-base-patch32")
    vectors = images.embed_batch(["cat.jpg", pil_image])      # unit vectors
    query = images.text_embedder().embed("a photo of a cat")  # same space

Inputs may be file paths, ``PIL.Image`` objects or ``HxWx3`` uint8 arrays. Models resolve like text
models (a local folder or the local Hugging Face cache; never a download). Needs the ``images``
extra (Pillow) on top of ``embed`` (torch, transformers).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from likewise.embedders.base import (
    Embedder,
    FloatMatrix,
    Metric,
    l2_normalize,
    quiet_transformers,
    require,
)
from likewise.embedders.models import resolve_model
from likewise.errors import InvalidArgumentError, InvalidInputError

__all__ = ["ImageEmbedder", "ImageInput", "ImageTextEmbedder"]

_FORMAT = "likewise.images/1"

#: What :meth:`ImageEmbedder.embed_batch` accepts: a path, a ``PIL.Image.Image`` or an array.
ImageInput = Any


def _features(output: Any) -> Any:
    # transformers < 5 returns the projected tensor; 5.x a ModelOutput whose pooler_output it is.
    return output if hasattr(output, "shape") else output.pooler_output


class ImageEmbedder(Embedder[ImageInput]):
    """Embeds images with a local CLIP-style model; :meth:`text_embedder` embeds queries.

    ``model`` is a local folder or a Hugging Face id present in the local cache. ``device`` defaults
    to ``cuda`` when available, else ``cpu``. Vectors are float32 and L2-normalised.
    """

    metric: Metric = "cosine"

    def __init__(
        self, model: str | os.PathLike[str], *, device: str | None = None, batch_size: int = 32
    ) -> None:
        if batch_size < 1:
            raise InvalidArgumentError("batch_size must be at least 1")
        self.resolved = resolve_model(os.fspath(model))
        self.model_id = self.resolved.model_id
        self.batch_size = batch_size
        torch = require("torch", "embed", "Image embedding")
        transformers = require("transformers", "embed", "Image embedding")
        self._image = require("PIL.Image", "images", "Image embedding")
        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = str(self.resolved.path)
        with quiet_transformers(transformers):
            self._model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        if not (
            hasattr(self._model, "get_image_features") and hasattr(self._model, "get_text_features")
        ):
            raise InvalidArgumentError(
                f"{self.model_id} is a {type(self._model).__name__}, not a CLIP-style model with "
                "image and text towers",
                model=self.model_id,
            )
        self._model.to(self.device).eval()
        self._processor = transformers.AutoImageProcessor.from_pretrained(
            path, local_files_only=True
        )
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        config = self._model.config
        self.dimensions = int(getattr(config, "projection_dim", 0) or self._probe_width())
        limit = getattr(getattr(config, "text_config", None), "max_position_embeddings", None)
        self.max_text_tokens: int | None = int(limit) if limit else None

    def _probe_width(self) -> int:
        return int(self.embed_texts(["width"]).shape[1])

    def _load(self, item: ImageInput, i: int) -> Any:
        pil = self._image
        if isinstance(item, (str, os.PathLike)):
            file = Path(item)
            if not file.is_file():
                raise InvalidInputError(f"image {i}: no such file {str(file)!r}", position=i)
            try:
                with pil.open(file) as img:
                    return img.convert("RGB")
            except OSError as exc:
                raise InvalidInputError(f"image {i}: cannot read {str(file)!r}: {exc}") from exc
        if isinstance(item, pil.Image):
            return item.convert("RGB")
        if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[2] in (3, 4):
            return pil.fromarray(item.astype(np.uint8)).convert("RGB")
        raise InvalidInputError(
            f"image {i} is a {type(item).__name__}; pass a path, a PIL image or an HxWx3 array",
            position=i,
        )

    def embed_batch(self, items: Sequence[ImageInput]) -> FloatMatrix:
        """Embed images; float32 ``[n, dimensions]``, unit rows, in input order."""
        torch = self._torch
        images = list(items)
        out = np.empty((len(images), self.dimensions), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            batch = [
                self._load(x, start + i)
                for i, x in enumerate(images[start : start + self.batch_size])
            ]
            pixels = self._processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                feats = _features(
                    self._model.get_image_features(pixel_values=pixels.to(self.device))
                )
            out[start : start + len(batch)] = feats.float().cpu().numpy()
        return l2_normalize(out)

    def embed_texts(self, texts: Sequence[str]) -> FloatMatrix:
        """Embed text queries into the image space; float32 ``[n, dimensions]``, unit rows."""
        torch = self._torch
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError(
                    f"text {i} is a {type(t).__name__}, not a string", position=i
                )
        rows = []
        for start in range(0, len(texts), self.batch_size):
            enc = self._tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_text_tokens,
                return_tensors="pt",
            )
            with torch.inference_mode():
                feats = _features(
                    self._model.get_text_features(
                        input_ids=enc["input_ids"].to(self.device),
                        attention_mask=enc["attention_mask"].to(self.device),
                    )
                )
            rows.append(feats.float().cpu().numpy())
        if not rows:
            return np.zeros((0, getattr(self, "dimensions", 0)), dtype=np.float32)
        return l2_normalize(np.concatenate(rows))

    def to_dict(self) -> dict[str, Any]:
        """The model behind the vectors, as JSON-safe data (for :meth:`from_dict`)."""
        return {"format": _FORMAT, "model": self.model_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **options: Any) -> ImageEmbedder:
        """Reopen the model :meth:`to_dict` described (``options``: ``device``, ``batch_size``)."""
        if data.get("format") != _FORMAT:
            raise InvalidArgumentError(
                f"not a saved ImageEmbedder (format {data.get('format')!r}, expected {_FORMAT!r})"
            )
        return cls(data["model"], **options)

    def text_embedder(self) -> ImageTextEmbedder:
        """An ``Embedder[str]`` for queries, sharing this model and its vector space."""
        return ImageTextEmbedder(self)


class ImageTextEmbedder(Embedder[str]):
    """The text tower of an :class:`ImageEmbedder`: queries embedded into the image space.

    It has the image embedder's ``model_id`` and ``dimensions``: its vectors belong in the same
    index as the images'.
    """

    metric: Metric = "cosine"

    def __init__(self, images: ImageEmbedder) -> None:
        self.images = images
        self.model_id = images.model_id
        self.dimensions = images.dimensions

    def embed_batch(self, items: Sequence[str]) -> FloatMatrix:
        return self.images.embed_texts(items)

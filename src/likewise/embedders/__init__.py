"""Embedders: texts, records, items and images in; float32 vectors out.

Every embedder implements :class:`Embedder` (one abstract method, ``embed_batch``) and carries a
``model_id``, its ``dimensions`` and the ``metric`` its vectors are meant for::

    from likewise.embedders import TextEmbedder, RecordEmbedder, ItemEmbedder, ImageEmbedder
    te = TextEmbedder()                        # all-MiniLM-L6-v2, 384-d, offline
    te.embed_batch(["a text", "another"])      # float32 [2, 384], unit rows

Heavy dependencies (torch, onnxruntime, transformers, Pillow) are imported only when a model is
loaded; a missing one raises :class:`~likewise.errors.MissingDependencyError` naming the extra.
"""

from likewise.embedders.base import Embedder, Metric, embedder_from_dict
from likewise.embedders.cache import CachedEmbedder, CacheStats, EmbeddingCache
from likewise.embedders.images import ImageEmbedder, ImageTextEmbedder
from likewise.embedders.items import ItemEmbedder
from likewise.embedders.models import (
    DEFAULT_TEXT_MODEL,
    MODEL_ALIASES,
    ResolvedModel,
    canonical_model_id,
    resolve_model,
)
from likewise.embedders.records import Field, RecordEmbedder
from likewise.embedders.text import TextEmbedder

__all__ = [
    "DEFAULT_TEXT_MODEL",
    "MODEL_ALIASES",
    "CacheStats",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "Field",
    "ImageEmbedder",
    "ImageTextEmbedder",
    "ItemEmbedder",
    "Metric",
    "RecordEmbedder",
    "ResolvedModel",
    "TextEmbedder",
    "canonical_model_id",
    "embedder_from_dict",
    "resolve_model",
]

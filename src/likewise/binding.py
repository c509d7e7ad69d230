"""Indexes that embed for you: which embedder an index is bound to, and how it is saved and rebuilt.

An index created with ``model=`` (a text model) or ``embedder=`` (a fitted record, item or image
embedder) records that embedder in its configuration — a model id, or the embedder's fitted state
from ``to_dict()`` — so that it comes back, encoding exactly as before, when the database is opened
again. Text embedding goes through the database's persistent embedding cache, so nothing is
embedded twice.

Only this module and :mod:`likewise.embedders` know embedder classes; ``index.py`` asks for
"the embedder of this index" and calls ``embed_batch`` on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .errors import InvalidArgumentError, MissingDependencyError

__all__ = ["describe_embedder", "text_embedder_config", "build_embedder", "EMBEDDER_KEY"]

EMBEDDER_KEY = "embedder"


def _embedders() -> Any:
    try:
        from . import embedders
    except ImportError as exc:  # pragma: no cover - the package ships embedders
        raise MissingDependencyError(
            f"embedding needs the optional dependencies: pip install 'likewise[embed]' ({exc})"
        ) from exc
    return embedders


def text_embedder_config(model: str, cache_path: Path) -> tuple[dict[str, Any], int, str]:
    """Resolve a text model (a Hugging Face id, a path or a ``@cf/...`` name) to a configuration.

    Returns the configuration to store, the model's dimensions and its metric. Raises
    :class:`~likewise.errors.ModelNotFoundError` at once when the model is not on this machine.
    """
    emb = _embedders().TextEmbedder(model, cache=cache_path)
    return {"kind": "text", "model": emb.model_id}, int(emb.dimensions), str(getattr(emb, "metric", "cosine"))


def describe_embedder(embedder: Any) -> tuple[dict[str, Any], int, str]:
    """The configuration that rebuilds ``embedder``, its dimensions and its metric."""
    mod = _embedders()
    dims, metric = int(embedder.dimensions), str(getattr(embedder, "metric", "cosine"))
    if isinstance(embedder, mod.TextEmbedder):
        return {"kind": "text", "model": embedder.model_id}, dims, metric
    for kind, cls_name in (("records", "RecordEmbedder"), ("items", "ItemEmbedder")):
        cls = getattr(mod, cls_name, None)
        if cls is not None and isinstance(embedder, cls):
            return {"kind": kind, "state": embedder.to_dict()}, dims, metric
    image_cls = getattr(mod, "ImageEmbedder", None)
    if image_cls is not None and isinstance(embedder, image_cls):
        return {"kind": "images", "model": embedder.model_id}, dims, metric
    raise InvalidArgumentError(
        f"cannot bind an index to {type(embedder).__name__}: expected a TextEmbedder, RecordEmbedder, "
        "ItemEmbedder or ImageEmbedder"
    )


def build_embedder(config: Mapping[str, Any], cache_path: Path) -> Any:
    """Rebuild the embedder an index was bound to from its stored configuration."""
    mod = _embedders()
    kind = config.get("kind")
    if kind == "text":
        return mod.TextEmbedder(config["model"], cache=cache_path)
    if kind == "records":
        return mod.RecordEmbedder.from_dict(config["state"])
    if kind == "items":
        return mod.ItemEmbedder.from_dict(config["state"])
    if kind == "images":
        return mod.ImageEmbedder(config["model"])
    raise InvalidArgumentError(f"unknown embedder kind {kind!r} in the index configuration")

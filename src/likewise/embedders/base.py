"""The embedder plugin interface, and the small helpers every embedder shares.

An embedder turns a batch of objects (texts, records, item ids, images) into a float32 matrix
``[n, dimensions]``. :class:`Embedder` has exactly one abstract method, :meth:`Embedder.embed_batch`;
everything else (``embed`` for one object, ``embed_chunks`` for a long stream) is derived from it, so
a plugin writes one method and gets the rest (the shape of llm's ``EmbeddingModel.embed_batch``).

This module also owns the tiny pieces of plumbing the concrete embedders share: where likewise keeps
its caches on disk, L2 normalisation, and the error raised when an optional extra is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from likewise.errors import InvalidArgumentError, MissingDependencyError

__all__ = [
    "Embedder",
    "Metric",
    "cache_dir",
    "embedder_from_dict",
    "l2_normalize",
    "quiet_transformers",
    "require",
]

T_contra = TypeVar("T_contra", contravariant=True)

#: The metric under which an embedder's vectors are meant to be compared (Vectorize's names).
Metric = Literal["cosine", "euclidean", "dot-product"]

FloatMatrix = npt.NDArray[np.float32]


class Embedder(ABC, Generic[T_contra]):
    """Turns objects into vectors. Subclasses implement :meth:`embed_batch` only.

    Attributes every embedder sets:

    ``model_id``
        A stable name for what produced the vectors (a Hugging Face id, a path, ``records:…``).
        Caches and indexes key on it, so two embedders with the same ``model_id`` must agree.
    ``dimensions``
        The width ``d`` of every vector returned.
    ``metric``
        The metric the vectors are meant for: ``"cosine"`` for unit vectors (text, images, items),
        ``"euclidean"`` for structured records, whose distances carry the fields' units.
    """

    model_id: str
    dimensions: int
    metric: Metric = "cosine"

    @abstractmethod
    def embed_batch(self, items: Sequence[T_contra]) -> FloatMatrix:
        """Embed ``items``; returns float32 ``[len(items), dimensions]``, row ``i`` for item ``i``."""

    def embed(self, item: T_contra) -> FloatMatrix:
        """Embed one object; returns a float32 vector of length ``dimensions``."""
        row: FloatMatrix = self.embed_batch([item])[0]
        return row

    def embed_chunks(
        self, items: Iterable[T_contra], chunk_size: int = 1024
    ) -> Iterator[FloatMatrix]:
        """Embed a long (possibly lazy) stream ``chunk_size`` objects at a time.

        Yields one matrix per chunk, in order, so a caller can report progress or write vectors out
        without holding every object in memory.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        chunk: list[T_contra] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == chunk_size:
                yield self.embed_batch(chunk)
                chunk = []
        if chunk:
            yield self.embed_batch(chunk)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dimensions={self.dimensions})"


def embedder_from_dict(data: Mapping[str, Any], **options: Any) -> Embedder[Any]:
    """Rebuild any likewise embedder from its ``to_dict()`` output (dispatching on ``format``).

    This is what an index stores beside itself to embed later queries and upserts the same way.
    ``options`` go to text and image embedders (``backend``, ``device``, ``cache``…); a record
    embedder with text fields takes ``text_embedder``.
    """
    kind = str(data.get("format", "")).split("/")[0]
    if kind == "likewise.text":
        from likewise.embedders.text import TextEmbedder

        return TextEmbedder.from_dict(data, **options)
    if kind == "likewise.records":
        from likewise.embedders.records import RecordEmbedder

        return RecordEmbedder.from_dict(data, options.get("text_embedder"))
    if kind == "likewise.items":
        from likewise.embedders.items import ItemEmbedder

        return ItemEmbedder.from_dict(data)
    if kind == "likewise.images":
        from likewise.embedders.images import ImageEmbedder

        return ImageEmbedder.from_dict(data, **options)
    raise InvalidArgumentError(f"unknown embedder format {data.get('format')!r}")


def l2_normalize(matrix: npt.NDArray[np.floating]) -> FloatMatrix:
    """Rows scaled to unit length, as float32. All-zero rows stay zero instead of becoming NaN."""
    m = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    # A zero row (an empty input, a one-hot for an unseen value) has no direction; leave it at zero.
    np.maximum(norms, np.float32(1e-12), out=norms)
    return np.ascontiguousarray(m / norms, dtype=np.float32)


def cache_dir() -> Path:
    """Root of likewise's on-disk caches: ``$LIKEWISE_CACHE_DIR`` or ``~/.cache/likewise``."""
    configured = os.environ.get("LIKEWISE_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "likewise"


@contextlib.contextmanager
def quiet_transformers(transformers: Any) -> Iterator[None]:
    """Silence transformers' weight-loading progress bar, which would interleave with ours."""
    tlog = transformers.utils.logging
    was_enabled = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            tlog.enable_progress_bar()


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import an optional dependency, or say which likewise extra provides it.

    Heavy libraries (torch, onnxruntime, transformers) are imported through here, inside the
    functions that need them, so ``import likewise`` stays light.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the Python package {module!r}, which is not installed. "
            f"Install it with: pip install 'likewise[{extra}]'",
            module=module,
            extra=extra,
        ) from exc

"""The embedding models the service runs: name resolution, lazy loading, one instance per process.

A model is addressed by its Hugging Face id (``sentence-transformers/all-MiniLM-L6-v2`` is bundled
and the default). Workers AI names (``@cf/baai/bge-small-en-v1.5`` …) and Vectorize presets resolve
to Hugging Face ids. Models load on first use, once, under a per-model lock, because loading takes
seconds and several requests may ask at once.

The loader is :class:`likewise.embedders.TextEmbedder` unless the app is given a factory (tests use
a deterministic fake). Helpers here also count tokens for OpenAI's ``usage`` and find a model's input
limit, using whatever the embedder exposes and a conservative estimate otherwise.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "ModelRegistry",
    "Preset",
    "count_tokens",
    "max_input_tokens",
    "resolve_model_name",
    "token_report",
]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Workers AI ids -> Hugging Face ids. Used when likewise.embedders has no resolve_model (yet).
_ALIASES: dict[str, str] = {
    "@cf/baai/bge-small-en-v1.5": "BAAI/bge-small-en-v1.5",
    "@cf/baai/bge-base-en-v1.5": "BAAI/bge-base-en-v1.5",
    "@cf/baai/bge-large-en-v1.5": "BAAI/bge-large-en-v1.5",
    "@cf/baai/bge-m3": "BAAI/bge-m3",
    "all-minilm-l6-v2": DEFAULT_MODEL,
    "all-MiniLM-L6-v2": DEFAULT_MODEL,
}


@dataclass(frozen=True)
class Preset:
    """A Vectorize index preset: the dimensions and metric it implies and the model that fits."""

    name: str
    dimensions: int
    metric: str
    model: str


# Vectorize's presets. The metric is not documented; cosine is what these models are trained for.
# The two hosted third-party models have no local equivalent: the index records the preset name.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("@cf/baai/bge-small-en-v1.5", 384, "cosine", "BAAI/bge-small-en-v1.5"),
        Preset("@cf/baai/bge-base-en-v1.5", 768, "cosine", "BAAI/bge-base-en-v1.5"),
        Preset("@cf/baai/bge-large-en-v1.5", 1024, "cosine", "BAAI/bge-large-en-v1.5"),
        Preset("openai/text-embedding-ada-002", 1536, "cosine", "openai/text-embedding-ada-002"),
        Preset("cohere/embed-multilingual-v2.0", 768, "cosine", "cohere/embed-multilingual-v2.0"),
    )
}


def resolve_model_name(name: str) -> str:
    """The Hugging Face id for ``name`` (an HF id, a Workers AI ``@cf/…`` id or an alias)."""
    try:
        from ..embedders.models import canonical_model_id
    except ImportError:
        return _ALIASES.get(name, name)
    return canonical_model_id(name)  # unknown @cf/ names raise ModelNotFoundError listing the known ones


def _default_factory(model_id: str, **options: Any) -> Any:
    try:
        from ..embedders.text import TextEmbedder
    except ImportError as exc:
        raise MissingDependencyError(
            "text embedding needs likewise's embedders; install them with: pip install 'likewise[embed]'",
            extra="embed",
        ) from exc
    return TextEmbedder(model_id, **options)


class ModelRegistry:
    """Loads each model once per process, lazily; thread-safe."""

    def __init__(
        self,
        factory: Callable[..., Any] | None = None,
        default_model: str = DEFAULT_MODEL,
        cache_path: Any | None = None,
    ) -> None:
        if factory is None:
            # The data directory's persistent embedding cache: the same text is never embedded twice.
            factory = (lambda m, **o: _default_factory(m, cache=cache_path, **o)) if cache_path else _default_factory
        self._factory = factory
        self.default_model = default_model
        self._models: dict[tuple[str, str | None], Any] = {}
        self._locks: dict[tuple[str, str | None], threading.Lock] = {}
        self._guard = threading.Lock()

    def loaded(self) -> list[str]:
        return sorted({model_id for model_id, _ in self._models})

    def get(self, name: str | None = None, pooling: str | None = None) -> Any:
        """The embedder for ``name`` (default model when ``None``), loading it on first use.

        ``pooling`` other than ``None`` asks for that pooling instead of the model's own (Workers AI's
        ``"cls"``); it is a separate instance, since pooling is fixed when an embedder is built.
        """
        model_id = resolve_model_name(name or self.default_model)
        key = (model_id, pooling)
        found = self._models.get(key)
        if found is not None:
            return found
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._models.get(key)
            if found is None:
                try:
                    found = self._factory(model_id, pooling=pooling) if pooling else self._factory(model_id)
                except (ModelNotFoundError, MissingDependencyError):
                    raise
                except (OSError, ValueError, KeyError, LookupError) as exc:
                    # Weights that are neither bundled nor cached: offline, that is "no such model".
                    raise ModelNotFoundError(
                        f"model {name!r} is not available on this server: {exc}", model=name
                    ) from exc
                self._models[key] = found
        return found

    def embed(self, texts: Sequence[str], name: str | None = None, pooling: str | None = None) -> tuple[Any, np.ndarray]:
        """Embed ``texts`` with model ``name``; returns ``(embedder, float32 [n, d])``."""
        model = self.get(name, pooling)
        matrix = np.asarray(model.embed_batch(list(texts)), dtype=np.float32)
        return model, matrix


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def token_report(model: Any, texts: Sequence[str]) -> tuple[list[int], list[bool]]:
    """Tokens per text, and which texts exceed the model's input limit.

    Uses, in order: a public ``count_tokens(texts)``; the model's own tokenizer (TextEmbedder's,
    which marks truncated encodings as ``overflowing``); else a word-piece estimate, which is never
    used to refuse input (it could be wrong near the limit).
    """
    limit = max_input_tokens(model)
    counter = getattr(model, "count_tokens", None)
    if callable(counter):
        counts = [int(c) for c in counter(list(texts))]
        return counts, [limit is not None and c > limit for c in counts]
    load = getattr(model, "load", None)
    if callable(load):
        load()
        tokenizer = getattr(model, "_tokenizer", None)  # TextEmbedder's; see the report on a public API
        encode = getattr(tokenizer, "encode", None)
        if callable(encode):
            encodings, _ = encode(list(texts))
            return [len(e.ids) for e in encodings], [bool(getattr(e, "overflowing", None)) for e in encodings]
    # [CLS] + pieces + [SEP]; WordPiece splits long words, so count ~1 extra piece per 6 letters.
    return [2 + sum(1 + len(w) // 6 for w in _WORD.findall(t)) for t in texts], [False] * len(texts)


def count_tokens(model: Any, texts: Sequence[str]) -> list[int]:
    """Tokens per text, as well as the model can tell (see :func:`token_report`)."""
    return token_report(model, texts)[0]


def max_input_tokens(model: Any) -> int | None:
    """The model's input limit in tokens, if it says."""
    for attr in ("max_input_tokens", "max_length", "max_tokens", "max_seq_length"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None

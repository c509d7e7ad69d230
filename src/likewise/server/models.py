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
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import MissingDependencyError, ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "Preset",
    "PRESETS",
    "ModelRegistry",
    "resolve_model_name",
    "count_tokens",
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
        from ..embedders import resolve_model  # type: ignore[attr-defined]
    except ImportError:
        resolve_model = None
    if resolve_model is not None:
        try:
            return str(resolve_model(name))
        except (KeyError, ValueError, LookupError):
            pass
    return _ALIASES.get(name, name)


def _default_factory(model_id: str) -> Any:
    try:
        from ..embedders import TextEmbedder  # type: ignore[attr-defined]
    except ImportError as exc:
        raise MissingDependencyError(
            "text embedding needs likewise's embedders; install them with: pip install 'likewise[embed]'",
            extra="embed",
        ) from exc
    return TextEmbedder(model_id)


class ModelRegistry:
    """Loads each model once per process, lazily; thread-safe."""

    def __init__(
        self, factory: Callable[[str], Any] | None = None, default_model: str = DEFAULT_MODEL
    ) -> None:
        self._factory = factory or _default_factory
        self.default_model = default_model
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def loaded(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str | None = None) -> Any:
        """The embedder for ``name`` (default model when ``None``), loading it on first use."""
        model_id = resolve_model_name(name or self.default_model)
        found = self._models.get(model_id)
        if found is not None:
            return found
        with self._guard:
            lock = self._locks.setdefault(model_id, threading.Lock())
        with lock:
            found = self._models.get(model_id)
            if found is None:
                try:
                    found = self._factory(model_id)
                except (ModelNotFoundError, MissingDependencyError):
                    raise
                except (OSError, ValueError, KeyError, LookupError) as exc:
                    # Weights that are neither bundled nor cached: offline, that is "no such model".
                    raise ModelNotFoundError(
                        f"model {name!r} is not available on this server: {exc}", model=name
                    ) from exc
                self._models[model_id] = found
        return found

    def embed(self, texts: Sequence[str], name: str | None = None) -> tuple[Any, np.ndarray]:
        """Embed ``texts`` with model ``name``; returns ``(embedder, float32 [n, d])``."""
        model = self.get(name)
        matrix = np.asarray(model.embed_batch(list(texts)), dtype=np.float32)
        return model, matrix


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def count_tokens(model: Any, texts: Sequence[str]) -> list[int]:
    """Tokens per text as the model counts them when it can tell; otherwise a word-piece estimate."""
    counter = getattr(model, "count_tokens", None)
    if callable(counter):
        try:
            counts = counter(list(texts))
            if isinstance(counts, int):
                return [counts] if len(texts) == 1 else [counts // max(len(texts), 1)] * len(texts)
            return [int(c) for c in counts]
        except Exception:  # noqa: BLE001 - fall back to the estimate rather than fail a request
            pass
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        try:
            if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
                return [len(e.ids) for e in tokenizer.encode_batch(list(texts))]
            return [len(tokenizer(t)["input_ids"]) for t in texts]  # transformers tokenizer
        except Exception:  # noqa: BLE001
            pass
    # [CLS] + pieces + [SEP]; WordPiece splits long words, so count ~1 extra piece per 6 letters.
    return [2 + sum(1 + len(w) // 6 for w in _WORD.findall(t)) for t in texts]


def max_input_tokens(model: Any) -> int | None:
    """The model's input limit in tokens, if it says."""
    for attr in ("max_input_tokens", "max_tokens", "max_seq_length"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None

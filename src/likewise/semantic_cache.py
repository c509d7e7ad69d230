"""A semantic cache: reuse the answer of an expensive call for a question that means the same.

``SemanticCache(db, "answers", threshold=0.9, ttl=3600)`` keeps prompts in an index bound to a text
model. ``get(prompt)`` embeds the prompt and returns the stored answer of the nearest earlier prompt
when their cosine similarity reaches ``threshold`` and the entry has not expired; ``set`` stores one.
The answer is kept as the entry's text (no 10 KiB metadata limit), so any JSON-serialisable answer
fits. A threshold below :data:`SAFE_THRESHOLD` is refused unless ``allow_unsafe=True``, because with
all-MiniLM-L6-v2 "What is the capital of France?" scores 0.66 against "…of Germany?" and 0.71
against "What is the population of France?", while true paraphrases score 0.90–0.94: below that
line a cache starts answering questions nobody asked.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .errors import IndexNotFoundError, InvalidArgumentError, InvalidInputError

if TYPE_CHECKING:
    from .database import Database

__all__ = ["SemanticCache", "CacheHit", "SemanticCacheStats", "SAFE_THRESHOLD"]

SAFE_THRESHOLD = 0.85
NEVER = 2**53  # expiry of entries without a TTL (a float64-exact number, filterable)


@dataclass(frozen=True)
class CacheHit:
    """A cached answer and how close its prompt was."""

    answer: Any
    similarity: float
    prompt: str
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class SemanticCacheStats:
    hits: int
    misses: int
    entries: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class SemanticCache:
    """Answers keyed by meaning. Creates the index ``name`` (bound to ``model``) when missing."""

    def __init__(
        self,
        db: "Database",
        name: str = "semantic-cache",
        *,
        threshold: float = 0.9,
        ttl: float | None = None,
        model: str | None = None,
        allow_unsafe: bool = False,
    ) -> None:
        if not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
            raise InvalidArgumentError(f"threshold must be a cosine similarity in (0, 1]; got {threshold!r}")
        if threshold < SAFE_THRESHOLD:
            message = (
                f"threshold {threshold} is below {SAFE_THRESHOLD}: different questions on the same topic "
                "score that high with sentence embeddings, so the cache would return wrong answers"
            )
            if not allow_unsafe:
                raise InvalidArgumentError(message + " (pass allow_unsafe=True to accept the risk)")
            warnings.warn(message, stacklevel=2)
        if ttl is not None and not ttl > 0:
            raise InvalidArgumentError(f"ttl must be a positive number of seconds or None; got {ttl!r}")
        self.threshold = float(threshold)
        self.ttl = ttl
        try:
            self.index = db.index(name)
        except IndexNotFoundError:
            from .embedders.models import DEFAULT_TEXT_MODEL

            self.index = db.create_index(name, model=model or DEFAULT_TEXT_MODEL, description="semantic cache")
        if self.index.metric != "cosine":
            raise InvalidArgumentError(f"index {name!r} must use the cosine metric for a semantic cache")
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(prompt: str) -> str:
        return hashlib.sha256(prompt.encode()).hexdigest()[:32]

    def lookup(self, prompt: str) -> CacheHit | None:
        """The closest live entry at or above the threshold, or ``None`` (counted as hit or miss)."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInputError("a prompt must be a non-empty string")
        res = self.index.query_text(
            prompt, top_k=1, filter={"expires_at": {"$gt": time.time()}}, return_metadata="all"
        )
        if res.matches and res.matches[0].score >= self.threshold:
            match = res.matches[0]
            answer = self.index.texts([match.id]).get(match.id)
            if answer is not None:
                self.hits += 1
                meta = match.metadata or {}
                return CacheHit(json.loads(answer), match.score, meta.get("prompt", ""), meta.get("metadata"))
        self.misses += 1
        return None

    def get(self, prompt: str, default: Any = None) -> Any:
        """The cached answer for a prompt that means the same as ``prompt``, else ``default``."""
        hit = self.lookup(prompt)
        return default if hit is None else hit.answer

    def set(self, prompt: str, answer: Any, metadata: Mapping[str, Any] | None = None) -> str:
        """Store ``answer`` (anything JSON-serialisable) for ``prompt``. Returns the mutation id."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInputError("a prompt must be a non-empty string")
        try:
            text = json.dumps(answer, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"the answer must be JSON-serialisable: {exc}") from exc
        vector = self.index.embed_query(prompt)
        now = time.time()  # after embedding: a first call may spend seconds loading the model
        meta = {
            "prompt": prompt[:2000],
            "created_at": now,
            "expires_at": now + self.ttl if self.ttl else NEVER,
            "metadata": dict(metadata) if metadata else None,
        }
        return self.index.upsert_arrays([self._key(prompt)], vector.reshape(1, -1), metadata=[meta], texts=[text])

    def delete(self, prompt: str) -> str:
        """Forget the entry stored for exactly this prompt."""
        return self.index.delete_by_ids([self._key(prompt)])

    def purge_expired(self) -> int:
        """Delete expired entries; returns how many."""
        expired: list[str] = []
        cursor = None
        while True:
            page = self.index.list_vectors(count=1000, cursor=cursor)
            for v in self.index.get_by_ids(page.vectors):
                if (v.metadata or {}).get("expires_at", NEVER) <= time.time():
                    expired.append(v.id)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        if expired:
            self.index.delete_by_ids(expired)
        return len(expired)

    def stats(self) -> SemanticCacheStats:
        return SemanticCacheStats(self.hits, self.misses, self.index.info().vector_count)

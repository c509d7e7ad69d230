"""Search over texts: vector, keyword (BM25 from SQLite FTS5) and hybrid ranking, with snippets.

Hybrid ranking takes the top candidates of both rankers, then scores *every* candidate on *both*
signals exactly — cosine similarity from the stored vectors and BM25 from FTS5 — and combines them
as a convex combination of min-max-normalised scores. Reciprocal rank fusion only sees ranks, and a
candidate one ranker missed gets nothing from it; scoring the union on both signals keeps that
information (measured in docs/benchmarks.md, "retrieval": it beats plain RRF on the Debian task).
The weight ``alpha`` was tuned on a split of queries disjoint from the reported ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .errors import InvalidArgumentError, InvalidInputError
from .filters import parse_filter
from .validation import check_namespace, check_top_k

if TYPE_CHECKING:
    from .index import Index

__all__ = ["SearchHit", "SearchResult", "search", "fts_query", "MODES"]

MODES = ("vector", "keyword", "hybrid")
TOKEN = re.compile(r"\w+", re.UNICODE)
# A short English stop list: these words only add noise to BM25 on short queries.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the this to was "
    "were will with".split()
)
DEFAULT_ALPHA = 0.55  # chosen on the tuning split of the Debian retrieval task (docs/benchmarks.md)
CANDIDATES = 100


@dataclass
class SearchHit:
    """One ranked chunk or text."""

    id: str
    score: float
    text: str | None = None
    snippet: str | None = None
    source: str | None = None
    position: int | None = None
    metadata: dict[str, Any] | None = None
    vector_score: float | None = None
    keyword_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class SearchResult:
    hits: list[SearchHit] = field(default_factory=list)
    mode: str = "hybrid"

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "count": len(self.hits), "hits": [h.to_dict() for h in self.hits]}


def fts_query(text: str) -> str:
    """An FTS5 query that ORs the query's words (quoted, so no user text is FTS syntax)."""
    words = [w.lower() for w in TOKEN.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(kept))


def _lookup(matched: tuple[np.ndarray, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """The BM25 score of each label among ``matched`` (labels, scores); 0 for labels that did not match."""
    found, scores = matched
    if not len(found):
        return np.zeros(len(labels))
    order = np.argsort(found, kind="stable")
    at = np.minimum(np.searchsorted(found, labels, sorter=order), len(found) - 1)
    hit = found[order[at]] == labels
    return np.where(hit, scores[order[at]], 0.0)


def _normalise(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        return np.ones_like(values) if hi > 0 else np.zeros_like(values)
    return (values - lo) / (hi - lo)


def search(
    idx: "Index",
    text: str,
    *,
    mode: str = "hybrid",
    top_k: int = 10,
    filter: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    candidates: int = CANDIDATES,
    snippets: bool = True,
) -> SearchResult:
    """Rank the texts of ``idx`` for ``text``; see the module docstring for the hybrid formula."""
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("search needs a non-empty query text")
    if not 0.0 <= alpha <= 1.0:
        raise InvalidArgumentError(f"alpha must be between 0 and 1; got {alpha!r}")
    top_k = check_top_k(top_k)
    flt = parse_filter(filter)
    ns = check_namespace(namespace)
    engine, store, index_id = idx._engine, idx._store, idx._row.id
    pool = max(candidates, top_k)
    match = fts_query(text)

    vector_labels: list[int] = []
    query_vector: np.ndarray | None = None
    if mode != "keyword":
        query_vector = idx.embed_query(text)
        vector_labels = [label for _, label, _ in engine.search(query_vector, pool, flt, ns)]

    keyword_labels: list[int] = []
    matched = np.empty(0, np.int64), np.empty(0, np.float64)
    if mode != "vector" and match:
        matched = store.keyword_matches(index_id, match)
        ranked = matched[0][np.lexsort((matched[0], -matched[1]))]  # best first, ties by label
        start, step = 0, pool
        while len(keyword_labels) < pool and start < len(ranked):
            # admit (filter, namespace, deletions) in widening slices: cheap when most pass
            part = ranked[start : start + step]
            keyword_labels += part[engine.admits(part, flt, ns)].tolist()
            start, step = start + step, step * 4
        keyword_labels = keyword_labels[:pool]

    union = list(dict.fromkeys(vector_labels + keyword_labels)) if mode == "hybrid" else (
        vector_labels if mode == "vector" else keyword_labels
    )
    if not union:
        return SearchResult([], mode)
    labels_arr = np.array(union, dtype=np.int64)
    kw = _lookup(matched, labels_arr)
    if query_vector is not None:
        rows = engine.vectors_at(engine.positions_of(labels_arr))
        cos = rows @ engine.prepare(query_vector.reshape(1, -1))[0]
    else:
        cos = np.zeros(len(union))
    if mode == "vector":
        score = cos.astype(np.float64)
    elif mode == "keyword":
        score = kw
    else:
        score = alpha * _normalise(cos.astype(np.float64)) + (1 - alpha) * _normalise(kw)
    order = np.lexsort((np.arange(len(union)), -score))[:top_k]
    chosen = [union[i] for i in order]
    rows_by_label = store.by_labels(chosen)
    texts = store.texts(index_id, chosen)
    snips = store.snippets(index_id, chosen, match) if snippets and match else {}
    hits: list[SearchHit] = []
    for i in order.tolist():
        label = union[i]
        row = rows_by_label.get(label)
        if row is None:
            continue
        meta = json.loads(row.metadata) if row.metadata else {}
        body = texts.get(label)
        hits.append(
            SearchHit(
                id=row.id,
                score=float(score[i]),
                text=body,
                snippet=snips.get(label) or (body[:200] + ("…" if len(body) > 200 else "") if body else None),
                source=meta.get("source"),
                position=meta.get("position"),
                metadata=meta,
                vector_score=float(cos[i]) if query_vector is not None else None,
                keyword_score=float(kw[i]) if mode != "vector" else None,
            )
        )
    return SearchResult(hits, mode)

"""Learned item embeddings from behaviour: :class:`ItemEmbedder` (item2vec).

Items that the same people use, or that sit close together in the same sessions, should land close
together. This module trains that with a real torch embedding layer, skip-gram with negative
sampling (word2vec's objective, applied to items as "item2vec"):

* ``(user, item[, weight])`` rows are grouped per user into an unordered basket: any two items in
  one basket are a positive pair, weighted by the product of their weights;
* sessions (lists of items) are ordered: an item's context is the items within ``window`` steps;
* negatives are drawn from the item frequency distribution raised to 0.75, as in word2vec.

Everything random comes from one ``numpy`` generator seeded with ``seed`` (initial weights, pairs,
negatives, shuffling), so the same data and seed give the same vectors. The vectors returned are
the input embeddings, L2-normalised, meant for cosine similarity; :meth:`ItemEmbedder.vectors`
gives ``(ids, matrix)`` ready to upsert. The fitted state saves to JSON (vectors as base64 float32).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from likewise.embedders.base import Embedder, FloatMatrix, Metric, l2_normalize, require
from likewise.errors import InvalidArgumentError, InvalidInputError

__all__ = ["ItemEmbedder", "ItemTraining"]

Kind = Literal["auto", "interactions", "sessions"]
_FORMAT = "likewise.items/1"
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ItemTraining:
    """The training settings of an :class:`ItemEmbedder` (saved with it)."""

    dimensions: int = 32
    epochs: int = 20
    window: int = 5
    negatives: int = 5
    learning_rate: float = 0.02
    batch_size: int = 1024
    seed: int = 0


@dataclass
class _Corpus:
    """Baskets flattened: token i is item ``items[i]`` at ``pos[i]`` of a basket at ``start[i]``."""

    items: IntArray
    weights: npt.NDArray[np.float64]
    start: IntArray
    length: IntArray
    pos: IntArray
    ordered: bool


def _detect(row: Any) -> Kind:
    if isinstance(row, (Mapping, tuple)):
        return "interactions"
    if isinstance(row, Sequence) and not isinstance(row, (str, bytes)):
        return "sessions"
    raise InvalidInputError(
        f"cannot read {row!r}: give (user, item[, weight]) tuples, "
        "{'user', 'item', 'weight'} dicts, or sessions as lists of items"
    )


def _interaction(row: Any, i: int) -> tuple[Hashable, str, float]:
    if isinstance(row, Mapping):
        user, item, weight = row.get("user"), row.get("item"), row.get("weight", 1.0)
    elif isinstance(row, Sequence) and len(row) in (2, 3) and not isinstance(row, str):
        user, item = row[0], row[1]
        weight = row[2] if len(row) == 3 else 1.0
    else:
        raise InvalidInputError(f"interaction {i} must be (user, item[, weight]), not {row!r}")
    if user is None or item is None:
        raise InvalidInputError(f"interaction {i} lacks a user or an item: {row!r}", position=i)
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise InvalidInputError(f"interaction {i} has a non-numeric weight {weight!r}") from None
    if not (w > 0 and np.isfinite(w)):
        raise InvalidInputError(f"interaction {i} needs a positive finite weight, not {weight!r}")
    return user, str(item), w


class ItemEmbedder(Embedder[Hashable]):
    """Learns a vector per item from interactions or sessions; ``fit`` returns the embedder.

    Item ids are ``str(item)``. ``progress`` shows a progress bar on stderr while training.
    """

    metric: Metric = "cosine"

    def __init__(
        self,
        dimensions: int = 32,
        *,
        epochs: int = 20,
        window: int = 5,
        negatives: int = 5,
        learning_rate: float = 0.02,
        batch_size: int = 1024,
        seed: int = 0,
        progress: bool = True,
        threads: int = 1,
    ) -> None:
        self.training = ItemTraining(
            dimensions, epochs, window, negatives, learning_rate, batch_size, seed
        )
        for name in ("dimensions", "epochs", "window", "batch_size"):
            if getattr(self.training, name) < 1:
                raise InvalidArgumentError(f"{name} must be at least 1")
        if negatives < 0 or not learning_rate > 0:
            raise InvalidArgumentError("negatives must be ≥ 0 and learning_rate > 0")
        self.dimensions = dimensions
        self.progress = progress
        self.threads = threads
        self.ids: list[str] = []
        self._index: dict[str, int] = {}
        self._vectors: FloatMatrix = np.zeros((0, dimensions), dtype=np.float32)
        #: Mean training loss of each epoch of the last fit.
        self.losses: list[float] = []
        self.model_id = "items:unfitted"

    # -- data -------------------------------------------------------------------------------------

    def _corpus(self, data: Iterable[Any], kind: Kind) -> _Corpus:
        rows = list(data)
        if not rows:
            raise InvalidInputError("fit needs at least one interaction or session")
        if kind == "auto":
            kinds = {_detect(r) for r in rows}
            if len(kinds) > 1:
                raise InvalidInputError(
                    "the data mixes interaction rows (tuples/dicts) and sessions (lists); "
                    "pass kind='interactions' or kind='sessions'"
                )
            kind = kinds.pop()
        index: dict[str, int] = {}
        baskets: list[tuple[list[int], list[float]]] = []
        if kind == "interactions":
            per_user: dict[Hashable, dict[int, float]] = {}
            for i, row in enumerate(rows):
                user, item, weight = _interaction(row, i)
                j = index.setdefault(item, len(index))
                basket = per_user.setdefault(user, {})
                basket[j] = basket.get(j, 0.0) + weight
            baskets = [(list(b), list(b.values())) for b in per_user.values()]
        elif kind == "sessions":
            for i, session in enumerate(rows):
                if isinstance(session, (str, bytes)) or not isinstance(session, Sequence):
                    raise InvalidInputError(f"session {i} must be a list of items", position=i)
                ids = [index.setdefault(str(item), len(index)) for item in session]
                baskets.append((ids, [1.0] * len(ids)))
        else:
            raise InvalidArgumentError(f"kind must be auto, interactions or sessions, not {kind!r}")
        self.ids = list(index)
        self._index = index
        usable = [b for b in baskets if len(b[0]) >= 2]  # a lone item has no context to learn from
        if not usable:
            raise InvalidInputError(
                "nothing to learn from: every user or session has a single item; item vectors "
                "come from items that appear together"
            )
        lengths = np.array([len(b[0]) for b in usable], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        weights = np.array([w for b in usable for w in b[1]], dtype=np.float64)
        return _Corpus(
            items=np.array([j for b in usable for j in b[0]], dtype=np.int64),
            weights=weights / weights.mean() if len(weights) else weights,
            start=np.repeat(starts, lengths),
            length=np.repeat(lengths, lengths),
            pos=np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else lengths,
            ordered=kind == "sessions",
        )

    def _pairs(
        self, corpus: _Corpus, rng: np.random.Generator
    ) -> tuple[IntArray, IntArray, npt.NDArray[np.float64]]:
        """One epoch of (center, context, weight) token pairs, ``window`` per token, shuffled."""
        w = self.training.window
        token = np.repeat(np.arange(len(corpus.items)), w)
        pos, length = corpus.pos[token], corpus.length[token]
        if corpus.ordered:
            lo = np.maximum(pos - w, 0)
            hi = np.minimum(pos + w, length - 1)
        else:
            lo, hi = np.zeros_like(pos), length - 1
        # Draw among the hi - lo other positions, then step over the center itself.
        pick = lo + (rng.random(len(token)) * (hi - lo)).astype(np.int64)
        pick += pick >= pos
        context = corpus.start[token] + pick
        order = rng.permutation(len(token))
        center, context = token[order], context[order]
        weight = corpus.weights[center] * corpus.weights[context]
        return corpus.items[center], corpus.items[context], weight

    # -- training ---------------------------------------------------------------------------------

    def fit(self, data: Iterable[Any], *, kind: Kind = "auto") -> ItemEmbedder:
        """Train on ``(user, item[, weight])`` rows or sessions; returns ``self`` for chaining.

        ``kind="auto"`` reads tuples and dicts as interaction rows and lists as sessions.
        """
        torch = require("torch", "embed", "Learning item embeddings")
        corpus = self._corpus(data, kind)
        # Steps are small: more threads mostly add synchronisation (measured 2x slower on 2 busy
        # cores), so train on ``threads`` (default 1) and restore the caller's setting after.
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            self._vectors = self._train(torch, corpus)
        finally:
            torch.set_num_threads(previous_threads)
        self._refresh_id()
        return self

    def _train(self, torch: Any, corpus: _Corpus) -> FloatMatrix:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        cfg = self.training
        n, d = len(self.ids), cfg.dimensions
        rng = np.random.default_rng(cfg.seed)
        counts = np.bincount(corpus.items, minlength=n).astype(np.float64) ** 0.75
        cdf = np.cumsum(counts / counts.sum())

        # word2vec's initialisation: small random inputs, zero outputs.
        start = ((rng.random((n, d)) - 0.5) / d).astype(np.float32)
        # Dense Adam is 2x faster on small tables; sparse updates win once a step touches only a
        # small fraction of a big one.
        sparse = n * d > 1_000_000
        emb_in = torch.nn.Embedding(n, d, sparse=sparse)
        emb_out = torch.nn.Embedding(n, d, sparse=sparse)
        with torch.no_grad():
            emb_in.weight.copy_(torch.from_numpy(start))
            emb_out.weight.zero_()
        optimizer = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(
            [emb_in.weight, emb_out.weight], lr=cfg.learning_rate
        )
        logsigmoid = torch.nn.functional.logsigmoid
        self.losses = []
        with Progress(
            TextColumn("[bold]item embeddings[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(file=sys.stderr),
            disable=not self.progress,
        ) as bar:
            task = bar.add_task("", total=cfg.epochs)
            for _epoch in range(cfg.epochs):
                centers, contexts, weights = self._pairs(corpus, rng)
                negatives = np.searchsorted(cdf, rng.random((len(centers), cfg.negatives)))
                negatives = np.minimum(negatives, n - 1)
                total = 0.0
                for s in range(0, len(centers), cfg.batch_size):
                    part = slice(s, s + cfg.batch_size)
                    c = emb_in(torch.from_numpy(centers[part]))
                    o = emb_out(torch.from_numpy(contexts[part]))
                    ng = emb_out(torch.from_numpy(negatives[part]))
                    wt = torch.from_numpy(weights[part]).float()
                    score = logsigmoid((c * o).sum(-1))
                    score = score + logsigmoid(-torch.bmm(ng, c.unsqueeze(-1)).squeeze(-1)).sum(-1)
                    loss = -(score * wt).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(wt)
                self.losses.append(total / max(len(centers), 1))
                bar.update(task, advance=1, description=f"loss {self.losses[-1]:.4f}")
        return l2_normalize(emb_in.weight.detach().numpy())

    def _refresh_id(self) -> None:
        h = hashlib.sha256(json.dumps(self.ids).encode())
        h.update(self._vectors.tobytes())
        self.model_id = f"items:{h.hexdigest()[:16]}"

    # -- results ----------------------------------------------------------------------------------

    def vectors(self) -> tuple[list[str], FloatMatrix]:
        """Every item's id and its unit vector (row ``i`` for ``ids[i]``), ready to upsert."""
        self._require_fitted()
        return list(self.ids), self._vectors.copy()

    def embed_batch(self, items: Sequence[Hashable]) -> FloatMatrix:
        """The learned vectors of known items; unknown items raise InvalidInputError."""
        self._require_fitted()
        keys = [str(i) for i in items]
        unknown = [k for k in keys if k not in self._index]
        if unknown:
            raise InvalidInputError(
                f"{len(unknown)} item(s) were not in the training data, e.g. {unknown[:5]}",
                unknown=unknown[:20],
            )
        rows = np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        return self._vectors[rows].copy()

    def _require_fitted(self) -> None:
        if not self.ids:
            raise InvalidArgumentError(
                "the ItemEmbedder is not fitted; call fit(interactions) first"
            )

    # -- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Settings, ids and vectors as JSON-safe data (vectors: base64 little-endian float32)."""
        self._require_fitted()
        blob = np.ascontiguousarray(self._vectors, dtype="<f4").tobytes()
        return {
            "format": _FORMAT,
            "training": asdict(self.training),
            "ids": list(self.ids),
            "vectors": base64.b64encode(blob).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemEmbedder:
        """Rebuild a fitted embedder from :meth:`to_dict` output."""
        if data.get("format") != _FORMAT:
            raise InvalidArgumentError(
                f"not a saved ItemEmbedder (format {data.get('format')!r}, expected {_FORMAT!r})"
            )
        t = ItemTraining(**data["training"])
        embedder = cls(
            t.dimensions,
            epochs=t.epochs,
            window=t.window,
            negatives=t.negatives,
            learning_rate=t.learning_rate,
            batch_size=t.batch_size,
            seed=t.seed,
            progress=False,
        )
        ids = [str(i) for i in data["ids"]]
        raw = np.frombuffer(base64.b64decode(data["vectors"]), dtype="<f4")
        if raw.size != len(ids) * t.dimensions:
            raise InvalidArgumentError("saved ItemEmbedder vectors do not match its ids and width")
        embedder.ids = ids
        embedder._index = {k: i for i, k in enumerate(ids)}
        embedder._vectors = raw.reshape(len(ids), t.dimensions).astype(np.float32)
        embedder._refresh_id()
        return embedder

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` to ``path`` as JSON."""
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ItemEmbedder:
        """Read an embedder written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

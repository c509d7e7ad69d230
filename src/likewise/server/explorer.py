"""The web explorer: a page at ``/`` that draws an index as a 2-D map, and the JSON it needs.

Projections are computed here, on the server: PCA by default (exact, linear, so any vector —
a neighbour or a search match outside the sample — can be placed with the same basis), UMAP when
``umap-learn`` is installed and asked for. Large indexes are sampled to ``limit`` points (3,000 by
default). A projection is cached per index and *version* (the last mutation id), so it is computed
once per change. The plotting library (Plotly.js) is served from the installed ``plotly`` Python
package, so the page needs no network at run time and no third-party code lives in this repository.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from ..errors import InvalidArgumentError, MissingDependencyError
from ..index import Index
from .common import authorize, json_response, open_index, read_json, run, state

__all__ = ["Projection", "project", "router"]

router = APIRouter(include_in_schema=False)
DEFAULT_LIMIT = 3000
MAX_LIMIT = 20000
TEXT_PREVIEW = 300


@dataclass
class Projection:
    """A 2-D picture of (a sample of) an index."""

    version: str
    method: str
    total: int
    ids: list[str]
    xy: np.ndarray
    mean: np.ndarray
    basis: np.ndarray  # [d, 2] for PCA; empty for UMAP (new points are placed at their nearest)
    metadata: list[dict[str, Any] | None]
    texts: dict[str, str]

    def place(self, vectors: np.ndarray, ids: list[str]) -> np.ndarray:
        """Map vectors into the picture: by the PCA basis, or (UMAP) at the sampled point of the same id."""
        if self.basis.size:
            out: np.ndarray = (vectors - self.mean) @ self.basis
            return out
        where = {vid: i for i, vid in enumerate(self.ids)}
        return np.array([self.xy[where[v]] if v in where else [np.nan, np.nan] for v in ids])


# Per index *object* (weakly held: a deleted or closed index's pictures go with it), then by
# (version, limit, method). Keying by name alone mixed up two databases' indexes of the same name.
_cache: weakref.WeakKeyDictionary[Index, dict[tuple[str, int, str], Projection]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _sample_ids(idx: Index, limit: int, seed: int = 0) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor = None
    while True:
        page = idx.list_vectors(count=1000, cursor=cursor)
        ids += page.vectors
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    total = len(ids)
    if total > limit:
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(ids, size=limit, replace=False).tolist())
    return ids, total


def _prepared(idx: Index, values: np.ndarray) -> np.ndarray:
    """What the index's metric compares, from public facts only (works on every backend).

    Cosine compares directions, so rows become unit vectors (a zero row stays zero); euclidean and
    dot-product compare the values as they are. Computed here rather than asked of the index's
    engine: a sharded index has no engine in this process.
    """
    values = np.asarray(values, dtype=np.float32)
    if idx.metric != "cosine" or not len(values):
        return values
    norms = np.linalg.norm(values.astype(np.float64), axis=1, keepdims=True)  # float64: no overflow
    norms[norms == 0] = 1.0
    unit: np.ndarray = (values / norms).astype(np.float32)
    return unit


def project(idx: Index, limit: int = DEFAULT_LIMIT, method: str = "pca") -> Projection:
    """The (cached) projection of ``idx``."""
    if method not in ("pca", "umap"):
        raise InvalidArgumentError(f"method must be pca or umap; got {method!r}")
    version = idx.info().processed_up_to_mutation or "0"
    key = (version, limit, method)
    with _cache_lock:
        hit = _cache.get(idx, {}).get(key)
    if hit is not None:
        return hit
    ids, total = _sample_ids(idx, limit)
    vectors = idx.get_by_ids(ids)
    matrix = _prepared(idx, np.array([v.values for v in vectors], dtype=np.float32).reshape(len(vectors), idx.dimensions))
    mean = matrix.mean(axis=0) if len(matrix) else np.zeros(idx.dimensions, np.float32)
    basis = np.zeros((idx.dimensions, 2), np.float32)
    if len(matrix) >= 2:
        _, _, vt = np.linalg.svd(matrix - mean, full_matrices=False)
        basis[:, : min(2, vt.shape[0])] = vt[:2].T
    if method == "umap":
        try:
            import umap
        except ImportError as exc:
            raise MissingDependencyError("UMAP needs umap-learn: pip install umap-learn") from exc
        xy = np.asarray(umap.UMAP(n_components=2, random_state=0).fit_transform(matrix), dtype=np.float64)
        basis = np.zeros((0, 2), np.float32)
    else:
        xy = (matrix - mean) @ basis
    texts = idx.texts([v.id for v in vectors])
    proj = Projection(
        version, method, total, [v.id for v in vectors], xy, mean, basis, [v.metadata for v in vectors], texts
    )
    with _cache_lock:
        mine = _cache.setdefault(idx, {})
        for old in [k for k in mine if k[0] != version]:
            del mine[old]  # an older version of this index will not be asked for again
        mine[key] = proj
    return proj


def _points(proj: Projection) -> list[dict[str, Any]]:
    return [
        {
            "id": vid,
            "x": float(x),
            "y": float(y),
            "metadata": meta,
            "text": (proj.texts.get(vid) or "")[:TEXT_PREVIEW] or None,
        }
        for vid, (x, y), meta in zip(proj.ids, proj.xy.tolist(), proj.metadata)
    ]


def _placed(idx: Index, proj: Projection, matches: list[Any]) -> list[dict[str, Any]]:
    ids = [m.id for m in matches]
    vectors = {v.id: v for v in idx.get_by_ids(ids)}
    mat = _prepared(idx, np.array([vectors[i].values for i in ids if i in vectors], dtype=np.float32).reshape(-1, idx.dimensions))
    xy = proj.place(mat, [i for i in ids if i in vectors]) if len(mat) else np.zeros((0, 2))
    where = {i: k for k, i in enumerate(i for i in ids if i in vectors)}
    texts = idx.texts(ids)
    out = []
    for m in matches:
        k = where.get(m.id)
        out.append(
            {
                "id": m.id,
                "score": m.score,
                "x": float(xy[k][0]) if k is not None else None,
                "y": float(xy[k][1]) if k is not None else None,
                "metadata": m.metadata,
                "text": (texts.get(m.id) or "")[:TEXT_PREVIEW] or None,
            }
        )
    return out


@router.get("/")
async def page() -> Response:
    html = resources.files("likewise.web").joinpath("index.html").read_text(encoding="utf-8")
    return HTMLResponse(html)


@router.get("/explorer/assets/plotly.min.js")
async def plotly_js() -> Response:
    try:
        import plotly
    except ImportError:
        return Response("/* plotly is not installed: pip install 'likewise[server]' */", media_type="text/javascript")
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return FileResponse(path, media_type="text/javascript", headers={"cache-control": "max-age=86400"})


@router.get("/explorer/api/indexes")
async def indexes(request: Request) -> Response:
    authorize(request, "read")
    db = state(request).db

    def listing() -> list[dict[str, Any]]:
        out = []
        for cfg in db.list_indexes():
            info = db.index(cfg.name).info()
            out.append({"name": cfg.name, "dimensions": cfg.dimensions, "metric": cfg.metric, "model": cfg.model,
                        "description": cfg.description, "vector_count": info.vector_count})
        return out

    return json_response({"indexes": await run(listing)})


@router.get("/explorer/api/indexes/{name}/map")
async def index_map(request: Request, name: str, limit: int = DEFAULT_LIMIT, method: str = "pca") -> Response:
    authorize(request, "read", name)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgumentError(f"limit must be from 1 to {MAX_LIMIT}")
    idx = await open_index(request, name)
    proj = await run(project, idx, limit, method)
    keys: dict[str, None] = {}
    for meta in proj.metadata:
        for k, v in (meta or {}).items():
            if isinstance(v, (str, int, float, bool)):
                keys[k] = None
    return json_response(
        {
            "index": name,
            "metric": idx.metric,
            "model": idx.config.model,
            "method": proj.method,
            "version": proj.version,
            "total": proj.total,
            "sampled": len(proj.ids),
            "fields": list(keys),
            "has_text": bool(proj.texts),
            "points": _points(proj),
        }
    )


@router.post("/explorer/api/indexes/{name}/neighbors")
async def neighbors(request: Request, name: str) -> Response:
    authorize(request, "read", name)
    body = await read_json(request)
    idx = await open_index(request, name)
    vid = body.get("id") if isinstance(body, dict) else None
    top_k = int(body.get("top_k", 10)) if isinstance(body, dict) else 10

    if not isinstance(vid, str):
        raise InvalidArgumentError("expected a JSON object with the 'id' of a point")

    def work() -> dict[str, Any]:
        res = idx.query_by_id(vid, top_k=top_k + 1, return_metadata="all")  # the point itself comes first
        proj = project(idx)
        matches = [m for m in res.matches if m.id != vid][:top_k]
        return {"id": vid, "metric": idx.metric, "neighbors": _placed(idx, proj, matches)}

    return json_response(await run(work))


@router.post("/explorer/api/indexes/{name}/search")
async def search(request: Request, name: str) -> Response:
    authorize(request, "read", name)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidArgumentError("expected a JSON object with 'text' or 'id'")
    idx = await open_index(request, name)
    text, vid, flt = body.get("text"), body.get("id"), body.get("filter") or None
    top_k = int(body.get("top_k", 10))

    def work() -> dict[str, Any]:
        if vid:
            res = idx.query_by_id(vid, top_k=top_k, filter=flt, return_metadata="all")
            how = "id"
        elif text:
            if not idx.has_embedder:
                # No model: treat the text as an id, the only meaningful reading.
                res = idx.query_by_id(text, top_k=top_k, filter=flt, return_metadata="all")
                how = "id"
            else:
                res = idx.query_text(text, top_k=top_k, filter=flt, return_metadata="all")
                how = "text"
        else:
            raise InvalidArgumentError("give 'text' or 'id' to search for")
        return {"by": how, "matches": _placed(idx, project(idx), res.matches)}

    return json_response(await run(work))

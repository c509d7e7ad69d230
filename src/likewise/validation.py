"""Input checks shared by every front door: ids, values, metadata, namespaces, names and limits.

Each check raises a typed error from :mod:`likewise.errors` naming the limit or the expected value.
Batches are checked whole before anything is written, so a rejected batch writes nothing.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidArgumentError,
    InvalidIdError,
    InvalidIndexNameError,
    InvalidMetadataError,
    InvalidNamespaceError,
    InvalidTopKError,
    InvalidVectorTypeError,
    NonFiniteValueError,
    RecordTooLargeError,
    ZeroVectorError,
)
from .engines.hnsw import squared_norm
from .engines.hnsw import unit as unit_vector
from .types import METRICS

__all__ = [
    "Limits",
    "LIMITS",
    "check_id",
    "check_ids",
    "check_namespace",
    "check_metadata",
    "check_index_name",
    "check_metric",
    "check_dimensions",
    "check_top_k",
    "as_matrix",
    "as_query_vector",
]

INDEX_NAME_RE = re.compile(r"^[a-z]([a-z0-9_-]*[a-z0-9])?$")
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER_TYPES = {int, float, np.float32, np.float64, np.int64, np.int32}


@dataclass(frozen=True)
class Limits:
    """The limits of the native interface (Vectorize's where it sets one)."""

    max_id_bytes: int = 64
    max_namespace_bytes: int = 64
    max_metadata_bytes: int = 10 * 1024
    max_index_name_bytes: int = 64
    max_dimensions: int = 8192
    max_top_k: int = 1000


LIMITS = Limits()


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_id(vid: Any) -> str:
    """A vector id: a non-empty string of at most 64 bytes of UTF-8."""
    if not isinstance(vid, str):
        raise InvalidIdError(f"vector id must be a string, got {type(vid).__name__}", id=repr(vid)[:80])
    if not vid:
        raise InvalidIdError("vector id must not be empty", id=vid)
    try:
        size = len(vid.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidIdError("vector id must be valid UTF-8 text", id=repr(vid)[:80]) from exc
    if size > LIMITS.max_id_bytes:
        raise InvalidIdError(
            f"id too long; max is {LIMITS.max_id_bytes} bytes, got {size} bytes",
            id=vid[:80],
            max_bytes=LIMITS.max_id_bytes,
            got_bytes=size,
        )
    return vid


def check_ids(ids: Sequence[Any], *, unique: bool = True) -> list[str]:
    """Check every id, and that no id appears twice in one batch."""
    out = [check_id(v) for v in ids]
    if unique and len(set(out)) != len(out):
        dups = sorted(k for k, n in Counter(out).items() if n > 1)
        raise DuplicateIdError(
            f"duplicate ids in one batch: {', '.join(dups[:10])}" + (" …" if len(dups) > 10 else ""),
            ids=dups[:100],
        )
    return out


def check_namespace(namespace: Any) -> str | None:
    """A namespace: ``None`` or a non-empty string of at most 64 bytes."""
    if namespace is None:
        return None
    if not isinstance(namespace, str) or not namespace:
        raise InvalidNamespaceError(f"namespace must be a non-empty string or null, got {namespace!r}")
    size = _utf8_len(namespace)
    if size > LIMITS.max_namespace_bytes:
        raise InvalidNamespaceError(
            f"namespace too long; max is {LIMITS.max_namespace_bytes} bytes, got {size} bytes",
            max_bytes=LIMITS.max_namespace_bytes,
            got_bytes=size,
        )
    return namespace


def _check_keys(node: Any, where: str) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if not isinstance(key, str) or not key:
                raise InvalidMetadataError(f"metadata keys must be non-empty strings ({where})")
            if key.startswith("$") or "." in key or '"' in key:
                raise InvalidMetadataError(
                    f"metadata key {key!r} is not allowed: keys must not start with '$' or contain '.' or '\"'",
                    key=key,
                )
            _check_keys(value, where)
    elif isinstance(node, list):
        for item in node:
            _check_keys(item, where)
    elif isinstance(node, float) and not math.isfinite(node):
        raise InvalidMetadataError(f"metadata numbers must be finite, got {node!r} ({where})")


def check_metadata(metadata: Any, vid: str = "") -> tuple[dict[str, Any] | None, str | None]:
    """Validate metadata; return it with its compact JSON text (what is stored), or ``(None, None)``."""
    if metadata is None:
        return None, None
    if not isinstance(metadata, Mapping):
        raise InvalidMetadataError(
            f"metadata of {vid!r} must be a JSON object, got {type(metadata).__name__}", id=vid
        )
    _check_keys(metadata, f"vector {vid!r}")
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidMetadataError(f"metadata of {vid!r} is not plain JSON: {exc}", id=vid) from exc
    size = len(text.encode("utf-8"))
    if size > LIMITS.max_metadata_bytes:
        raise RecordTooLargeError(
            f"metadata of {vid!r} is {size} bytes as JSON; the limit is {LIMITS.max_metadata_bytes} bytes (10 KiB)",
            id=vid,
            limit=LIMITS.max_metadata_bytes,
            got=size,
        )
    return dict(metadata), text


def check_index_name(name: Any) -> str:
    """Vectorize's index-name rule: lower-case letters, digits, '-' and '_', at most 64 bytes."""
    if not isinstance(name, str) or not name:
        raise InvalidIndexNameError("index name must be a non-empty string")
    if _utf8_len(name) > LIMITS.max_index_name_bytes:
        raise InvalidIndexNameError(
            f"index name is {_utf8_len(name)} bytes; the limit is {LIMITS.max_index_name_bytes}", name=name[:80]
        )
    if not INDEX_NAME_RE.match(name):
        raise InvalidIndexNameError(
            f"invalid index name {name!r}: expected at least 2 characters of a-z, 0-9, '-' or '_', "
            "starting with a letter and ending with a letter or digit",
            name=name,
        )
    return name


def check_metric(metric: Any) -> str:
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}", metric=metric)
    return str(metric)


def check_dimensions(dimensions: Any, limit: int | None = None) -> int:
    limit = limit or LIMITS.max_dimensions
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= limit:
        raise InvalidArgumentError(
            f"dimensions must be an integer from 1 to {limit}; got {dimensions!r}", limit=limit
        )
    return dimensions


def check_top_k(top_k: Any, limit: int | None = None) -> int:
    limit = limit or LIMITS.max_top_k
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0 or top_k > limit:
        raise InvalidTopKError(f"top_k must be an integer from 1 to {limit}; got {top_k!r}", limit=limit)
    return top_k


def as_matrix(rows: Any, dimensions: int, ids: Sequence[str] | None = None, *, cosine: bool = False) -> np.ndarray:
    """Turn vector values into a float32 ``[n, dimensions]`` matrix, rejecting anything unfit.

    Rejects ragged or nested rows, non-numbers (strings, booleans, null), NaN/±inf and numbers beyond
    float32's range, the wrong length, and (for cosine) all-zero vectors. Errors name the row's id.
    """

    def name(i: int) -> str:
        return ids[i] if ids is not None and i < len(ids) else f"#{i}"

    if isinstance(rows, np.ndarray):
        if rows.dtype.kind not in "fiu":
            raise InvalidVectorTypeError(f"vector values must be numbers, got array of {rows.dtype}")
        mat64 = rows.astype(np.float64, copy=False)
        if mat64.ndim == 1:
            mat64 = mat64.reshape(1, -1) if len(mat64) else mat64.reshape(1, 0)
    else:
        rows = list(rows)
        if not rows:
            return np.empty((0, dimensions), dtype=np.float32)
        # Fast path: every row a list/tuple of plain numbers (checked by type at C speed; bool is
        # excluded because numpy would silently turn True into 1.0).
        kinds = set(map(type, rows))
        if kinds <= {list, tuple} and set(map(type, itertools.chain.from_iterable(rows))) <= _NUMBER_TYPES and len(
            set(map(len, rows))
        ) == 1:
            try:
                return _finish(np.asarray(rows, dtype=np.float64), dimensions, ids, cosine)
            except OverflowError:  # an integer beyond float64: the slow path names it
                pass
        for i, row in enumerate(rows):
            if isinstance(row, np.ndarray):
                continue
            if not isinstance(row, (list, tuple)):
                raise InvalidVectorTypeError(
                    f"values of {name(i)} must be an array of numbers, got {type(row).__name__}", id=name(i)
                )
            for j, x in enumerate(row):
                if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
                    raise InvalidVectorTypeError(
                        f"values of {name(i)}[{j}] must be a number, got {json.dumps(x, default=repr)}",
                        id=name(i),
                        index=j,
                    )
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            for i, row in enumerate(rows):
                if len(row) != dimensions:
                    raise DimensionMismatchError(
                        f"vector {name(i)} has {len(row)} dimensions; the index expects {dimensions}",
                        id=name(i),
                        expected=dimensions,
                        got=len(row),
                    )
        try:
            mat64 = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        except (OverflowError, ValueError, TypeError) as exc:
            raise InvalidVectorTypeError(f"vector values must be arrays of numbers: {exc}") from exc
    return _finish(mat64, dimensions, ids, cosine)


def _finish(mat64: np.ndarray, dimensions: int, ids: Sequence[str] | None, cosine: bool) -> np.ndarray:
    """Shape, finiteness, float32 range and (cosine) direction checks of a float64 matrix."""

    def name(i: int) -> str:
        return ids[i] if ids is not None and i < len(ids) else f"#{i}"

    if mat64.ndim != 2:
        raise InvalidVectorTypeError(f"expected a 2-D matrix of vectors, got {mat64.ndim} dimensions")
    if mat64.shape[1] != dimensions:
        raise DimensionMismatchError(
            f"vector {name(0)} has {mat64.shape[1]} dimensions; the index expects {dimensions}",
            id=name(0),
            expected=dimensions,
            got=int(mat64.shape[1]),
        )
    bad = ~np.isfinite(mat64) | (np.abs(mat64) > FLOAT32_MAX)
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise NonFiniteValueError(
            f"values of {name(i)}[{j}] is {float(mat64[i, j])!r}; values must be finite float32 numbers",
            id=name(i),
            index=j,
        )
    mat: np.ndarray = np.ascontiguousarray(mat64, dtype=np.float32)
    if cosine and len(mat):
        zero = ~np.any(mat != 0, axis=1)
        if zero.any():
            i = int(np.flatnonzero(zero)[0])
            raise ZeroVectorError(
                f"vector {name(i)} is all zeros, which has no direction under the cosine metric", id=name(i)
            )
    return mat


def as_query_vector(vector: Any, dimensions: int, *, cosine: bool = False, unit: bool = False) -> np.ndarray:
    """Check one query vector and return it as float32 ``[dimensions]``; with ``unit`` (what a
    cosine index searches with), as a unit-length copy."""
    if isinstance(vector, np.ndarray) and vector.ndim != 1:
        raise InvalidVectorTypeError(f"a query vector must be 1-D, got shape {vector.shape}")
    if (
        type(vector) is np.ndarray
        and vector.dtype == np.float32
        and len(vector) == dimensions
        and vector.flags.c_contiguous  # faiss reads the buffer directly
    ):
        # Fast path for what embedders return. One sum of squares (faiss' float32 kernel: no
        # temporaries, no overflow warnings) proves it: NaN or ±inf in any component makes it
        # non-finite, and a zero vector makes it 0. Anything else takes the full checks below.
        squares = squared_norm(vector)
        if 0.0 < squares < math.inf:
            return _unit(vector, squares) if unit else vector
        if not np.isfinite(vector).all():
            as_matrix(vector.reshape(1, -1), dimensions, ["query"])  # raises the precise error
        if cosine and not vector.any():
            raise ZeroVectorError("the query vector is all zeros, which has no direction under the cosine metric")
        return _unit(vector, squares) if unit else vector
    out = np.ascontiguousarray(_checked_query(vector, dimensions, cosine))
    return _unit(out, squared_norm(out)) if unit else out


def _unit(q: np.ndarray, squares: float) -> np.ndarray:
    if 1e-30 < squares < math.inf:
        return unit_vector(q)  # faiss' float32 kernel: no numpy temporaries on the hot path
    # Squares beyond float32 (huge), or too small to be precise (tiny): the norm in float64.
    q64 = q.astype(np.float64)
    return (q64 / np.linalg.norm(q64)).astype(np.float32)


def _checked_query(vector: Any, dimensions: int, cosine: bool) -> np.ndarray:
    if not isinstance(vector, (np.ndarray, list, tuple)):
        raise InvalidVectorTypeError(f"a query vector must be an array of numbers, got {type(vector).__name__}")
    try:
        rows = [vector] if not isinstance(vector, np.ndarray) else vector.reshape(1, -1)
        out: np.ndarray = as_matrix(rows, dimensions, ["query"], cosine=cosine)[0]
        return out
    except DimensionMismatchError as exc:
        got = exc.details.get("got")
        raise DimensionMismatchError(
            f"invalid query vector, expected {dimensions} dimensions, and got {got} dimensions",
            expected=dimensions,
            got=got,
        ) from exc

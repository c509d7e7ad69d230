"""Strict input: every bad input raises a typed error naming the limit, and a rejected batch writes nothing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import likewise
from likewise import Vector
from likewise import errors as E


@pytest.fixture
def idx(tmp_path: Path) -> Any:
    db = likewise.open(tmp_path / "d", engine=likewise.EngineParams(background=False))
    index = db.create_index("tv", dimensions=3)
    index.upsert([Vector("keep", [1, 2, 3], {"a": 1})])
    yield index
    db.close()


def state(idx: Any) -> tuple[Any, ...]:
    return (idx.info().vector_count, idx.info().processed_up_to_mutation, [v.to_dict() for v in idx.get_by_ids(["keep", "new"])])


BAD_BATCHES: list[tuple[str, list[Any], type[E.LikewiseError], str]] = [
    ("wrong dimension", [Vector("new", [1, 2])], E.DimensionMismatchError, "expects 3"),
    ("empty values", [Vector("new", [])], E.DimensionMismatchError, "expects 3"),
    ("NaN", [Vector("new", [1, math.nan, 3])], E.NonFiniteValueError, "finite"),
    ("inf", [Vector("new", [1, math.inf, 3])], E.NonFiniteValueError, "finite"),
    ("float32 overflow", [Vector("new", [1, 1e39, 3])], E.NonFiniteValueError, "finite"),
    ("string element", [Vector("new", [1, "2", 3])], E.InvalidVectorTypeError, "must be a number"),
    ("bool element", [Vector("new", [1, True, 3])], E.InvalidVectorTypeError, "must be a number"),
    ("null element", [Vector("new", [1, None, 3])], E.InvalidVectorTypeError, "must be a number"),
    ("nested", [Vector("new", [[1], [2], [3]])], E.InvalidVectorTypeError, "must be a number"),
    ("ragged batch", [Vector("new", [1, 2, 3]), Vector("n2", [1, 2])], E.DimensionMismatchError, "n2"),
    ("empty id", [Vector("", [1, 2, 3])], E.InvalidIdError, "empty"),
    ("long id", [Vector("x" * 65, [1, 2, 3])], E.InvalidIdError, "max is 64 bytes, got 65"),
    ("long utf-8 id", [Vector("é" * 33, [1, 2, 3])], E.InvalidIdError, "got 66 bytes"),
    ("int id", [Vector(5, [1, 2, 3])], E.InvalidIdError, "must be a string"),  # type: ignore[arg-type]
    ("duplicate ids", [Vector("new", [1, 2, 3]), Vector("new", [3, 2, 1])], E.DuplicateIdError, "new"),
    ("metadata too big", [Vector("new", [1, 2, 3], {"t": "x" * 10240})], E.RecordTooLargeError, "10240 bytes"),
    ("metadata not object", [Vector("new", [1, 2, 3], [1, 2])], E.InvalidMetadataError, "JSON object"),  # type: ignore[arg-type]
    ("metadata $key", [Vector("new", [1, 2, 3], {"$x": 1})], E.InvalidMetadataError, "must not start"),
    ("metadata dotted key", [Vector("new", [1, 2, 3], {"a.b": 1})], E.InvalidMetadataError, "'.'"),
    ("metadata NaN", [Vector("new", [1, 2, 3], {"a": math.nan})], E.InvalidMetadataError, "finite"),
    ("metadata not JSON", [Vector("new", [1, 2, 3], {"a": object()})], E.InvalidMetadataError, "plain JSON"),
    ("zero vector under cosine", [Vector("new", [0, 0, 0])], E.ZeroVectorError, "all zeros"),
    ("long namespace", [Vector("new", [1, 2, 3], None, "n" * 65)], E.InvalidNamespaceError, "max is 64"),
    ("dict without values", [{"id": "new"}], E.InvalidInputError, "'values'"),
]


@pytest.mark.parametrize("name,batch,error,text", BAD_BATCHES, ids=[b[0] for b in BAD_BATCHES])
def test_bad_batch_rejected_whole(idx: Any, name: str, batch: list[Any], error: type[E.LikewiseError], text: str) -> None:
    before = state(idx)
    good = Vector("good0", [3, 2, 1])
    for write in (idx.upsert, idx.insert):
        with pytest.raises(error) as info:
            write([good, *batch] if name != "duplicate ids" else batch)
        assert text in info.value.message
        assert isinstance(info.value, E.LikewiseError) and info.value.http_status in (413, 422)
        assert state(idx) == before


def test_metadata_at_limit_succeeds(idx: Any) -> None:
    meta = {"t": "x" * (10240 - len('{"t":""}'))}
    idx.upsert([Vector("new", [1, 2, 3], meta)])
    assert idx.get_by_ids(["new"])[0].metadata == meta
    assert len(idx.get_by_ids(["new"])) == 1


def test_id_at_limit_succeeds(idx: Any) -> None:
    idx.upsert([Vector("x" * 64, [1, 2, 3])])
    assert idx.get_by_ids(["x" * 64])[0].id == "x" * 64


QUERY_ERRORS: list[tuple[str, Callable[[Any], Any], type[E.LikewiseError], str]] = [
    ("top_k 0", lambda i: i.query([1, 2, 3], top_k=0), E.InvalidTopKError, "from 1 to 1000"),
    ("top_k negative", lambda i: i.query([1, 2, 3], top_k=-1), E.InvalidTopKError, "from 1 to 1000"),
    ("top_k too big", lambda i: i.query([1, 2, 3], top_k=1001), E.InvalidTopKError, "from 1 to 1000"),
    ("query dimension", lambda i: i.query([1, 2]), E.DimensionMismatchError, "expected 3 dimensions, and got 2"),
    ("query NaN", lambda i: i.query([1, math.nan, 2]), E.NonFiniteValueError, "finite"),
    ("query zero cosine", lambda i: i.query([0, 0, 0]), E.ZeroVectorError, "zeros"),
    ("unknown operator", lambda i: i.query([1, 2, 3], filter={"a": {"$regex": "x"}}), E.InvalidFilterError, "$regex"),
    ("top-level operator", lambda i: i.query([1, 2, 3], filter={"$or": []}), E.InvalidFilterError, "$or"),
    ("range on bool", lambda i: i.query([1, 2, 3], filter={"a": {"$lt": True}}), E.InvalidFilterError, "number or a string"),
    ("$in not list", lambda i: i.query([1, 2, 3], filter={"a": {"$in": "x"}}), E.InvalidFilterError, "array"),
    ("filter not object", lambda i: i.query([1, 2, 3], filter=[1]), E.InvalidFilterError, "JSON object"),
    ("bad return_metadata", lambda i: i.query([1, 2, 3], return_metadata="some"), E.InvalidArgumentError, "none, indexed, all"),
    ("bad namespace", lambda i: i.query([1, 2, 3], namespace=""), E.InvalidNamespaceError, "non-empty"),
    ("2-D query", lambda i: i.query(np.ones((2, 3))), E.InvalidVectorTypeError, "1-D"),
    # float32 arrays take the fast path of Index.query: the same checks must hold there.
    ("float32 NaN", lambda i: i.query(np.array([1, math.nan, 2], np.float32)), E.NonFiniteValueError, "finite"),
    ("float32 inf", lambda i: i.query(np.array([1, -math.inf, 2], np.float32)), E.NonFiniteValueError, "finite"),
    ("float32 zero", lambda i: i.query(np.zeros(3, np.float32)), E.ZeroVectorError, "zeros"),
    ("float32 dimension", lambda i: i.query(np.ones(4, np.float32)), E.DimensionMismatchError, "expected 3"),
]


def test_strided_query_vector(idx: Any) -> None:
    """A float32 view with strides (a column of a matrix) is read as its values, not its buffer."""
    matrix = np.array([[1, 9], [2, 9], [3, 9]], np.float32)
    assert idx.query(matrix[:, 0], top_k=1).ids == ["keep"]
    assert idx.query(matrix[:, 0], top_k=1).matches[0].score == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e30])
def test_query_scale_does_not_matter_under_cosine(idx: Any, scale: float) -> None:
    """Squares of tiny or huge float32 values under- or overflow; the direction still counts."""
    idx.upsert([Vector("other", [-1, 0, 0])])
    q = np.array([1, 2, 3], np.float32) * np.float32(scale)
    res = idx.query(q, top_k=2)
    assert res.ids == ["keep", "other"]
    assert res.matches[0].score == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name,call,error,text", QUERY_ERRORS, ids=[q[0] for q in QUERY_ERRORS])
def test_bad_query(idx: Any, name: str, call: Callable[[Any], Any], error: type[E.LikewiseError], text: str) -> None:
    with pytest.raises(error) as info:
        call(idx)
    assert text in info.value.message


def test_upsert_arrays_checks(idx: Any) -> None:
    with pytest.raises(E.InvalidArgumentError):
        idx.upsert_arrays(["a", "b"], np.ones((3, 3)))
    with pytest.raises(E.DimensionMismatchError):
        idx.upsert_arrays(["a"], np.ones((1, 4)))
    with pytest.raises(E.NonFiniteValueError):
        idx.upsert_arrays(["a"], np.array([[1, np.nan, 1]]))
    with pytest.raises(E.InvalidArgumentError):
        idx.upsert_arrays(["a"], np.ones((1, 3)), metadata=[{}, {}])
    idx.upsert_arrays(["a", "b"], np.ones((2, 3)), metadata=[{"k": 1}, None], namespace="n")
    assert {v.id: v.namespace for v in idx.get_by_ids(["a", "b"])} == {"a": "n", "b": "n"}


@pytest.mark.parametrize(
    "name,kwargs,error",
    [
        ("Bad", dict(dimensions=3), E.InvalidIndexNameError),
        ("a-", dict(dimensions=3), E.InvalidIndexNameError),
        ("9a", dict(dimensions=3), E.InvalidIndexNameError),
        ("a/b", dict(dimensions=3), E.InvalidIndexNameError),
        ("x" * 65, dict(dimensions=3), E.InvalidIndexNameError),
        ("ok-name", dict(dimensions=0), E.InvalidArgumentError),
        ("ok-name", dict(dimensions=8193), E.InvalidArgumentError),
        ("ok-name", dict(dimensions=3, metric="manhattan"), E.InvalidArgumentError),
    ],
)
def test_create_index_checks(tmp_path: Path, name: str, kwargs: dict[str, Any], error: type[E.LikewiseError]) -> None:
    with likewise.open(tmp_path / "d") as db:
        with pytest.raises(error):
            db.create_index(name, **kwargs)
        assert db.list_indexes() == []


def test_errors_carry_status_and_code() -> None:
    err = E.DimensionMismatchError("bad", expected=3, got=2)
    assert err.http_status == 422
    assert err.to_dict() == {"error": {"code": "dimension_mismatch", "message": "bad", "details": {"expected": 3, "got": 2}}}
    assert E.IndexNotFoundError("x").http_status == 404
    assert E.StorageFullError("x").http_status == 507
    assert E.DataDirLockedError("x").http_status == 503

"""Property tests: the fast columnar filter path agrees with the plain-Python oracle, always.

Hypothesis draws metadata (mixed kinds per field, nesting, missing fields) and filters over every
operator; the columnar masks built from SQLite's JSON functions and from incremental appends must
both equal :func:`likewise.filters.matches` on every record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import likewise
from likewise import Vector
from likewise import errors as E
from likewise.filters import OPERATORS, matches, parse_filter

KEYS = ["genre", "year", "flag", "nested.x", "nested.y"]
STRINGS = st.sampled_from(["", "a", "ab", "b", "sitcom", "horror", "Z", "é", "net", "neu"])
NUMBERS = st.one_of(st.integers(-5, 5), st.sampled_from([0.5, -1.5, 2.0, 1e10, 2**53 + 1]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)
STORED = st.one_of(SCALARS, st.lists(STRINGS, max_size=2), st.just({"deep": 1}))


@st.composite
def metadata(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    meta: dict[str, Any] = {}
    for key in ["genre", "year", "flag"]:
        if draw(st.booleans()):
            meta[key] = draw(STORED)
    choice = draw(st.integers(0, 2))
    if choice == 1:
        meta["nested"] = {k: draw(STORED) for k in ["x", "y"] if draw(st.booleans())}
    elif choice == 2:
        meta["nested"] = draw(SCALARS)
    return meta


@st.composite
def filters(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True)):
        op = draw(st.sampled_from(OPERATORS + ("implicit",)))
        if op == "implicit":
            out[key] = draw(SCALARS)
        elif op in ("$in", "$nin"):
            out[key] = {op: draw(st.lists(SCALARS, max_size=4))}
        elif op in ("$eq", "$ne"):
            out[key] = {op: draw(SCALARS)}
        else:
            out[key] = {op: draw(st.one_of(NUMBERS, STRINGS))}
            if draw(st.booleans()):
                other = draw(st.sampled_from(["$lt", "$lte", "$gt", "$gte"]))
                out[key][other] = draw(st.one_of(NUMBERS, STRINGS))
    return out


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = likewise.open(tmp_path_factory.mktemp("filters") / "d", engine=likewise.EngineParams(background=False))
    yield db
    db.close()


counter = iter(range(10**9))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(metadata(), min_size=1, max_size=25), flts=st.lists(filters(), min_size=1, max_size=4))
def test_columnar_filter_equals_oracle(database: Any, records: list[dict[str, Any] | None], flts: list[dict[str, Any]]) -> None:
    idx = database.create_index(f"p{next(counter)}", dimensions=2)
    half = len(records) // 2
    # The first half is stored before any column exists (columns are built from SQLite); the
    # second half after (columns are appended to incrementally). Both paths must agree.
    idx.upsert([Vector(f"r{i}", [1.0, float(i)], m) for i, m in enumerate(records[:half])])
    idx.query([1.0, 0.0], top_k=1, filter={"genre": {"$ne": "~"}, "year": {"$ne": 0}, "flag": {"$ne": 0},
                                           "nested.x": {"$ne": 0}, "nested.y": {"$ne": 0}})
    idx.upsert([Vector(f"r{i}", [1.0, float(i)], m) for i, m in enumerate(records) if i >= half])
    for raw in flts:
        parsed = parse_filter(raw)
        expected = {f"r{i}" for i, m in enumerate(records) if matches(parsed, m)}
        got = set(idx.query([1.0, 0.0], top_k=len(records), filter=raw).ids)
        assert got == expected, raw
    database.delete_index(idx.name)


def test_semantics_examples() -> None:
    f = parse_filter
    assert matches(f({"a": 1}), {"a": 1.0})
    assert not matches(f({"a": 1}), {"a": True})
    assert not matches(f({"a": True}), {"a": 1})
    assert matches(f({"a": None}), {"a": None})
    assert not matches(f({"a": None}), {})
    assert matches(f({"a": {"$ne": 1}}), {})
    assert matches(f({"a": {"$nin": [1]}}), {"b": 1})
    assert not matches(f({"a": {"$lt": 5}}), {"a": "1"})
    assert matches(f({"a": {"$gte": "net", "$lt": "neu"}}), {"a": "netflix"})
    assert matches(f({"p.nice": 42}), {"p": {"nice": 42}})
    assert not matches(f({"p.nice": 42}), {"p": 42})
    assert not matches(f({"a": "x"}), {"a": ["x"]})


@pytest.mark.parametrize(
    "raw,text",
    [
        ({"a": {"$regex": 1}}, "unknown filter operator '$regex'"),
        ({"$and": [1]}, "operators"),
        ({"": 1}, "non-empty"),
        ({'a"b': 1}, "must not contain"),
        ({"a..b": 1}, "empty path segment"),
        ({"a": {}}, "empty object"),
        ({"a": {"$eq": [1]}}, "string, number, boolean or null"),
        ({"a": {"$gt": None}}, "number or a string"),
        ({"a": {"$eq": float("nan")}}, "finite"),
        ({"k" * 513: 1}, "limit is 512"),
    ],
)
def test_invalid_filters(raw: dict[str, Any], text: str) -> None:
    with pytest.raises(E.InvalidFilterError) as info:
        parse_filter(raw)
    assert text in info.value.message


def test_vectorize_rules() -> None:
    parse_filter({"a": {"$gte": 1, "$lt": 2}}, vectorize_rules=True)
    with pytest.raises(E.InvalidFilterError):
        parse_filter({"a": {"$eq": 1, "$ne": 2}}, vectorize_rules=True)
    with pytest.raises(E.InvalidFilterError):
        parse_filter({"a": {"$gt": 1, "$gte": 2}}, vectorize_rules=True)
    with pytest.raises(E.InvalidFilterError):
        parse_filter({}, vectorize_rules=True)
    with pytest.raises(E.InvalidFilterError, match="under 2048 bytes"):
        parse_filter({"a": {"$in": ["x" * 100] * 30}}, vectorize_rules=True)
    assert parse_filter({"a": {"$in": ["x" * 100] * 30}}) is not None

"""The metadata filter language: parsing, validation and the plain-Python reference semantics.

A filter is a JSON object, as in Vectorize::

    {"genre": "sitcom", "year": {"$gte": 1980, "$lt": 2000}, "pandas.nice": {"$in": [1, 2]}}

Keys are ANDed; a bare value means ``$eq``; a dotted key reaches nested metadata. Operators are
``$eq $ne $in $nin $lt $lte $gt $gte``. :func:`parse_filter` validates once and returns a
:class:`Filter`; :func:`matches` is the oracle every fast path (the columnar evaluator in
``engines/columns.py``) is property-tested against.

Semantics, written once here:

* Values have four comparable kinds: null, boolean, number and string. Numbers compare as float64
  (as Vectorize indexes them); a boolean is never equal to a number.
* ``$eq``/``$in`` match only a present value of the same kind that is equal; ``$eq: null`` matches an
  explicit ``null`` (a missing field is not null).
* ``$ne``/``$nin`` are the exact negation of ``$eq``/``$in``: a missing field matches them.
* Range operators match a present number against a number bound, or a present string against a
  string bound (lexicographic by code point, which gives prefix search); anything else fails.
* Lists and objects stored in metadata are returned as stored but are never equal to a filter value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Union

from .errors import InvalidFilterError

__all__ = [
    "OPERATORS",
    "Scalar",
    "Condition",
    "Filter",
    "MISSING",
    "parse_filter",
    "matches",
    "lookup",
]

OPERATORS = ("$eq", "$ne", "$in", "$nin", "$lt", "$lte", "$gt", "$gte")
RANGE_OPERATORS = ("$lt", "$lte", "$gt", "$gte")
UPPER = ("$lt", "$lte")
LOWER = ("$gt", "$gte")
MAX_KEY_LENGTH = 512
VECTORIZE_MAX_FILTER_BYTES = 2048
NATIVE_MAX_FILTER_BYTES = 64 * 1024

Scalar = Union[str, float, bool, None]


class _Missing:
    """Marker for a metadata path that is not present."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Condition:
    """One ``key op value`` test. ``value`` is a tuple for ``$in``/``$nin``."""

    key: str
    op: str
    value: Scalar | tuple[Scalar, ...]

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))


@dataclass(frozen=True)
class Filter:
    """A parsed filter: conditions that must all hold."""

    conditions: tuple[Condition, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.key for c in self.conditions))


def _scalar(value: Any, key: str, op: str) -> Scalar:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        f = float(value)
        if not math.isfinite(f):
            raise InvalidFilterError(
                f"filter value for {key!r} {op} must be a finite number, got {value!r}", key=key, op=op
            )
        return f
    raise InvalidFilterError(
        f"filter value for {key!r} {op} must be a string, number, boolean or null, "
        f"got {type(value).__name__}",
        key=key,
        op=op,
    )


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidFilterError("filter keys must be non-empty strings", key=key)
    if key.startswith("$"):
        raise InvalidFilterError(
            f"unknown filter operator {key!r} at the top level: expected a metadata property name; "
            f"operators ({', '.join(OPERATORS)}) go inside a property",
            key=key,
        )
    if '"' in key:
        raise InvalidFilterError(f"filter key {key!r} must not contain '\"'", key=key)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidFilterError(
            f"filter key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}", key=key[:64]
        )
    if any(part == "" for part in key.split(".")):
        raise InvalidFilterError(f"filter key {key!r} has an empty path segment", key=key)
    return key


def parse_filter(raw: Mapping[str, Any] | None, *, vectorize_rules: bool = False) -> Filter | None:
    """Validate ``raw`` and return a :class:`Filter`, or ``None`` when there is no filter.

    ``vectorize_rules`` applies Vectorize's stricter rules: compact JSON under 2048 bytes, range
    operators only as one lower plus one upper bound, and no mixing of range with other operators.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidFilterError(f"a filter must be a JSON object, got {type(raw).__name__}")
    if not raw:
        if vectorize_rules:
            raise InvalidFilterError("a filter must be a non-empty object")
        return None
    try:
        size = len(json.dumps(raw, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidFilterError(f"a filter must be plain JSON with finite numbers: {exc}") from exc
    limit = VECTORIZE_MAX_FILTER_BYTES if vectorize_rules else NATIVE_MAX_FILTER_BYTES
    if size >= limit:
        raise InvalidFilterError(
            f"filter is {size} bytes as compact JSON; it must be under {limit} bytes", size=size, limit=limit
        )
    conditions: list[Condition] = []
    for key, spec in raw.items():
        _check_key(key)
        if isinstance(spec, Mapping):
            if not spec:
                raise InvalidFilterError(f"filter for {key!r} is an empty object; expected an operator")
            ops = list(spec)
            for op in ops:
                if op not in OPERATORS:
                    raise InvalidFilterError(
                        f"unknown filter operator {op!r} for {key!r}; expected one of {', '.join(OPERATORS)}",
                        key=key,
                        op=op,
                    )
            if vectorize_rules and len(ops) > 1:
                lowers = [o for o in ops if o in LOWER]
                uppers = [o for o in ops if o in UPPER]
                if len(ops) != 2 or len(lowers) != 1 or len(uppers) != 1:
                    raise InvalidFilterError(
                        f"filter for {key!r} combines {ops}; only one lower bound ($gt/$gte) with one "
                        "upper bound ($lt/$lte) may be combined",
                        key=key,
                    )
            for op, value in spec.items():
                conditions.append(_condition(key, op, value))
        else:
            conditions.append(_condition(key, "$eq", spec))
    return Filter(tuple(conditions))


def _condition(key: str, op: str, value: Any) -> Condition:
    if op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple)):
            raise InvalidFilterError(
                f"{op} for {key!r} expects an array of values, got {type(value).__name__}", key=key, op=op
            )
        return Condition(key, op, tuple(_scalar(v, key, op) for v in value))
    scalar = _scalar(value, key, op)
    if op in RANGE_OPERATORS and (scalar is None or isinstance(scalar, bool)):
        raise InvalidFilterError(
            f"{op} for {key!r} expects a number or a string, got {json.dumps(value)}", key=key, op=op
        )
    return Condition(key, op, scalar)


def lookup(metadata: Mapping[str, Any] | None, path: tuple[str, ...]) -> Any:
    """The value at a dotted path in metadata, or :data:`MISSING`."""
    node: Any = metadata
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _equal(stored: Any, wanted: Scalar) -> bool:
    if stored is MISSING:
        return False
    kind = _kind(stored)
    if kind != _kind(wanted):
        return False
    if kind == "number":
        return float(stored) == wanted
    return bool(stored == wanted)


def _test(stored: Any, cond: Condition) -> bool:
    op, value = cond.op, cond.value
    if op == "$eq":
        return _equal(stored, value)  # type: ignore[arg-type]
    if op == "$ne":
        return not _equal(stored, value)  # type: ignore[arg-type]
    if op == "$in":
        return any(_equal(stored, v) for v in value)  # type: ignore[union-attr]
    if op == "$nin":
        return not any(_equal(stored, v) for v in value)  # type: ignore[union-attr]
    kind = _kind(stored) if stored is not MISSING else "missing"
    if kind != _kind(value) or kind not in ("number", "string"):
        return False
    left: Any = float(stored) if kind == "number" else stored
    if op == "$lt":
        return bool(left < value)
    if op == "$lte":
        return bool(left <= value)
    if op == "$gt":
        return bool(left > value)
    return bool(left >= value)


def matches(flt: Filter | None, metadata: Mapping[str, Any] | None) -> bool:
    """The reference semantics: whether ``metadata`` satisfies every condition of ``flt``."""
    if flt is None:
        return True
    return all(_test(lookup(metadata, c.path), c) for c in flt.conditions)

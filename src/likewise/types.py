"""Pure values of the public interface: vectors, matches, index configuration and info.

Nothing here does I/O. Field names follow Vectorize, in snake_case (the HTTP layer turns them into
camelCase where Vectorize's wire format wants it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

__all__ = [
    "Metric",
    "METRICS",
    "ReturnMetadata",
    "MetadataType",
    "Vector",
    "Match",
    "QueryResult",
    "IndexConfig",
    "IndexInfo",
    "MetadataIndex",
    "VectorList",
    "higher_is_closer",
]

Metric = Literal["cosine", "euclidean", "dot-product"]
METRICS: tuple[str, ...] = ("cosine", "euclidean", "dot-product")
ReturnMetadata = Literal["none", "indexed", "all"]
MetadataType = Literal["string", "number", "boolean"]


def higher_is_closer(metric: str) -> bool:
    """Whether a larger score means a closer vector (cosine); euclidean and dot-product sort ascending."""
    return metric == "cosine"


@dataclass
class Vector:
    """One vector to store: a string id, its values, optional metadata and namespace."""

    id: str
    values: Sequence[float] | np.ndarray
    metadata: dict[str, Any] | None = None
    namespace: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The Vectorize JSON form (``values`` as a list of floats; absent fields left out)."""
        out: dict[str, Any] = {"id": self.id, "values": [float(x) for x in self.values]}
        if self.metadata is not None:
            out["metadata"] = self.metadata
        if self.namespace is not None:
            out["namespace"] = self.namespace
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vector):
            return NotImplemented
        return (
            self.id == other.id
            and self.metadata == other.metadata
            and self.namespace == other.namespace
            and np.array_equal(np.asarray(self.values, np.float32), np.asarray(other.values, np.float32))
        )


@dataclass(slots=True)  # slots: a query builds k of these, and they are lighter and faster to make
class Match:
    """One query result. ``values``, ``metadata`` and ``namespace`` are filled when asked for."""

    id: str
    score: float
    values: list[float] | None = None
    metadata: dict[str, Any] | None = None
    namespace: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The Vectorize JSON form; fields that were not asked for are left out."""
        out: dict[str, Any] = {"id": self.id, "score": self.score}
        if self.values is not None:
            out["values"] = self.values
        if self.metadata is not None:
            out["metadata"] = self.metadata
        if self.namespace is not None:
            out["namespace"] = self.namespace
        return out


@dataclass
class QueryResult:
    """The answer to a query: the matches, best first, and how many there are."""

    matches: list[Match]

    @property
    def count(self) -> int:
        return len(self.matches)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.matches]

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "matches": [m.to_dict() for m in self.matches]}


@dataclass(frozen=True)
class IndexConfig:
    """How an index was created. The configuration cannot change after creation."""

    name: str
    dimensions: int
    metric: Metric
    description: str | None = None
    model: str | None = None  # the text model the index embeds with, if any
    embedder: str | None = None  # the kind of embedder it is bound to: text, records, items, images
    created_on: str = ""
    modified_on: str = ""


@dataclass(frozen=True)
class IndexInfo:
    """The state of an index: size and how far mutations have been processed."""

    dimensions: int
    vector_count: int
    processed_up_to_mutation: str | None
    processed_up_to_datetime: str | None


@dataclass(frozen=True)
class MetadataIndex:
    """A declared metadata index on one (possibly dotted) property."""

    property_name: str
    index_type: MetadataType


@dataclass
class VectorList:
    """One page of vector ids; pass ``next_cursor`` back to get the next page."""

    vectors: list[str]
    total_count: int
    is_truncated: bool
    next_cursor: str | None = None
    cursor_expiration_timestamp: str | None = None
    count: int = field(init=False)

    def __post_init__(self) -> None:
        self.count = len(self.vectors)

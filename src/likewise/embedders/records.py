"""Structured records as vectors: :class:`RecordEmbedder`.

A record is a dict of fields; each declared field becomes a block of columns and the vector is the
blocks side by side, so euclidean distance between vectors adds up the fields' differences::

    shows = RecordEmbedder({"genre": "category", "year": "number", "episode_length": "range"},
                           scaling="standard", weights={"genre": 2.0})
    shows.fit(records).embed_batch(records)

Field types and their columns:

``number``   one column, the value.
``category`` one-hot over the values seen in ``fit`` (or declared with ``Field(values=…)``); a list
             of values is multi-hot scaled to unit length; an unseen value encodes as all zeros,
             halfway between every known value, and is counted in ``unseen``.
``range``    ``"22-24"``, ``[22, 24]`` or a single number: low and high end, sharing one scale, and
             divided by √2 so shifting a range by δ moves it as far as a number changing by δ.
``geo``      a ``(lat, lon)`` pair (or ``{"lat", "lon"}`` dict, or ``"lat,lon"``) placed on a sphere
             the size of the Earth: distance is the straight-line (chord) distance in kilometres,
             which follows great-circle distance, across the antimeridian and near the poles too.
``text``     a :class:`~likewise.embedders.text.TextEmbedder` vector (unit length, never rescaled).

``scaling`` applies to numbers, ranges and geo fields: ``none`` keeps natural units (degrees,
people, kilometres), ``standard`` centres on the mean and divides by the standard deviation
(for geo: by the root-mean-square distance from the centroid, keeping geometry), ``minmax`` maps
the fitted span to [0, 1] (geo: by the widest coordinate span). Each block is then multiplied by
its field's weight. Missing values are filled with the fitted mean (centroid), zeros for categories
and texts. The fitted state round-trips through :meth:`RecordEmbedder.to_dict` / ``save`` as JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from likewise.embedders.base import Embedder, FloatMatrix, Metric
from likewise.errors import InvalidArgumentError, InvalidInputError

__all__ = ["Field", "FieldType", "RecordEmbedder", "Scaling"]

FieldType = Literal["number", "category", "range", "geo", "text"]
Scaling = Literal["none", "standard", "minmax"]

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
_FORMAT = "likewise.records/1"
_RANGE = re.compile(
    r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|–|—|to|\.\.)\s*(-?\d+(?:\.\d+)?)\s*$", re.IGNORECASE
)
_NEEDS_NUMERIC_FIT = ("number", "range", "geo")
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Field:
    """One field of a record: its ``type``, its ``weight``, and (categories) declared ``values``."""

    type: FieldType
    weight: float = 1.0
    values: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in get_args(FieldType):
            raise InvalidArgumentError(
                f"unknown field type {self.type!r}; use one of {', '.join(get_args(FieldType))}"
            )
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise InvalidArgumentError(
                f"field weight must be a finite number ≥ 0, not {self.weight}"
            )
        if self.values is not None and self.type != "category":
            raise InvalidArgumentError("values= is only for category fields")


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInputError(f"field {name!r} must be a number, not {value!r}", field=name)
    try:
        x = float(value)
    except ValueError:
        raise InvalidInputError(
            f"field {name!r} must be a number, not {value!r}", field=name
        ) from None
    return None if math.isnan(x) else x


def _range(name: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        match = _RANGE.match(value)
        if match:
            low, high = float(match.group(1)), float(match.group(2))
        else:
            single = _number(name, value)
            if single is None:
                return None
            low = high = single
    elif isinstance(value, Sequence) and len(value) == 2:
        a, b = _number(name, value[0]), _number(name, value[1])
        if a is None or b is None:
            return None
        low, high = a, b
    else:
        single = _number(name, value)
        if single is None:
            return None
        low = high = single
    return (min(low, high), max(low, high))


def _geo(name: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        lat = value.get("lat", value.get("latitude"))
        lon = value.get("lon", value.get("lng", value.get("long", value.get("longitude"))))
        pair: Any = (lat, lon)
    elif isinstance(value, str):
        pair = value.split(",")
    else:
        pair = value
    if not isinstance(pair, Sequence) or len(pair) != 2:
        raise InvalidInputError(
            f"field {name!r} must be a (lat, lon) pair, not {value!r}", field=name
        )
    lat, lon = _number(name, pair[0]), _number(name, pair[1])
    if lat is None or lon is None:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInputError(
            f"field {name!r}: latitude must be within ±90 and longitude within ±180, got {value!r}",
            field=name,
        )
    return (lat, lon)


def _to_xyz(lat: float, lon: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lon)
    return (
        EARTH_RADIUS_KM * math.cos(phi) * math.cos(lam),
        EARTH_RADIUS_KM * math.cos(phi) * math.sin(lam),
        EARTH_RADIUS_KM * math.sin(phi),
    )


def _labels(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value]
    return [str(value)]


class RecordEmbedder(Embedder[Mapping[str, Any]]):
    """Embeds dict records field by field; see the module docstring for the encoding.

    ``fields`` maps a field name to a type name or a :class:`Field`; ``weights`` overrides weights
    by name. Call :meth:`fit` on representative records first, unless every field needs no fitted
    state (``scaling="none"`` with numbers, ranges, geo, texts and declared categories).
    ``text_embedder`` embeds ``text`` fields (default: a :class:`TextEmbedder` with the default model,
    created when first needed).
    """

    metric: Metric = "euclidean"

    def __init__(
        self,
        fields: Mapping[str, FieldType | Field],
        *,
        scaling: Scaling = "standard",
        weights: Mapping[str, float] | None = None,
        text_embedder: Embedder[str] | None = None,
        text_model: str | None = None,
    ) -> None:
        if not fields:
            raise InvalidArgumentError("a RecordEmbedder needs at least one field")
        if scaling not in get_args(Scaling):
            raise InvalidArgumentError(f"scaling must be none, standard or minmax, not {scaling!r}")
        self.scaling: Scaling = scaling
        self.fields: dict[str, Field] = {}
        for name, spec in fields.items():
            self.fields[name] = spec if isinstance(spec, Field) else Field(spec)
        for name, weight in (weights or {}).items():
            if name not in self.fields:
                raise InvalidArgumentError(f"weight given for unknown field {name!r}", field=name)
            f = self.fields[name]
            self.fields[name] = Field(f.type, float(weight), f.values)
        self._text_embedder = text_embedder
        self.text_model = text_model or (text_embedder.model_id if text_embedder else None)
        if self.text_model is None and any(f.type == "text" for f in self.fields.values()):
            from likewise.embedders.models import DEFAULT_TEXT_MODEL

            self.text_model = DEFAULT_TEXT_MODEL
        # Fitted state per field: {"mean", "scale", "offset"...} or {"values": [...]}.
        self.state: dict[str, dict[str, Any]] = {}
        for name, f in self.fields.items():
            if f.type == "category" and f.values is not None:
                self.state[name] = {"values": list(dict.fromkeys(f.values))}
        #: Category values met by ``embed_batch`` that ``fit`` never saw, per field.
        self.unseen: dict[str, int] = {}
        self._refresh()

    # -- fitting --------------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        """Whether every field has the state it needs to encode."""
        return all(not self._needs_fit(n) for n in self.fields)

    def _needs_fit(self, name: str) -> bool:
        f = self.fields[name]
        if name in self.state or f.type == "text":
            return False
        return f.type == "category" or self.scaling != "none"

    def fit(self, records: Sequence[Mapping[str, Any]]) -> RecordEmbedder:
        """Learn category values and scaling from ``records``; returns ``self`` for chaining."""
        rows = self._check(records)
        if not rows:
            raise InvalidInputError("fit needs at least one record")
        for name, f in self.fields.items():
            column = [r.get(name) for r in rows]
            if f.type == "category":
                seen = dict.fromkeys(f.values or ())
                for v in column:
                    seen.update(dict.fromkeys(_labels(v)))
                self.state[name] = {"values": list(seen)}
            elif f.type == "number":
                nums = [x for v in column if (x := _number(name, v)) is not None]
                self.state[name] = self._scale_1d(name, nums)
            elif f.type == "range":
                pairs = [p for v in column if (p := _range(name, v)) is not None]
                state = self._scale_1d(name, [x for p in pairs for x in p])
                state["fill"] = _mean_pair(pairs, state["mean"])
                self.state[name] = state
            elif f.type == "geo":
                self.state[name] = self._scale_geo(name, column)
        self._refresh()
        return self

    def _scale_1d(self, name: str, values: list[float]) -> dict[str, Any]:
        if not values:
            raise InvalidInputError(f"field {name!r} has no values to fit", field=name)
        arr = np.asarray(values, dtype=np.float64)
        mean = float(arr.mean())
        if self.scaling == "standard":
            offset, scale = mean, float(arr.std())
        elif self.scaling == "minmax":
            offset, scale = float(arr.min()), float(arr.max() - arr.min())
        else:
            offset, scale = 0.0, 1.0
        # A constant column carries no information; keep it finite rather than dividing by zero.
        return {"mean": mean, "offset": offset, "scale": scale if scale > 0 else 1.0}

    def _scale_geo(self, name: str, column: list[Any]) -> dict[str, Any]:
        points = [_to_xyz(*p) for v in column if (p := _geo(name, v)) is not None]
        if not points:
            raise InvalidInputError(f"field {name!r} has no values to fit", field=name)
        xyz = np.asarray(points, dtype=np.float64)
        centroid = xyz.mean(axis=0)
        if self.scaling == "standard":
            offset, scale = centroid, float(np.sqrt(((xyz - centroid) ** 2).sum(axis=1).mean()))
        elif self.scaling == "minmax":
            offset, scale = xyz.min(axis=0), float((xyz.max(axis=0) - xyz.min(axis=0)).max())
        else:
            offset, scale = np.zeros(3), 1.0
        return {
            "mean": centroid.tolist(),
            "offset": np.asarray(offset).tolist(),
            "scale": scale if scale > 0 else 1.0,
        }

    # -- encoding -------------------------------------------------------------------------------

    def _width(self, name: str) -> int:
        f = self.fields[name]
        if f.type == "number":
            return 1
        if f.type == "range":
            return 2
        if f.type == "geo":
            return 3
        if f.type == "category":
            return len(self.state[name]["values"]) if name in self.state else 0
        return self.text_embedder.dimensions

    def _refresh(self) -> None:
        text_ready = self._text_embedder is not None or not any(
            f.type == "text" for f in self.fields.values()
        )
        self.dimensions = (
            sum(self._width(n) for n in self.fields) if self.fitted and text_ready else 0
        )
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
        self.model_id = f"records:{digest[:16]}"

    @property
    def text_embedder(self) -> Embedder[str]:
        """The embedder for ``text`` fields, created on first use."""
        if self._text_embedder is None:
            from likewise.embedders.text import TextEmbedder

            self._text_embedder = TextEmbedder(self.text_model)
            self.text_model = self._text_embedder.model_id
        return self._text_embedder

    def columns(self) -> list[str]:
        """A name for every column of the vectors (``genre=sitcom``, ``year``, ``where.x``…)."""
        names: list[str] = []
        for name, f in self.fields.items():
            if f.type == "number":
                names.append(name)
            elif f.type == "range":
                names += [f"{name}.low", f"{name}.high"]
            elif f.type == "geo":
                names += [f"{name}.x", f"{name}.y", f"{name}.z"]
            elif f.type == "category":
                names += [f"{name}={v}" for v in self.state.get(name, {}).get("values", [])]
            else:
                names += [f"{name}[{i}]" for i in range(self._width(name))]
        return names

    def _check(self, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        if isinstance(records, Mapping):
            raise InvalidInputError("pass a list of records (dicts), not a single dict")
        rows = list(records)
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise InvalidInputError(
                    f"record {i} is a {type(r).__name__}, not a dict", position=i
                )
        return rows

    def embed_batch(self, items: Sequence[Mapping[str, Any]]) -> FloatMatrix:
        """Encode records; float32 ``[n, dimensions]``, meant for euclidean distance."""
        rows = self._check(items)
        pending = [n for n in self.fields if self._needs_fit(n)]
        if pending:
            raise InvalidArgumentError(
                f"fields {pending} need fitted state (category values or {self.scaling} scaling); "
                "call fit(records) first",
                fields=pending,
            )
        blocks = [
            self._encode(name, [r.get(name) for r in rows]) * self.fields[name].weight
            for name in self.fields
        ]
        out = np.concatenate(blocks, axis=1) if rows else np.zeros((0, self.dimensions))
        if not self.dimensions:
            self._refresh()
        return np.ascontiguousarray(out, dtype=np.float32)

    def _encode(self, name: str, column: list[Any]) -> Floats:
        f = self.fields[name]
        state = self.state.get(name, {"offset": 0.0, "scale": 1.0})
        n = len(column)
        if f.type == "number":
            values = np.empty((n, 1))
            for i, v in enumerate(column):
                x = _number(name, v)
                values[i, 0] = x if x is not None else self._fill(name, state, i)
            scaled: Floats = (values - state["offset"]) / state["scale"]
            return scaled
        if f.type == "range":
            pairs = np.empty((n, 2))
            for i, v in enumerate(column):
                p = _range(name, v)
                pairs[i] = p if p is not None else self._fill(name, state, i, "fill")
            scaled = (pairs - state["offset"]) / state["scale"] / math.sqrt(2)
            return scaled
        if f.type == "geo":
            xyz = np.empty((n, 3))
            for i, v in enumerate(column):
                p = _geo(name, v)
                xyz[i] = _to_xyz(*p) if p is not None else self._fill(name, state, i)
            scaled = (xyz - np.asarray(state["offset"])) / state["scale"]
            return scaled
        if f.type == "category":
            index = {v: j for j, v in enumerate(state["values"])}
            hot = np.zeros((n, len(index)))
            for i, v in enumerate(column):
                labels = _labels(v)
                known = [index[label] for label in labels if label in index]
                if len(known) < len(labels):
                    self.unseen[name] = self.unseen.get(name, 0) + len(labels) - len(known)
                if known:
                    hot[i, known] = 1.0 / math.sqrt(len(known))
            return hot
        texts = ["" if v is None else str(v) for v in column]
        present = np.array([v is not None for v in column])
        vectors: Floats = self.text_embedder.embed_batch(texts).astype(np.float64)
        vectors *= present[:, None]
        return vectors

    def _fill(self, name: str, state: dict[str, Any], row: int, key: str = "mean") -> Any:
        if key not in state:
            raise InvalidInputError(
                f"record {row} has no value for {name!r}; call fit() first so that missing values "
                "can be filled with the fitted mean",
                field=name,
                position=row,
            )
        return state[key]

    # -- persistence ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The configuration and fitted state as plain JSON-safe data."""
        return {
            "format": _FORMAT,
            "scaling": self.scaling,
            "text_model": self.text_model,
            "fields": {
                name: {
                    "type": f.type,
                    "weight": f.weight,
                    **({"values": list(f.values)} if f.values is not None else {}),
                    **({"state": self.state[name]} if name in self.state else {}),
                }
                for name, f in self.fields.items()
            },
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], text_embedder: Embedder[str] | None = None
    ) -> RecordEmbedder:
        """Rebuild an embedder from :meth:`to_dict` output; it encodes exactly as before."""
        if data.get("format") != _FORMAT:
            raise InvalidArgumentError(
                f"not a saved RecordEmbedder (format {data.get('format')!r}, expected {_FORMAT!r})"
            )
        fields = {
            name: Field(
                spec["type"],
                float(spec.get("weight", 1.0)),
                tuple(spec["values"]) if "values" in spec else None,
            )
            for name, spec in data["fields"].items()
        }
        embedder = cls(
            fields,
            scaling=data["scaling"],
            text_embedder=text_embedder,
            text_model=data.get("text_model"),
        )
        for name, spec in data["fields"].items():
            if "state" in spec:
                embedder.state[name] = dict(spec["state"])
        embedder._refresh()
        return embedder

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` to ``path`` as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, text_embedder: Embedder[str] | None = None) -> RecordEmbedder:
        """Read an embedder written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), text_embedder)


def _mean_pair(pairs: list[tuple[float, float]], default: float) -> list[float]:
    if not pairs:
        return [default, default]
    arr = np.asarray(pairs, dtype=np.float64)
    return [float(arr[:, 0].mean()), float(arr[:, 1].mean())]

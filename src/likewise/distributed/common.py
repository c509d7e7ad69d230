"""Pure pieces of the sharded database, shared by the coordinator and the shard actors (no Ray here).

* routing: :func:`shard_of` sends an id to ``blake2b-64(utf-8 id) mod N`` — stable across processes,
  machines and Python versions (unlike ``hash()``);
* the manifest ``<path>/likewise-shards.json``: the shard count, the routing scheme and the database's
  id, written once when a sharded database is created, so that reopening with another shard count
  fails clearly instead of sending ids to the wrong shard;
* the shard marker ``<path>/shard-<i>/SHARD.json``: written when a shard is created and checked
  whenever a shard actor (re)opens its directory, so that an actor restarted where its data is not
  fails loudly instead of serving an empty shard;
* mutation ids: a *vector clock*, one mutation sequence per shard, ``"12.0.7"``;
* the composite ``list_vectors`` cursor;
* :class:`ShardUnavailableError` and :class:`ShardedQueryResult` (the ``partial`` answer).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorruptionError, InvalidArgumentError, InvalidCursorError, StorageError
from ..types import QueryResult

__all__ = [
    "MANIFEST",
    "MARKER",
    "ROUTING",
    "Manifest",
    "ShardStatus",
    "ShardUnavailableError",
    "ShardedQueryResult",
    "check_shard_count",
    "create_manifest",
    "decode_cursor",
    "encode_cursor",
    "format_clock",
    "parse_clock",
    "read_manifest",
    "route",
    "shard_dir",
    "shard_of",
]

ROUTING = "blake2b64-mod"
MANIFEST = "likewise-shards.json"
MARKER = "SHARD.json"
FORMAT = 1


class ShardUnavailableError(StorageError):
    """A shard did not answer (its actor died, is restarting, timed out, or lost its data).

    ``details``: ``shards`` (the shard numbers that failed) and ``reason``. Nothing was silently
    left out: a query either has every shard's answer, or raises this, or — only when the caller
    passed ``allow_partial=True`` — returns a :class:`ShardedQueryResult` with ``partial=True``.
    A write that raises this may have been applied on some shards; every write is idempotent
    (upsert, insert, delete by id), so retrying it is safe.
    """

    http_status = 503
    code = "shard_unavailable"


@dataclass
class ShardedQueryResult(QueryResult):
    """A :class:`~likewise.QueryResult` that also says whether some shards did not answer.

    ``partial`` is only ever ``True`` when the query was made with ``allow_partial=True``; then
    ``missing_shards`` names the shards whose vectors are not in ``matches``.
    """

    partial: bool = False
    missing_shards: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.partial:
            out["partial"] = True
            out["missingShards"] = list(self.missing_shards)
        return out


@dataclass(frozen=True)
class ShardStatus:
    """Where a shard actor runs and whether its store is open."""

    shard: int
    node_id: str
    pid: int
    directory: str
    open: bool


@dataclass(frozen=True)
class Manifest:
    """What ``<path>/likewise-shards.json`` records: fixed for the life of the database."""

    db_id: str
    shards: int
    routing: str = ROUTING
    format: int = FORMAT


def shard_of(vid: str, shards: int) -> int:
    """The shard that owns id ``vid``: ``blake2b(utf-8 id, 8 bytes) mod shards``."""
    digest = hashlib.blake2b(vid.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def route(ids: Sequence[str], shards: int) -> dict[int, list[int]]:
    """Positions of ``ids`` grouped by owning shard (positions in order, shards ascending)."""
    groups: dict[int, list[int]] = {}
    for i, vid in enumerate(ids):
        groups.setdefault(shard_of(vid, shards), []).append(i)
    return dict(sorted(groups.items()))


def shard_dir(root: str | Path, shard: int) -> Path:
    return Path(root) / f"shard-{shard}"


def read_manifest(root: str | Path) -> Manifest | None:
    """The manifest of the sharded database at ``root``, or ``None`` when there is none."""
    path = Path(root) / MANIFEST
    try:
        raw = json.loads(path.read_text())
        manifest = Manifest(
            db_id=str(raw["db_id"]), shards=int(raw["shards"]), routing=str(raw["routing"]), format=int(raw["format"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(f"{path} is not a likewise shard manifest: {exc}") from exc
    if manifest.routing != ROUTING or manifest.format != FORMAT:
        raise CorruptionError(
            f"{path} uses routing {manifest.routing!r} (format {manifest.format}); this likewise knows "
            f"{ROUTING!r} (format {FORMAT})"
        )
    if manifest.shards < 1:
        raise CorruptionError(f"{path} says {manifest.shards} shards")
    return manifest


def create_manifest(root: str | Path, shards: int) -> Manifest:
    """Write a new manifest (atomically; refuses to replace one that exists)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(db_id=uuid.uuid4().hex, shards=shards)
    tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest.__dict__, indent=2) + "\n")
    try:
        os.link(tmp, root / MANIFEST)  # fails if another process created it first
    except FileExistsError:
        existing = read_manifest(root)
        assert existing is not None
        return existing
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def check_shard_count(manifest: Manifest, shards: int | None, root: str | Path) -> int:
    if shards is not None and shards != manifest.shards:
        raise InvalidArgumentError(
            f"{root} holds a database of {manifest.shards} shards (routing {manifest.routing}); it "
            f"cannot be opened with shards={shards}. Re-sharding means exporting and importing.",
            expected=manifest.shards,
            received=shards,
        )
    return manifest.shards


# -- mutation ids: vector clocks ----------------------------------------------------------------------


def format_clock(seqs: Sequence[int]) -> str | None:
    """``[12, 0, 7]`` → ``"12.0.7"``; all zeros (no mutation anywhere) → ``None``."""
    if not any(seqs):
        return None
    return ".".join(str(int(s)) for s in seqs)


def parse_clock(clock: str | None, shards: int) -> list[int]:
    """The per-shard sequences of a clock (``None`` → zeros)."""
    if clock is None:
        return [0] * shards
    parts = [int(p) for p in clock.split(".")]
    if len(parts) != shards:
        raise InvalidArgumentError(f"mutation id {clock!r} is not a clock of {shards} shards")
    return parts


# -- list_vectors cursors -----------------------------------------------------------------------------


def encode_cursor(db_id: str, index: str, after: str, snapshots: Sequence[int], expires: float) -> str:
    raw = json.dumps({"d": db_id, "x": index, "a": after, "m": list(snapshots), "e": int(expires)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, db_id: str, index: str, shards: int, now: float) -> tuple[str, list[int], float]:
    """``(after, per-shard snapshots, expires)`` of a cursor this index handed out."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after, snapshots, expires = raw["a"], [int(s) for s in raw["m"]], float(raw["e"])
        owner = (raw["d"], raw["x"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCursorError(f"cursor {cursor[:40]!r} is not a cursor this index handed out") from exc
    if owner != (db_id, index) or not isinstance(after, str) or len(snapshots) != shards:
        raise InvalidCursorError("cursor belongs to another index")
    if expires < now:
        raise InvalidCursorError("cursor has expired; start again without a cursor")
    return after, snapshots, expires

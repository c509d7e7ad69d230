"""Scale-out with Ray (the ``ray`` extra): a sharded database, and batch embedding with Ray Data.

::

    import likewise.distributed as lwd

    db = lwd.open("./sharded", shards=4)              # starts a local Ray, or address="auto"/"ray://…"
    idx = db.create_index("docs", dimensions=384)      # a likewise.Database / likewise.Index, sharded
    idx.upsert_arrays(ids, matrix)                     # routed by blake2b(id) mod 4
    idx.query(q, top_k=10, filter={"lang": "en"})      # scattered to every shard, top-k merged
    lwd.embed_dataset("docs.jsonl", idx, model=None)   # Ray Data: read, embed on an actor pool, upsert

Modules: :mod:`.common` (routing, manifest, clocks, cursors, the error; no Ray), :mod:`.shard` (the
shard actor), :mod:`.sharded` (the coordinator: ``ShardedDatabase``, ``ShardedIndex``, ``open``),
:mod:`.batch` (``embed_dataset``). Ray is imported only when a function here needs it, never by
``import likewise`` or ``import likewise.distributed``.
"""

from .batch import EmbedProgress, EmbedReport, embed_dataset
from .common import ShardedQueryResult, ShardStatus, ShardUnavailableError, shard_of
from .sharded import ShardedDatabase, ShardedIndex, open

__all__ = [
    "EmbedProgress",
    "EmbedReport",
    "ShardStatus",
    "ShardUnavailableError",
    "ShardedDatabase",
    "ShardedIndex",
    "ShardedQueryResult",
    "embed_dataset",
    "open",
    "shard_of",
]

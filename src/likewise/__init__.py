"""likewise: embed, store, find and serve vectors, locally by default.

The embedded database::

    import likewise
    db = likewise.open("./data")
    idx = db.create_index("shows", dimensions=384, metric="cosine")
    idx.upsert([likewise.Vector(id="seinfeld", values=[...], metadata={"genre": "sitcom"})])
    idx.query([...], top_k=5, filter={"genre": "sitcom"})
"""

from typing import TYPE_CHECKING, Any

from . import errors
from .database import Database, open
from .documents import ingest
from .engines import EngineParams
from .index import Index
from .search import SearchHit, SearchResult
from .semantic_cache import SemanticCache
from .types import IndexConfig, IndexInfo, Match, MetadataIndex, QueryResult, Vector, VectorList

if TYPE_CHECKING:
    from .client import Client

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Database",
    "EngineParams",
    "Index",
    "IndexConfig",
    "IndexInfo",
    "Match",
    "MetadataIndex",
    "QueryResult",
    "SearchHit",
    "SearchResult",
    "SemanticCache",
    "Vector",
    "VectorList",
    "errors",
    "ingest",
    "open",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Client needs httpx (the "server" extra), so it is imported on first use, not with likewise.
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(f"module 'likewise' has no attribute {name!r}")

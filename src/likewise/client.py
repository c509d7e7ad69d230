"""``likewise.Client``: the embedded ``Database``/``Index`` interface, over HTTP.

::

    client = likewise.Client("http://127.0.0.1:8787", token="…")
    idx = client.create_index("shows", dimensions=384)
    idx.upsert([likewise.Vector("a", [...])])
    idx.query([...], top_k=5, filter={"genre": "sitcom"})

Same method names, signatures and return types as :class:`likewise.Database` and
:class:`likewise.Index` (the conformance suite runs against both and demands identical answers).
Arguments go to the server as given, so the server's core validators raise the same errors they
raise in-process; errors come back as the same :mod:`likewise.errors` classes, rebuilt from the wire
``code``. Failures that only exist over HTTP (authentication, connection) are
:class:`likewise.server.errors.ApiError`, also a :class:`~likewise.errors.LikewiseError`.

One difference: a write larger than one request (``batch_size`` vectors, default 5,000, Vectorize's
HTTP limit) is sent as several requests, each atomic on its own.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np

from . import errors as _errors
from .errors import LikewiseError
from .server.errors import ApiError
from .types import IndexConfig, IndexInfo, Match, MetadataIndex, QueryResult, Vector, VectorList

__all__ = ["Client", "RemoteIndex"]

_ERROR_CLASSES: dict[str, type[LikewiseError]] = {
    cls.code: cls for cls in (getattr(_errors, name) for name in _errors.__all__)
}
_MAX_REQUEST_BYTES = 40_000_000  # stay well under the server's default 100 MB body limit


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return repr(obj)  # the server's validators then reject it with the usual error


def _dumps(payload: Any) -> bytes:
    # allow_nan: NaN/Infinity reach the server, whose validators reject them exactly as in-process.
    return json.dumps(payload, default=_default, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error_from(status: int, body: bytes) -> LikewiseError:
    try:
        err = json.loads(body)["error"]
        code, message, details = str(err["code"]), str(err["message"]), dict(err.get("details") or {})
    except (ValueError, KeyError, TypeError):
        text = body[:200].decode("utf-8", "replace")
        return ApiError(status, "http_error", f"HTTP {status}: {text}")
    cls = _ERROR_CLASSES.get(code)
    if cls is None:
        return ApiError(status, code, message, **details)
    return cls(message, **details)


class _OneWrite:
    """Send a request's head and body in one write (``http.client`` makes two).

    Two small writes are two TCP segments and two wake-ups of the server for every call; on a
    loopback that was a measurable share of a query's round trip.
    """

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        if isinstance(message_body, bytes) and not encode_chunked:
            buffer: list[bytes] = self._buffer  # type: ignore[attr-defined]
            buffer.extend((b"", b""))
            head = b"\r\n".join(buffer)
            del buffer[:]
            self.send(head + message_body)  # type: ignore[attr-defined]
            return
        super()._send_output(message_body, encode_chunked)  # type: ignore[misc]


class _HTTPConnection(_OneWrite, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


class _Connections:
    """Keep-alive HTTP/1.1 connections, one per thread (``http.client`` connections are not
    thread-safe). The standard library costs about a third of httpx's CPU per request, which is most
    of the client's share of a query's cost."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _errors.InvalidArgumentError(f"server URL must be http(s)://host[:port][/path], got {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = headers
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        cls = _HTTPSConnection if self._https else _HTTPConnection
        conn = cls(self._host, self._port, timeout=self._timeout)
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None

    def request(self, method: str, path: str, body: bytes | None, params: Mapping[str, str] | None) -> tuple[int, bytes]:
        target = self._prefix + path + ("?" + urlencode(params) if params else "")
        headers = dict(self._headers)
        if body is not None:
            headers["content-type"] = "application/json"
        while True:
            conn, reused = self._connection()
            try:
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop(conn)
                if reused:  # the server closed an idle keep-alive connection: one fresh try
                    continue
                raise ApiError(503, "connection_error", f"cannot reach the server: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(conn)
                raise ApiError(503, "connection_error", f"cannot reach the server: {exc}") from exc
            if response.will_close:
                self._drop(conn)
            return response.status, data

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class Client:
    """A likewise server, with the interface of :class:`likewise.Database`."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8787",
        token: str | None = None,
        *,
        timeout: float = 60.0,
        batch_size: int = 5000,
    ) -> None:
        headers = {"accept": "application/json", "user-agent": "likewise-client"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self._http = _Connections(self.url, headers, timeout)

    def __repr__(self) -> str:
        return f"likewise.Client({self.url!r})"

    # -- plumbing ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, payload: Any = None, params: Mapping[str, str] | None = None) -> Any:
        content = _dumps(payload) if payload is not None else None
        status, body = self._http.request(method, path, content, params)
        if status >= 400:
            raise _error_from(status, body)
        return json.loads(body)

    # -- the Database interface -------------------------------------------------------------------

    def create_index(
        self,
        name: str,
        dimensions: int | None = None,
        metric: str | None = None,
        description: str | None = None,
        *,
        model: str | None = None,
        embedder: Any | None = None,
    ) -> RemoteIndex:
        """Create an index; ``model`` binds one of the server's text models (it sets dimensions and metric).

        ``embedder`` objects live in-process and cannot be sent to a server: pass ``model=`` instead.
        """
        if embedder is not None:
            raise _errors.InvalidArgumentError(
                "a remote index cannot be bound to an in-process embedder object; pass model=<model id>"
            )
        payload: dict[str, Any] = {"name": name, "dimensions": dimensions, "description": description}
        if metric is not None:
            payload["metric"] = metric
        if model is not None:
            payload["model"] = model
        return RemoteIndex(self, _index_config(self._request("POST", "/v1/indexes", payload)))

    def index(self, name: str) -> RemoteIndex:
        return RemoteIndex(self, _index_config(self._request("GET", f"/v1/indexes/{_seg(name)}")))

    def list_indexes(self) -> list[IndexConfig]:
        return [_index_config(c) for c in self._request("GET", "/v1/indexes")["indexes"]]

    def delete_index(self, name: str) -> None:
        self._request("DELETE", f"/v1/indexes/{_seg(name)}")

    def embed(self, texts: str | Sequence[str], model: str | None = None, *, truncate: bool = False) -> np.ndarray:
        """Embed texts with the server's model; float32 ``[n, d]`` (``[d]`` for one string)."""
        payload: dict[str, Any] = {"input": texts, "truncate": truncate}
        if model is not None:
            payload["model"] = model
        out = np.asarray(self._request("POST", "/v1/embed", payload)["vectors"], dtype=np.float32)
        return out[0] if isinstance(texts, str) else out

    def health(self) -> dict[str, Any]:
        return dict(self._request("GET", "/healthz"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


def _index_config(data: Mapping[str, Any]) -> IndexConfig:
    # Fields a newer server adds are left out rather than failing this client.
    known = {f.name for f in dataclasses.fields(IndexConfig)}
    return IndexConfig(**{k: v for k, v in data.items() if k in known})


class RemoteIndex:
    """One index on a likewise server, with the interface of :class:`likewise.Index`."""

    def __init__(self, client: Client, config: IndexConfig) -> None:
        self._client = client
        self._config = config
        self._base = f"/v1/indexes/{_seg(config.name)}"

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def dimensions(self) -> int:
        return self._config.dimensions

    @property
    def metric(self) -> str:
        return self._config.metric

    @property
    def config(self) -> IndexConfig:
        return self._config

    @property
    def has_embedder(self) -> bool:
        """Whether the index is bound to an embedder on the server (``query_text`` works)."""
        return self._config.embedder is not None

    def __repr__(self) -> str:
        return f"RemoteIndex(name={self.name!r}, dimensions={self.dimensions}, metric={self.metric!r})"

    def __len__(self) -> int:
        return self.info().vector_count

    def _call(self, method: str, path: str, payload: Any = None, params: Mapping[str, str] | None = None) -> Any:
        return self._client._request(method, self._base + path, payload, params)

    def info(self) -> IndexInfo:
        return IndexInfo(**self._call("GET", "/info"))

    # -- writing ----------------------------------------------------------------------------------

    def _rows_per_request(self) -> int:
        per_row = self.dimensions * 24 + 256  # JSON floats are ~20 characters, plus id and metadata
        return max(1, min(self._client.batch_size, _MAX_REQUEST_BYTES // per_row))

    def _write(self, op: str, vectors: Iterable[Vector | Mapping[str, Any]]) -> str:
        items = list(vectors)
        binary = _binary_rows(items)
        step = self._client.batch_size if binary is not None else self._rows_per_request()
        mutation = ""
        for start in range(0, max(len(items), 1), step):
            part = items[start : start + step]
            if binary is not None:
                payload = _columnar(part, binary[start : start + step])  # type: ignore[arg-type]
            else:
                payload = {"vectors": [_wire_vector(v) for v in part]}
            mutation = self._call("POST", f"/{op}", payload)["mutation_id"]
        return str(mutation)

    def insert(self, vectors: Iterable[Vector | Mapping[str, Any]]) -> str:
        """Add vectors; ids that already exist are left as they are. Returns the mutation id."""
        return self._write("insert", vectors)

    def upsert(self, vectors: Iterable[Vector | Mapping[str, Any]]) -> str:
        """Create or fully replace vectors. Returns the mutation id."""
        return self._write("upsert", vectors)

    def upsert_arrays(
        self,
        ids: Sequence[str],
        matrix: np.ndarray | Sequence[Sequence[float]],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        namespace: str | None = None,
    ) -> str:
        """Upsert a numpy batch; numeric 2-D arrays travel as base64 float32 (no JSON float parsing)."""
        ids = list(ids) if not isinstance(ids, str) else ids
        binary = isinstance(matrix, np.ndarray) and matrix.ndim == 2 and matrix.dtype.kind in "fiu"
        n = len(ids)
        step = self._client.batch_size if binary else self._rows_per_request()
        if isinstance(ids, str) or n <= step or (metadata is not None and len(metadata) != n):
            return self._upsert_arrays(ids, matrix, metadata, namespace, binary)
        if len(matrix) != n:
            return self._upsert_arrays(ids, matrix, metadata, namespace, binary)  # the server names the problem
        mutation = ""
        for start in range(0, n, step):
            part_meta = list(metadata[start : start + step]) if metadata is not None else None
            mutation = self._upsert_arrays(
                ids[start : start + step], matrix[start : start + step], part_meta, namespace, binary
            )
        return mutation

    def _upsert_arrays(self, ids: Any, matrix: Any, metadata: Any, namespace: Any, binary: bool) -> str:
        payload: dict[str, Any] = {"ids": ids, "metadata": metadata, "namespace": namespace}
        if binary:
            mat = np.ascontiguousarray(matrix, dtype="<f4")
            payload["values_b64"] = base64.b64encode(mat.tobytes()).decode("ascii")
            payload["shape"] = list(mat.shape)
        else:
            payload["values"] = matrix
        return str(self._call("POST", "/upsert_arrays", payload)["mutation_id"])

    def _upsert_objects(self, route: str, items: Sequence[Sequence[Any]], namespace: str | None) -> str:
        step = self._client.batch_size
        rows = [list(i) if isinstance(i, (tuple, list)) else i for i in items]
        mutation = ""
        for start in range(0, max(len(rows), 1), step):
            payload = {"items": rows[start : start + step], "namespace": namespace}
            mutation = self._call("POST", route, payload)["mutation_id"]
        return str(mutation)

    def upsert_texts(self, items: Sequence[Sequence[Any]], namespace: str | None = None) -> str:
        """Embed (on the server, with the index's model) and upsert ``(id, text[, metadata])`` items."""
        return self._upsert_objects("/upsert_texts", items, namespace)

    def upsert_records(self, items: Sequence[Sequence[Any]], namespace: str | None = None) -> str:
        """Embed (on the server, with the index's record embedder) and upsert ``(id, record[, metadata])``."""
        return self._upsert_objects("/upsert_records", items, namespace)

    def upsert_items(
        self, metadata: Mapping[str, Mapping[str, Any]] | None = None, namespace: str | None = None
    ) -> str:
        """Upsert every item the index's item embedder learned (``metadata`` by item id, optional)."""
        return str(self._call("POST", "/upsert_items", {"metadata": metadata, "namespace": namespace})["mutation_id"])

    def upsert_images(self, items: Sequence[Sequence[Any]], namespace: str | None = None) -> str:
        """Not available remotely: images are files or PIL objects of this process."""
        raise _errors.InvalidArgumentError(
            "upsert_images is not available over HTTP; embed the images locally and upsert the vectors"
        )

    def delete_by_ids(self, ids: Sequence[str]) -> str:
        """Delete vectors by id (unknown ids are ignored). Returns the mutation id."""
        return str(self._call("POST", "/delete_by_ids", {"ids": ids})["mutation_id"])

    # -- reading ----------------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str]) -> list[Vector]:
        found = self._call("POST", "/get_by_ids", {"ids": ids})["vectors"]
        return [Vector(v["id"], v["values"], v.get("metadata"), v.get("namespace")) for v in found]

    def _query(self, payload: dict[str, Any]) -> QueryResult:
        out = self._call("POST", "/query", payload)
        return QueryResult([Match(**m) for m in out["matches"]])

    @staticmethod
    def _options(top_k: Any, filter: Any, namespace: Any, return_values: Any, return_metadata: Any) -> dict[str, Any]:
        return {
            "top_k": top_k,
            "filter": filter,
            "namespace": namespace,
            "return_values": return_values,
            "return_metadata": return_metadata,
        }

    def query(
        self,
        vector: Sequence[float] | np.ndarray,
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
    ) -> QueryResult:
        """The ``top_k`` nearest vectors among those that pass ``filter`` (and are in ``namespace``)."""
        options = self._options(top_k, filter, namespace, return_values, return_metadata)
        if isinstance(vector, np.ndarray) and vector.ndim == 1 and vector.dtype.kind in "fiu":
            # float32 bytes instead of JSON floats: the core converts to float32 anyway, so the
            # answer is the same, and neither side formats or parses 384 decimal numbers.
            packed = base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
            return self._query({"vector_b64": packed, **options})
        return self._query({"vector": vector, **options})

    def query_by_id(
        self,
        id: str,
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
    ) -> QueryResult:
        """Query with the stored vector of ``id``."""
        return self._query({"id": id, **self._options(top_k, filter, namespace, return_values, return_metadata)})

    def query_text(
        self,
        text: str,
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
        *,
        model: str | None = None,
    ) -> QueryResult:
        """Query with the embedding of ``text``: by the index's own model, or by ``model`` when given."""
        payload = {"text": text, **self._options(top_k, filter, namespace, return_values, return_metadata)}
        if model is not None:
            payload["model"] = model
        return self._query(payload)

    def query_record(
        self,
        record: Mapping[str, Any],
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        return_values: bool = False,
        return_metadata: str = "none",
    ) -> QueryResult:
        """Query with the embedding of ``record`` by the index's record embedder (on the server)."""
        return self._query({"record": record, **self._options(top_k, filter, namespace, return_values, return_metadata)})

    def list_vectors(self, count: int = 100, cursor: str | None = None) -> VectorList:
        """One page of ids in id order; the iteration sees the index as it was at the first page."""
        params = {"count": str(count)}
        if cursor is not None:
            params["cursor"] = cursor
        page = self._call("GET", "/vectors", params=params)
        page.pop("count", None)
        return VectorList(**page)

    # -- metadata indexes -------------------------------------------------------------------------

    def create_metadata_index(self, property_name: str, index_type: str) -> str:
        payload = {"property_name": property_name, "index_type": index_type}
        return str(self._call("POST", "/metadata_indexes", payload)["mutation_id"])

    def list_metadata_indexes(self) -> list[MetadataIndex]:
        return [MetadataIndex(**m) for m in self._call("GET", "/metadata_indexes")["metadata_indexes"]]

    def delete_metadata_index(self, property_name: str) -> str:
        return str(self._call("DELETE", f"/metadata_indexes/{_seg(property_name)}")["mutation_id"])

    def optimize(self) -> None:
        self._call("POST", "/optimize", {})


def _binary_rows(items: list[Any]) -> np.ndarray | None:
    """All values as one float32 matrix, when every item is a ``Vector`` whose values are a numeric
    1-D numpy array of one common length; else ``None`` (the items then travel as JSON, untouched,
    so the server rejects bad ones exactly as the embedded database would)."""
    if not items or not all(
        isinstance(v, Vector) and isinstance(v.values, np.ndarray) and v.values.ndim == 1
        and v.values.dtype.kind in "fiu" and isinstance(v.id, str)
        for v in items
    ):
        return None
    if len({len(v.values) for v in items}) != 1:
        return None
    return np.stack([np.asarray(v.values) for v in items]).astype("<f4")


def _columnar(items: list[Vector], matrix: np.ndarray) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ids": [v.id for v in items],
        "values_b64": base64.b64encode(np.ascontiguousarray(matrix).tobytes()).decode("ascii"),
        "shape": list(matrix.shape),
    }
    if any(v.metadata is not None for v in items):
        payload["metadata"] = [v.metadata for v in items]
    if any(v.namespace is not None for v in items):
        payload["namespaces"] = [v.namespace for v in items]
    return payload


def _wire_vector(v: Any) -> Any:
    """A vector as JSON, without converting or checking anything (the server's core does that)."""
    if isinstance(v, Vector):
        return {"id": v.id, "values": v.values, "metadata": v.metadata, "namespace": v.namespace}
    if isinstance(v, Mapping):
        return dict(v)
    return v

"""Bad input and limits (issue #7 point 5), on the native and the Cloudflare routes.

* Every row of the bad-input table (reference/reliability.md §6) that the HTTP layer can be sent
  is one case: it must get the documented status and ``error.code`` (native) or the Vectorize
  status and numeric code (Cloudflare), and the store must be **byte-for-byte unchanged**: every
  row of ``indexes``, ``vectors`` (values, metadata, labels), ``mutations`` and
  ``metadata_indexes`` hashes the same before and after, and the vector count is the same. (401/403
  live in tests/server/test_server_auth.py, 507 in test_disk_full.py, the lock in
  tests/test_durability.py.)
* For each limit — body size, batch size, dimensions, id length, metadata size, top_k, filter
  size — a request exactly at the limit succeeds and one just over it fails with the documented
  code, again leaving the store unchanged.

The codes here are likewise's own names for the table's rows (``index_*`` rather than
``collection_*``, ``invalid_metadata`` for bad metadata keys); docs/reliability.md lists them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import likewise
from likewise.filters import NATIVE_MAX_FILTER_BYTES, VECTORIZE_MAX_FILTER_BYTES
from likewise.server import create_app
from likewise.server.testing import FakeEmbedder, ThreadedServer
from likewise.validation import LIMITS

BODY_LIMIT = 1_000_000  # --max-body-bytes for this server (the default is 100 MB)
BATCH_LIMIT = 5000  # --max-batch default, and Vectorize's
CF = "/client/v4/accounts/acc/vectorize/v2/indexes"
DIM = 4
TRIED: list[str] = []


class Env:
    def __init__(self, url: str, data: Path) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.data = data

    def digest(self) -> str:
        """A hash of everything the store holds for every index (read-only, beside the server)."""
        con = sqlite3.connect(f"file:{self.data / 'likewise.db'}?mode=ro", uri=True)
        h = hashlib.sha256()
        try:
            for sql in ("SELECT * FROM indexes ORDER BY id", "SELECT * FROM vectors ORDER BY label",
                        "SELECT * FROM mutations ORDER BY seq", "SELECT * FROM metadata_indexes ORDER BY index_id, property"):
                for row in con.execute(sql):
                    h.update(repr(row).encode())
        finally:
            con.close()
        count = self.http.get("/v1/indexes/tv/info").json()["vector_count"]
        return f"{h.hexdigest()}:{count}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("limits") / "data"
    app = create_app(data, embedder_factory=FakeEmbedder, engine=likewise.EngineParams(background=False),
                     max_body_bytes=BODY_LIMIT, max_batch=BATCH_LIMIT)
    with ThreadedServer(app) as server:
        e = Env(server.url, data)
        e.http.post("/v1/indexes", json={"name": "tv", "dimensions": DIM}).raise_for_status()
        e.http.post("/v1/indexes/tv/upsert", json={"vectors": [
            {"id": f"seed{i}", "values": [1, i, 2, 3], "metadata": {"g": f"x{i % 3}"}} for i in range(10)]}).raise_for_status()
        e.http.post("/v1/indexes/tv/metadata_indexes", json={"property_name": "g", "index_type": "string"}).raise_for_status()
        yield e
        e.http.close()
        print(f"bad input and limits: {len(TRIED)} requests checked, store unchanged after every rejection")


def rejected(env: Env, method: str, path: str, *, status: int, code: str | int, raw: str | bytes | None = None,
             body: Any = None, ctype: str = "application/json") -> None:
    """Send a request that must fail; check status, code, and that nothing changed."""
    before = env.digest()
    content = raw if raw is not None else (json.dumps(body) if body is not None else None)
    r = env.http.request(method, path, content=content, headers={"content-type": ctype})
    TRIED.append(path)
    assert r.status_code == status, (path, r.status_code, r.text[:300])
    payload = r.json()
    got = payload["errors"][0]["code"] if path.startswith("/client/") else payload["error"]["code"]
    assert got == code, (path, got, r.text[:300])
    assert env.digest() == before, f"{path}: a rejected request changed the store"


def accepted(env: Env, method: str, path: str, *, raw: str | bytes | None = None, body: Any = None,
             ctype: str = "application/json") -> httpx.Response:
    content = raw if raw is not None else (json.dumps(body) if body is not None else None)
    r = env.http.request(method, path, content=content, headers={"content-type": ctype})
    TRIED.append(path)
    assert r.status_code in (200, 201), (path, r.status_code, r.text[:300])
    return r


def vec(values: Any, vid: Any = "a", **extra: Any) -> dict[str, Any]:
    return {"id": vid, "values": values, **extra}


def ndjson(*items: Any) -> str:
    return "\n".join(json.dumps(i) for i in items)


# -- the bad-input table ---------------------------------------------------------------------------------

UP = "/v1/indexes/tv/upsert"
LITERAL = '{{"vectors": [{{"id": "a", "values": [1, 2, 3, {}]}}]}}'
NATIVE_TABLE: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("not JSON", "POST", UP, {"raw": "hello"}, 400, "invalid_json"),
    ("truncated JSON", "POST", UP, {"raw": '{"vectors": [{"id"'}, 400, "invalid_json"),
    ("not UTF-8", "POST", UP, {"raw": b'{"vectors": "\xff\xfe"}'}, 400, "invalid_json"),
    ("Content-Type text/plain", "POST", UP, {"body": {"vectors": [vec([1, 2, 3, 4])]}, "ctype": "text/plain"}, 415, "unsupported_media_type"),
    *[(f"literal {lit}", "POST", UP, {"raw": LITERAL.format(lit)}, 422, "non_finite_value")
      for lit in ("NaN", "Infinity", "-Infinity", "1e39", "1e999", "-1e39")],
    ("dimension 3 of 4", "POST", UP, {"body": {"vectors": [vec([1, 2, 3])]}}, 422, "dimension_mismatch"),
    ("dimension 5 of 4", "POST", UP, {"body": {"vectors": [vec([1, 2, 3, 4, 5])]}}, 422, "dimension_mismatch"),
    ("empty vector", "POST", UP, {"body": {"vectors": [vec([])]}}, 422, "dimension_mismatch"),
    *[(f"element {e}", "POST", UP, {"raw": LITERAL.format(e)}, 422, "invalid_vector_type") for e in ('"0.1"', "null", "true", "{}")],
    ("nested vector", "POST", UP, {"body": {"vectors": [vec([[0.1], [0.2], [0.3], [0.4]])]}}, 422, "invalid_vector_type"),
    ("duplicate id", "POST", UP, {"body": {"vectors": [vec([1, 2, 3, 4]), vec([1, 2, 3, 4])]}}, 422, "duplicate_id"),
    ("missing id", "POST", UP, {"body": {"vectors": [{"values": [1, 2, 3, 4]}]}}, 422, "invalid_id"),
    *[(f"id {i!r}", "POST", UP, {"body": {"vectors": [vec([1, 2, 3, 4], i)]}}, 422, "invalid_id")
      for i in ({"x": 1}, [1], 1.5, None, True, "")],
    ("id of 65 bytes", "POST", UP, {"body": {"vectors": [vec([1, 2, 3, 4], "x" * 65)]}}, 422, "invalid_id"),
    ("good row, then a bad one", "POST", UP, {"body": {"vectors": [vec([1, 2, 3, 4], "ok"), vec([1, 2, 3], "bad")]}}, 422, "dimension_mismatch"),
    *[(f"metadata key {k!r}", "POST", UP, {"body": {"vectors": [vec([1, 2, 3, 4], metadata={k: 1})]}}, 422, "invalid_metadata")
      for k in ("", "$a", "a.b")],
    ("metadata not an object", "POST", UP, {"body": {"vectors": [vec([1, 2, 3, 4], metadata=[1])]}}, 422, "invalid_metadata"),
    ("index does not exist", "POST", "/v1/indexes/nope/upsert", {"body": {"vectors": [vec([1, 2, 3, 4])]}}, 404, "index_not_found"),
    ("create: exists with another dim", "POST", "/v1/indexes", {"body": {"name": "tv", "dimensions": 8}}, 409, "index_exists"),
    *[(f"create: name {n!r}", "POST", "/v1/indexes", {"body": {"name": n, "dimensions": 8}}, 422, "invalid_index_name")
      for n in ("", "a/b", "..", "x" * 65, "Upper")],
    *[(f"top_k {k!r}", "POST", "/v1/indexes/tv/query", {"body": {"vector": [1, 2, 3, 4], "top_k": k}}, 422, "invalid_top_k")
      for k in (0, -1, 1001, "5", 1.5)],
    ("unknown filter operator", "POST", "/v1/indexes/tv/query", {"body": {"vector": [1, 2, 3, 4], "filter": {"g": {"$regex": "x"}}}}, 422, "invalid_filter"),
    ("filter type mismatch", "POST", "/v1/indexes/tv/query", {"body": {"vector": [1, 2, 3, 4], "filter": {"g": {"$lt": [1]}}}}, 422, "invalid_filter"),
    ("$in with a non-list", "POST", "/v1/indexes/tv/query", {"body": {"vector": [1, 2, 3, 4], "filter": {"g": {"$in": "x"}}}}, 422, "invalid_filter"),
    ("zero query vector, cosine", "POST", "/v1/indexes/tv/query", {"body": {"vector": [0, 0, 0, 0]}}, 422, "zero_vector"),
    ("zero vector upsert, cosine", "POST", UP, {"body": {"vectors": [vec([0, 0, 0, 0])]}}, 422, "zero_vector"),
    ("unknown field (typo)", "POST", "/v1/indexes/tv/query", {"body": {"vector": [1, 2, 3, 4], "topk": 3}}, 422, "invalid_argument"),
    ("embedding input too long", "POST", "/v1/embed",
     {"body": {"input": " ".join(["w"] * 600), "model": "sentence-transformers/all-MiniLM-L6-v2"}}, 422, "input_too_long"),
    ("delete: ids not a list", "POST", "/v1/indexes/tv/delete_by_ids", {"body": {"ids": {"a": 1}}}, 422, "invalid_argument"),
    # found by the long schemathesis run: this used to be a 500 that also made the index unopenable
    ("metadata index on a property with a NUL", "POST", "/v1/indexes/tv/metadata_indexes",
     {"body": {"property_name": "a\u0000b", "index_type": "number"}}, 422, "invalid_argument"),
    # ... and a filter on such a key silently matched nothing
    ("filter on a key with a backslash", "POST", "/v1/indexes/tv/query",
     {"body": {"vector": [1, 2, 3, 4], "filter": {"a\\b": 1}}}, 422, "invalid_filter"),
]


@pytest.mark.parametrize("case", NATIVE_TABLE, ids=[c[0] for c in NATIVE_TABLE])
def test_native_bad_input(env: Env, case: tuple[str, str, str, dict[str, Any], int, str]) -> None:
    _, method, path, request, status, code = case
    rejected(env, method, path, status=status, code=code, **request)


CF_UP = f"{CF}/tv/upsert"
ND = "application/x-ndjson"
CF_TABLE: list[tuple[str, str, str, dict[str, Any], int, int]] = [
    ("not NDJSON", "POST", CF_UP, {"raw": "hello", "ctype": ND}, 400, 40023),
    ("no vectors", "POST", CF_UP, {"raw": "", "ctype": ND}, 400, 40023),
    *[(f"literal {lit}", "POST", CF_UP, {"raw": f'{{"id": "a", "values": [1, 2, 3, {lit}]}}', "ctype": ND}, 400, 40023)
      for lit in ("NaN", "Infinity", "1e999")],
    ("overflow 1e39", "POST", CF_UP, {"raw": '{"id": "a", "values": [1, 2, 3, 1e39]}', "ctype": ND}, 400, 40023),
    ("dimension 3 of 4", "POST", CF_UP, {"raw": ndjson(vec([1, 2, 3])), "ctype": ND}, 400, 40006),
    ("empty vector", "POST", CF_UP, {"raw": ndjson(vec([])), "ctype": ND}, 400, 40006),
    ("element a string", "POST", CF_UP, {"raw": ndjson(vec([1, 2, 3, "0.1"])), "ctype": ND}, 400, 40023),
    ("id of 65 bytes", "POST", CF_UP, {"raw": ndjson(vec([1, 2, 3, 4], "x" * 65)), "ctype": ND}, 400, 40008),
    ("metadata key $a", "POST", CF_UP, {"raw": ndjson(vec([1, 2, 3, 4], metadata={"$a": 1})), "ctype": ND}, 400, 40023),
    ("good line, then a bad one", "POST", CF_UP, {"raw": ndjson(vec([1, 2, 3, 4], "ok"), vec([1, 2], "b")), "ctype": ND}, 400, 40006),
    ("index does not exist", "POST", f"{CF}/nope/upsert", {"raw": ndjson(vec([1, 2, 3, 4])), "ctype": ND}, 404, 3000),
    ("create: exists", "POST", CF, {"body": {"name": "tv", "config": {"dimensions": 4, "metric": "cosine"}}}, 400, 3002),
    ("query: topK 0", "POST", f"{CF}/tv/query", {"body": {"vector": [1, 2, 3, 4], "topK": 0}}, 400, 40025),
    ("query: filter on a property without metadata index", "POST", f"{CF}/tv/query",
     {"body": {"vector": [1, 2, 3, 4], "filter": {"h": "x"}}}, 400, 40026),
    ("query: zero vector", "POST", f"{CF}/tv/query", {"body": {"vector": [0, 0, 0, 0]}}, 400, 40026),
    ("query: not JSON", "POST", f"{CF}/tv/query", {"raw": "{"}, 400, 40026),
]


@pytest.mark.parametrize("case", CF_TABLE, ids=[c[0] for c in CF_TABLE])
def test_cloudflare_bad_input(env: Env, case: tuple[str, str, str, dict[str, Any], int, int]) -> None:
    _, method, path, request, status, code = case
    rejected(env, method, path, status=status, code=code, **request)


# -- exactly at the limit, and one over ---------------------------------------------------------------------


def _padded(body: dict[str, Any], size: int) -> str:
    text = json.dumps(body)
    assert len(text) <= size
    return text + " " * (size - len(text))  # trailing whitespace is valid JSON


def test_body_size(env: Env) -> None:
    body = {"vectors": [vec([1, 2, 3, 4], "body-limit")]}
    accepted(env, "POST", UP, raw=_padded(body, BODY_LIMIT))
    rejected(env, "POST", UP, raw=_padded(body, BODY_LIMIT + 1), status=413, code="payload_too_large")
    line = ndjson(vec([1, 2, 3, 4], "cf-body-limit"))
    accepted(env, "POST", CF_UP, raw=line + "\n" * (BODY_LIMIT - len(line)), ctype=ND)
    rejected(env, "POST", CF_UP, raw=line + "\n" * (BODY_LIMIT + 1 - len(line)), ctype=ND, status=413, code=3006)


def test_batch_size(env: Env) -> None:
    at = [vec([1, 2, 3, i + 1], f"b{i}") for i in range(BATCH_LIMIT)]
    accepted(env, "POST", UP, body={"vectors": at})
    rejected(env, "POST", UP, body={"vectors": at + [vec([1, 1, 1, 1], "one-more")]}, status=413, code="batch_too_large")
    rejected(env, "POST", "/v1/indexes/tv/delete_by_ids", body={"ids": [f"b{i}" for i in range(BATCH_LIMIT + 1)]},
             status=413, code="batch_too_large")
    accepted(env, "POST", CF_UP, raw=ndjson(*[vec([2, 2, 3, i + 1], f"c{i}") for i in range(BATCH_LIMIT)]), ctype=ND)
    rejected(env, "POST", CF_UP, raw=ndjson(*[vec([2, 2, 3, i + 1], f"c{i}") for i in range(BATCH_LIMIT + 1)]),
             ctype=ND, status=413, code=3006)


def test_dimensions(env: Env) -> None:
    limit = LIMITS.max_dimensions
    accepted(env, "POST", "/v1/indexes", body={"name": "dim-at", "dimensions": limit})
    rejected(env, "POST", "/v1/indexes", body={"name": "dim-over", "dimensions": limit + 1}, status=422, code="invalid_argument")
    accepted(env, "POST", CF, body={"name": "cf-dim-at", "config": {"dimensions": 1536, "metric": "cosine"}})
    rejected(env, "POST", CF, body={"name": "cf-dim-over", "config": {"dimensions": 1537, "metric": "cosine"}},
             status=400, code=40000)
    values = [0.5] * limit
    accepted(env, "POST", "/v1/indexes/dim-at/upsert", body={"vectors": [vec(values)]})
    rejected(env, "POST", "/v1/indexes/dim-at/upsert", body={"vectors": [vec(values + [0.5])]}, status=422, code="dimension_mismatch")


def test_id_length(env: Env) -> None:
    limit = LIMITS.max_id_bytes
    for at, over in (("i" * limit, "i" * (limit + 1)), ("é" * (limit // 2), "é" * (limit // 2) + "x")):  # bytes, not characters
        accepted(env, "POST", UP, body={"vectors": [vec([1, 2, 3, 4], at)]})
        rejected(env, "POST", UP, body={"vectors": [vec([1, 2, 3, 4], over)]}, status=422, code="invalid_id")
        accepted(env, "POST", CF_UP, raw=ndjson(vec([1, 2, 3, 5], at)), ctype=ND)
        rejected(env, "POST", CF_UP, raw=ndjson(vec([1, 2, 3, 5], over)), ctype=ND, status=400, code=40008)


def _metadata_of(size: int) -> dict[str, str]:
    meta = {"pad": ""}
    meta["pad"] = "m" * (size - len(json.dumps(meta, separators=(",", ":"))))
    assert len(json.dumps(meta, separators=(",", ":")).encode()) == size
    return meta


def test_metadata_size(env: Env) -> None:
    limit = LIMITS.max_metadata_bytes
    accepted(env, "POST", UP, body={"vectors": [vec([1, 2, 3, 4], "meta", metadata=_metadata_of(limit))]})
    rejected(env, "POST", UP, body={"vectors": [vec([1, 2, 3, 4], "meta2", metadata=_metadata_of(limit + 1))]},
             status=413, code="record_too_large")
    accepted(env, "POST", CF_UP, raw=ndjson(vec([1, 2, 3, 4], "cfmeta", metadata=_metadata_of(limit))), ctype=ND)
    rejected(env, "POST", CF_UP, raw=ndjson(vec([1, 2, 3, 4], "cfmeta2", metadata=_metadata_of(limit + 1))), ctype=ND,
             status=413, code=3006)


def test_top_k(env: Env) -> None:
    q = "/v1/indexes/tv/query"
    limit = LIMITS.max_top_k
    assert len(accepted(env, "POST", q, body={"vector": [1, 2, 3, 4], "top_k": limit}).json()["matches"]) <= limit
    rejected(env, "POST", q, body={"vector": [1, 2, 3, 4], "top_k": limit + 1}, status=422, code="invalid_top_k")
    cq = f"{CF}/tv/query"
    accepted(env, "POST", cq, body={"vector": [1, 2, 3, 4], "topK": 100})
    rejected(env, "POST", cq, body={"vector": [1, 2, 3, 4], "topK": 101}, status=400, code=40025)
    accepted(env, "POST", cq, body={"vector": [1, 2, 3, 4], "topK": 50, "returnValues": True})
    rejected(env, "POST", cq, body={"vector": [1, 2, 3, 4], "topK": 51, "returnValues": True}, status=400, code=40025)


def _filter_of(size: int) -> dict[str, Any]:
    """A filter whose compact JSON is exactly ``size`` bytes: ``{"g":{"$in":["x0", …, pad]}}``."""
    flt: dict[str, Any] = {"g": {"$in": ["x0", ""]}}
    base = len(json.dumps(flt, separators=(",", ":")))
    flt["g"]["$in"][1] = "p" * (size - base)
    assert len(json.dumps(flt, separators=(",", ":")).encode()) == size
    return flt


def test_filter_size(env: Env) -> None:
    # the limits are "under N bytes": the largest accepted filter is N - 1 bytes of compact JSON
    q = "/v1/indexes/tv/query"
    assert accepted(env, "POST", q, body={"vector": [1, 2, 3, 4], "filter": _filter_of(NATIVE_MAX_FILTER_BYTES - 1)}).json()["matches"]
    rejected(env, "POST", q, body={"vector": [1, 2, 3, 4], "filter": _filter_of(NATIVE_MAX_FILTER_BYTES)},
             status=422, code="invalid_filter")
    cq = f"{CF}/tv/query"
    accepted(env, "POST", cq, body={"vector": [1, 2, 3, 4], "filter": _filter_of(VECTORIZE_MAX_FILTER_BYTES - 1)})
    rejected(env, "POST", cq, body={"vector": [1, 2, 3, 4], "filter": _filter_of(VECTORIZE_MAX_FILTER_BYTES)},
             status=400, code=40026)

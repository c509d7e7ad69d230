"""The native /v1 API over real HTTP: every operation, the bad-input table, ops endpoints, logs.

Each bad-input row asserts the status, ``error.code`` and that the index is unchanged afterwards
(reliability.md §6: the whole batch is rejected and nothing is written).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from likewise.errors import StorageFullError

ServerFactory = Any  # make_server fixture (tests/server/conftest.py)


def make_index(http: httpx.Client, name: str = "tv", dims: int = 3, metric: str = "cosine") -> None:
    r = http.post("/v1/indexes", json={"name": name, "dimensions": dims, "metric": metric})
    assert r.status_code == 201, r.text


def seed(http: httpx.Client, name: str = "tv") -> None:
    r = http.post(
        f"/v1/indexes/{name}/upsert",
        json={"vectors": [{"id": "a", "values": [1, 0, 0], "metadata": {"genre": "x"}}, {"id": "b", "values": [0, 1, 0]}]},
    )
    assert r.status_code == 200, r.text


def snapshot(http: httpx.Client, name: str = "tv") -> Any:
    info = http.get(f"/v1/indexes/{name}/info").json()
    ids = http.get(f"/v1/indexes/{name}/vectors", params={"count": 1000}).json()["vectors"]
    vectors = http.post(f"/v1/indexes/{name}/get_by_ids", json={"ids": ids}).json()["vectors"]
    return info, vectors


def test_index_lifecycle_and_every_operation(http: httpx.Client) -> None:
    make_index(http)
    assert [i["name"] for i in http.get("/v1/indexes").json()["indexes"]] == ["tv"]
    assert http.get("/v1/indexes/tv").json()["dimensions"] == 3
    seed(http)
    r = http.post("/v1/indexes/tv/insert", json={"vectors": [{"id": "a", "values": [0, 0, 1]}, {"id": "c", "values": [0, 0, 1]}]})
    assert r.json()["count"] == 2
    q = http.post("/v1/indexes/tv/query", json={"vector": [1, 0.1, 0], "top_k": 2, "return_metadata": "all"}).json()
    assert q["count"] == 2 and q["matches"][0] == {"id": "a", "score": pytest.approx(0.995, abs=1e-3), "metadata": {"genre": "x"}}
    assert http.post("/v1/indexes/tv/query", json={"id": "c", "top_k": 1}).json()["matches"][0]["id"] == "c"
    got = http.post("/v1/indexes/tv/get_by_ids", json={"ids": ["a", "zz"]}).json()["vectors"]
    assert got == [{"id": "a", "values": [1.0, 0.0, 0.0], "metadata": {"genre": "x"}}]
    assert http.post("/v1/indexes/tv/metadata_indexes", json={"property_name": "genre", "index_type": "string"}).status_code == 200
    assert http.get("/v1/indexes/tv/metadata_indexes").json() == {"metadata_indexes": [{"property_name": "genre", "index_type": "string"}]}
    assert http.delete("/v1/indexes/tv/metadata_indexes/genre").status_code == 200
    assert http.delete("/v1/indexes/tv/metadata_indexes/genre").json()["error"]["code"] == "metadata_index_not_found"
    page = http.get("/v1/indexes/tv/vectors", params={"count": 2}).json()
    assert page["vectors"] == ["a", "b"] and page["is_truncated"] and page["total_count"] == 3
    nxt = http.get("/v1/indexes/tv/vectors", params={"count": 2, "cursor": page["next_cursor"]}).json()
    assert nxt["vectors"] == ["c"] and not nxt["is_truncated"]
    mut = http.post("/v1/indexes/tv/delete_by_ids", json={"ids": ["c"]}).json()["mutation_id"]
    info = http.get("/v1/indexes/tv/info").json()
    assert info["vector_count"] == 2 and info["processed_up_to_mutation"] == mut
    assert http.post("/v1/indexes/tv/optimize", json={}).status_code == 200
    assert http.delete("/v1/indexes/tv").json() == {"deleted": "tv"}
    assert http.get("/v1/indexes/tv").status_code == 404


def test_ndjson_and_binary_writes(http: httpx.Client) -> None:
    make_index(http, dims=2, metric="euclidean")
    nd = b'{"id": "a", "values": [1, 2]}\n\n{"id": "b", "values": [3, 4], "namespace": "n"}\n'
    r = http.post("/v1/indexes/tv/upsert", content=nd, headers={"content-type": "application/x-ndjson"})
    assert r.json()["count"] == 2
    mat = np.array([[5, 6], [7, 8]], dtype=np.float32)
    import base64

    body = {"ids": ["c", "d"], "values_b64": base64.b64encode(mat.tobytes()).decode(), "shape": [2, 2], "metadata": [{"k": 1}, None]}
    assert http.post("/v1/indexes/tv/upsert_arrays", json=body).status_code == 200
    got = {v["id"]: v for v in http.post("/v1/indexes/tv/get_by_ids", json={"ids": ["b", "c", "d"]}).json()["vectors"]}
    assert got["b"]["namespace"] == "n" and got["c"] == {"id": "c", "values": [5.0, 6.0], "metadata": {"k": 1}}
    bad = dict(body, shape=[3, 2])
    assert http.post("/v1/indexes/tv/upsert_arrays", json=bad).json()["error"]["code"] == "invalid_argument"


def test_embed_and_query_with_an_explicit_model(http: httpx.Client) -> None:
    make_index(http, name="docs", dims=384)
    texts = ["a cat sat", "the stock market fell", "kittens and cats"]
    emb = http.post("/v1/embed", json={"input": texts, "model": "@cf/baai/bge-small-en-v1.5"}).json()
    assert emb["model"] == "BAAI/bge-small-en-v1.5" and emb["dimensions"] == 384
    assert len(emb["vectors"]) == 3 and emb["usage"]["tokens"] == 16
    vectors = [{"id": str(i), "values": v} for i, v in enumerate(emb["vectors"])]
    http.post("/v1/indexes/docs/upsert", json={"vectors": vectors})
    body = {"text": "the stock market fell", "model": "BAAI/bge-small-en-v1.5", "top_k": 1}
    hit = http.post("/v1/indexes/docs/query", json=body).json()
    assert hit["matches"][0]["id"] == "1" and hit["matches"][0]["score"] == pytest.approx(1.0)
    r = http.post("/v1/indexes/docs/query", json={"text": "no model bound to this index"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_argument")
    long = " ".join(["word"] * 600)
    r = http.post("/v1/embed", json={"input": long})
    assert r.status_code == 422 and r.json()["error"]["code"] == "input_too_long"
    assert http.post("/v1/embed", json={"input": long, "truncate": True}).status_code == 200
    r = http.post("/v1/embed", json={"input": "x", "model": "nobody/nothing"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


# -- the bad-input table ---------------------------------------------------------------------------

JSON = {"content-type": "application/json"}
V = '{"vectors": [{"id": "n", "values": %s}]}'


def _vec(values: str) -> bytes:
    return (V % values).encode()


BAD_WRITES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("not json", b"{not json", JSON, 400, "invalid_json"),
    ("truncated json", b'{"vectors": [{"id": "n", "values": [1,', JSON, 400, "invalid_json"),
    ("empty body", b"", JSON, 400, "invalid_json"),
    ("not utf-8", b'{"vectors": "\xff"}', JSON, 400, "invalid_json"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, JSON, 400, "invalid_json"),
    ("wrong content type", _vec("[1, 2, 3]"), {"content-type": "text/plain"}, 415, "unsupported_media_type"),
    ("NaN", _vec("[NaN, 1, 2]"), JSON, 422, "non_finite_value"),
    ("Infinity", _vec("[1, Infinity, 2]"), JSON, 422, "non_finite_value"),
    ("-Infinity", _vec("[1, 2, -Infinity]"), JSON, 422, "non_finite_value"),
    ("float32 overflow", _vec("[1e39, 1, 2]"), JSON, 422, "non_finite_value"),
    ("float64 overflow", _vec("[1e999, 1, 2]"), JSON, 422, "non_finite_value"),
    ("wrong dimension", _vec("[1, 2]"), JSON, 422, "dimension_mismatch"),
    ("empty vector", _vec("[]"), JSON, 422, "dimension_mismatch"),
    ("string element", _vec('["0.1", 1, 2]'), JSON, 422, "invalid_vector_type"),
    ("null element", _vec("[null, 1, 2]"), JSON, 422, "invalid_vector_type"),
    ("bool element", _vec("[true, 1, 2]"), JSON, 422, "invalid_vector_type"),
    ("nested vector", _vec("[[0.1], [0.2], [0.3]]"), JSON, 422, "invalid_vector_type"),
    ("values not an array", _vec('"abc"'), JSON, 422, "invalid_vector_type"),
    ("zero vector (cosine)", _vec("[0, 0, 0]"), JSON, 422, "zero_vector"),
    ("duplicate id", b'{"vectors": [{"id": "n", "values": [1,1,1]}, {"id": "n", "values": [1,2,1]}]}', JSON, 422, "duplicate_id"),
    ("missing id", b'{"vectors": [{"values": [1,1,1]}]}', JSON, 422, "invalid_id"),
    ("numeric id", b'{"vectors": [{"id": 7, "values": [1,1,1]}]}', JSON, 422, "invalid_id"),
    ("empty id", b'{"vectors": [{"id": "", "values": [1,1,1]}]}', JSON, 422, "invalid_id"),
    ("id over 64 bytes", b'{"vectors": [{"id": "%s", "values": [1,1,1]}]}' % (b"\xc3\xa9" * 33), JSON, 422, "invalid_id"),
    ("metadata too large", b'{"vectors": [{"id": "n", "values": [1,1,1], "metadata": {"k": "%s"}}]}' % (b"x" * 11000), JSON, 413, "record_too_large"),
    ("metadata key with $", b'{"vectors": [{"id": "n", "values": [1,1,1], "metadata": {"$k": 1}}]}', JSON, 422, "invalid_metadata"),
    ("metadata key with .", b'{"vectors": [{"id": "n", "values": [1,1,1], "metadata": {"a.b": 1}}]}', JSON, 422, "invalid_metadata"),
    ("metadata empty key", b'{"vectors": [{"id": "n", "values": [1,1,1], "metadata": {"": 1}}]}', JSON, 422, "invalid_metadata"),
    ("metadata not an object", b'{"vectors": [{"id": "n", "values": [1,1,1], "metadata": [1]}]}', JSON, 422, "invalid_metadata"),
    ("body is an array", b"[]", JSON, 422, "invalid_argument"),
    ("vectors not an array", b'{"vectors": {"id": "n"}}', JSON, 422, "invalid_argument"),
    ("unknown field", b'{"vectors": [], "wait": true}', JSON, 422, "invalid_argument"),
    ("namespace too long", b'{"vectors": [{"id": "n", "values": [1,1,1], "namespace": "%s"}]}' % (b"n" * 65), JSON, 422, "invalid_namespace"),
]


@pytest.mark.parametrize("body,headers,status,code", [r[1:] for r in BAD_WRITES], ids=[r[0] for r in BAD_WRITES])
def test_bad_writes_are_rejected_whole(http: httpx.Client, body: bytes, headers: dict[str, str], status: int, code: str) -> None:
    make_index(http)
    seed(http)
    before = snapshot(http)
    for op in ("upsert", "insert"):
        r = http.post(f"/v1/indexes/tv/{op}", content=body, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert r.json()["error"]["message"]
        assert snapshot(http) == before


BAD_QUERIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("top_k zero", {"vector": [1, 0, 0], "top_k": 0}, 422, "invalid_top_k"),
    ("top_k over max", {"vector": [1, 0, 0], "top_k": 1001}, 422, "invalid_top_k"),
    ("top_k string", {"vector": [1, 0, 0], "top_k": "5"}, 422, "invalid_top_k"),
    ("unknown filter operator", {"vector": [1, 0, 0], "filter": {"genre": {"$regex": "x"}}}, 422, "invalid_filter"),
    ("filter not an object", {"vector": [1, 0, 0], "filter": [1]}, 422, "invalid_filter"),
    ("zero query vector", {"vector": [0, 0, 0]}, 422, "zero_vector"),
    ("query dimension", {"vector": [1, 0]}, 422, "dimension_mismatch"),
    ("query not numbers", {"vector": ["a", 0, 0]}, 422, "invalid_vector_type"),
    ("no vector, id or text", {"top_k": 3}, 422, "invalid_argument"),
    ("vector and id", {"vector": [1, 0, 0], "id": "a"}, 422, "invalid_argument"),
    ("bad return_metadata", {"vector": [1, 0, 0], "return_metadata": "some"}, 422, "invalid_argument"),
    ("unknown id", {"id": "nope"}, 404, "vector_not_found"),
]


@pytest.mark.parametrize("body,status,code", [r[1:] for r in BAD_QUERIES], ids=[r[0] for r in BAD_QUERIES])
def test_bad_queries(http: httpx.Client, body: dict[str, Any], status: int, code: str) -> None:
    make_index(http)
    seed(http)
    r = http.post("/v1/indexes/tv/query", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


def test_query_nan_is_non_finite(http: httpx.Client) -> None:
    make_index(http)
    r = http.post("/v1/indexes/tv/query", content=b'{"vector": [NaN, 0, 0]}', headers=JSON)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "non_finite_value")


def test_index_level_errors(http: httpx.Client) -> None:
    make_index(http)
    r = http.post("/v1/indexes", json={"name": "tv", "dimensions": 5})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "index_exists")
    assert r.headers["x-should-retry"] == "false"
    for name in ("", "a/b", "..", "x" * 65, "Upper"):
        r = http.post("/v1/indexes", json={"name": name, "dimensions": 3})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_index_name"), name
    r = http.post("/v1/indexes", json={"name": "ok", "dimensions": 0})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_argument")
    for path in ("/v1/indexes/nope", "/v1/indexes/nope/info"):
        r = http.get(path)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "index_not_found")
    r = http.post("/v1/indexes/nope/upsert", json={"vectors": []})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "index_not_found")
    assert [i["name"] for i in http.get("/v1/indexes").json()["indexes"]] == ["tv"]


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    r = http.get("/v1/nothing/here")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = http.put("/v1/indexes")
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


def test_body_and_batch_limits(make_server: ServerFactory) -> None:
    server = make_server(max_body_bytes=2000, max_batch=3)
    with httpx.Client(base_url=server.url) as http:
        make_index(http)
        before = snapshot(http)
        four = {"vectors": [{"id": str(i), "values": [1, i, 0]} for i in range(4)]}
        r = http.post("/v1/indexes/tv/upsert", json=four)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "batch_too_large")
        three = {"vectors": [{"id": str(i), "values": [1, i, 0]} for i in range(3)]}
        assert http.post("/v1/indexes/tv/upsert", json=three).status_code == 200  # exactly at the limit
        before = snapshot(http)
        big = json.dumps({"vectors": [{"id": "x", "values": [1, 1, 1], "metadata": {"k": "y" * 3000}}]}).encode()
        r = http.post("/v1/indexes/tv/upsert", content=big, headers=JSON)  # Content-Length says too much
        assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for i in range(0, len(big), 500):
                yield big[i : i + 500]

        r = http.post("/v1/indexes/tv/upsert", content=chunks(), headers=JSON)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")
        assert snapshot(http) == before


def test_storage_errors_map_to_status(http: httpx.Client, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    make_index(http)
    idx = server.server.config.app.state.likewise.db.index("tv")

    def full(*args: Any, **kwargs: Any) -> str:
        raise StorageFullError("disk full")

    monkeypatch.setattr(idx, "upsert", full)
    r = http.post("/v1/indexes/tv/upsert", json={"vectors": []})
    assert (r.status_code, r.json()["error"]["code"]) == (507, "insufficient_storage")
    assert r.headers["x-should-retry"] == "false"


def test_unexpected_errors_are_json_500(http: httpx.Client, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    make_index(http)
    idx = server.server.config.app.state.likewise.db.index("tv")
    monkeypatch.setattr(idx, "info", lambda: 1 / 0)
    r = http.get("/v1/indexes/tv/info")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert r.headers["x-request-id"] in r.json()["error"]["message"]


# -- ops ---------------------------------------------------------------------------------------------


def test_health_openapi_metrics(http: httpx.Client) -> None:
    assert http.get("/healthz").json()["status"] == "ok"
    paths = http.get("/openapi.json").json()["paths"]
    for p in ("/v1/indexes", "/v1/indexes/{name}/query", "/v1/embeddings",
              "/client/v4/accounts/{account_id}/vectorize/v2/indexes/{index_name}/query"):
        assert p in paths
    assert "requestBody" in paths["/v1/indexes/{name}/query"]["post"]
    make_index(http)
    http.get("/v1/indexes/tv")
    text = http.get("/metrics").text
    assert 'likewise_http_requests_total{method="GET",route="/v1/indexes/{name}",status="200"} 1' in text
    assert 'likewise_http_request_duration_seconds_bucket{route="/v1/indexes/{name}",le="+Inf"} 1' in text
    assert 'likewise_index_vectors{index="tv"} 0' in text


def test_access_log_is_json_without_tokens(make_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    from likewise.server.auth import Token

    secret = "s3cret-token-value"
    server = make_server(tokens=[Token(secret, "admin")])
    with caplog.at_level(logging.INFO, logger="likewise.access"):
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {secret}"}) as http:
            make_index(http)
            http.get("/v1/indexes/tv/vectors", params={"count": 5})
        httpx.get(server.url + "/v1/indexes", headers={"authorization": "Bearer wrong-token-value"})
        deadline = time.monotonic() + 5  # the line is written just after the response is sent
        while sum(r.name == "likewise.access" for r in caplog.records) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "likewise.access"]
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/v1/indexes", 201),
        ("GET", "/v1/indexes/{name}/vectors", 200),
        ("GET", "/v1/indexes", 401),
    ]
    assert all(line["request_id"] and line["ms"] >= 0 for line in lines)
    everything = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert secret not in everything and "wrong-token-value" not in everything

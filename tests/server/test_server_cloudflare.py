"""Cloudflare compatibility, proven with the official SDK (cloudflare==5.9.0, unmodified) over HTTP.

Covers every method of the endpoint table in reference/vectorize-api.md §1, the three insert body
forms (SDK raw NDJSON, SDK ``body=str`` JSON string, wrangler's multipart ``vectors`` field, plus curl's
``application/x-ndjson``), ``unparsable-behavior``, Vectorize's caps and codes, both URL prefixes and
both model-path encodings of Workers AI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import cloudflare
import httpx
import pytest
from cloudflare import BadRequestError, Cloudflare, NotFoundError

# The SDK's own deprecation notice for body=bytes; raw bytes are still what it sends (reference §5.4).
pytestmark = pytest.mark.filterwarnings("ignore:Passing raw bytes as `body` is deprecated:DeprecationWarning")

from likewise.server.testing import ThreadedServer

ACCOUNT = "acct123"


@pytest.fixture
def cf(server: ThreadedServer) -> Iterator[Cloudflare]:
    client = Cloudflare(base_url=f"{server.url}/client/v4", api_token="anything")
    yield client
    client.close()


def ndjson(*vectors: dict[str, Any]) -> bytes:
    return "".join(json.dumps(v) + "\n" for v in vectors).encode()


def code_of(exc: Any) -> int:
    return int(exc.body["errors"][0]["code"])


def test_every_sdk_method(cf: Cloudflare) -> None:
    idx = cf.vectorize.indexes
    created = idx.create(account_id=ACCOUNT, name="films", config={"dimensions": 3, "metric": "cosine"}, description="desc")
    assert created is not None and created.name == "films" and created.config.dimensions == 3
    assert created.config.metric == "cosine" and created.description == "desc" and created.created_on is not None
    preset = idx.create(account_id=ACCOUNT, name="docs", config={"preset": "@cf/baai/bge-small-en-v1.5"})
    assert preset is not None and preset.config.dimensions == 384 and preset.config.metric == "cosine"
    assert [i.name for i in idx.list(account_id=ACCOUNT)] == ["docs", "films"]
    got = idx.get("films", account_id=ACCOUNT)
    assert got is not None and got.config.dimensions == 3

    r = idx.insert("films", account_id=ACCOUNT, body=ndjson(
        {"id": "1", "values": [1, 0, 0], "metadata": {"genre": "drama", "year": 1990}},
        {"id": "2", "values": [0, 1, 0], "metadata": {"genre": "comedy", "year": 2001}, "namespace": "ns"},
    ))
    assert r is not None and r.mutation_id
    r = idx.upsert("films", account_id=ACCOUNT, unparsable_behavior="discard", body=ndjson(
        {"id": "3", "values": [0, 0, 1], "metadata": {"genre": "drama", "year": 2010}},
    ) + b"this line is not json\n")
    assert r is not None and r.mutation_id
    info = idx.info("films", account_id=ACCOUNT)
    assert info is not None and info.vector_count == 3 and info.dimensions == 3
    assert info.processed_up_to_mutation == r.mutation_id and info.processed_up_to_datetime is not None

    m = idx.metadata_index.create("films", account_id=ACCOUNT, index_type="string", property_name="genre")
    assert m is not None and m.mutation_id
    idx.metadata_index.create("films", account_id=ACCOUNT, index_type="number", property_name="year")
    idx.metadata_index.create("films", account_id=ACCOUNT, index_type="string", property_name="genre")  # again: 200
    listed = idx.metadata_index.list("films", account_id=ACCOUNT)
    assert listed is not None
    assert [(x.property_name, x.index_type) for x in listed.metadata_indexes or []] == [("genre", "string"), ("year", "number")]

    q = idx.query("films", account_id=ACCOUNT, vector=[1, 0.1, 0.1], top_k=5, filter={"genre": {"$eq": "drama"}},
                  return_metadata="all", return_values=True)
    assert q is not None and q.count == 2
    assert [mm.id for mm in q.matches or []] == ["1", "3"]
    first = (q.matches or [])[0]
    assert first.values == [1.0, 0.0, 0.0] and first.metadata == {"genre": "drama", "year": 1990}
    q = idx.query("films", account_id=ACCOUNT, vector=[1, 0, 0], top_k=3.0, return_metadata="indexed",
                  filter={"year": {"$gte": 2000, "$lt": 2005}})
    assert q is not None and [(mm.id, mm.metadata) for mm in q.matches or []] == [("2", {"genre": "comedy", "year": 2001})]
    q = idx.query("films", account_id=ACCOUNT, vector=[1, 0, 0])
    assert q is not None and q.count == 3 and (q.matches or [])[0].metadata is None

    vectors = idx.get_by_ids("films", account_id=ACCOUNT, ids=["2", "404"])
    assert vectors == [{"id": "2", "values": [0.0, 1.0, 0.0], "metadata": {"genre": "comedy", "year": 2001}, "namespace": "ns"}]

    page = idx.list_vectors("films", account_id=ACCOUNT, count=2)
    assert page is not None and page.count == 2 and page.is_truncated and page.total_count == 3
    rest = idx.list_vectors("films", account_id=ACCOUNT, count=2, cursor=page.next_cursor)
    assert rest is not None and [v.id for v in page.vectors + rest.vectors] == ["1", "2", "3"] and not rest.is_truncated

    d = idx.delete_by_ids("films", account_id=ACCOUNT, ids=["1"])
    assert d is not None and d.mutation_id
    d = idx.metadata_index.delete("films", account_id=ACCOUNT, property_name="year")
    assert d is not None and d.mutation_id
    info = idx.info("films", account_id=ACCOUNT)
    assert info is not None and info.vector_count == 2

    assert idx.delete("films", account_id=ACCOUNT) is None
    with pytest.raises(NotFoundError) as err:
        idx.get("films", account_id=ACCOUNT)
    assert code_of(err.value) == 3000 and 'vectorize.index.not_found - Index name "films"' in str(err.value.body)

    out = cf.ai.run("@cf/baai/bge-small-en-v1.5", account_id=ACCOUNT, text=["hello", "world"])
    assert isinstance(out, dict) and out["shape"] == [2, 384] and len(out["data"][1]) == 384 and out["pooling"] == "mean"
    one = cf.ai.run("@cf/baai/bge-small-en-v1.5", account_id=ACCOUNT, text="hello", extra_body={"pooling": "cls"})
    assert isinstance(one, dict) and one["shape"] == [1, 384] and one["pooling"] == "cls"
    assert one["data"][0] != out["data"][0]  # cls pooling is a different embedding


def test_errors_have_vectorize_codes(cf: Cloudflare) -> None:
    idx = cf.vectorize.indexes
    idx.create(account_id=ACCOUNT, name="tv", config={"dimensions": 3, "metric": "euclidean"})
    start = time.monotonic()
    with pytest.raises(BadRequestError) as err:
        idx.create(account_id=ACCOUNT, name="tv", config={"dimensions": 3, "metric": "euclidean"})
    assert code_of(err.value) == 3002 and time.monotonic() - start < 0.4  # 400, so no SDK retries
    assert 'vectorize.index.duplicate_name - Index name "tv"' in err.value.body["errors"][0]["message"]
    for config in ({"dimensions": 1537, "metric": "cosine"}, {"dimensions": 3, "metric": "manhattan"}, {"preset": "@cf/nope"}):
        with pytest.raises(BadRequestError):
            idx.create(account_id=ACCOUNT, name="other", config=config)  # type: ignore[arg-type]
    idx.upsert("tv", account_id=ACCOUNT, body=ndjson({"id": "a", "values": [1, 2, 3], "metadata": {"g": "x"}}))

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"top_k": 51, "return_values": True}, 40025, "with returnValues=true or returnMetadata=all, max top K is 50, but got 51"),
        ({"top_k": 60, "return_metadata": "all"}, 40025, "max top K is 50, but got 60; for a top K up to 100"),
        ({"top_k": 101}, 40025, "max top K is 100, but got 101"),
        ({"top_k": 0}, 40025, "at least 1"),
        ({"extra_body": {"returnMetadata": True}}, 40026, "returnMetadata: expected value"),
        ({"filter": {"g": "x"}}, 40026, "no metadata index"),
        ({"filter": {"g": {"$regex": "x"}}}, 40026, "unknown filter operator"),
        ({"filter": {}}, 40026, "non-empty"),
        ({"vector": [1, 2]}, 40006, "invalid query vector, expected 3 dimensions, and got 2 dimensions"),
    ]
    for kwargs, code, message in cases:
        kwargs = {"vector": [1, 0, 0], **kwargs}
        with pytest.raises(BadRequestError) as err:
            idx.query("tv", account_id=ACCOUNT, **kwargs)
        assert code_of(err.value) == code, kwargs
        assert message in err.value.body["errors"][0]["message"], err.value.body
    assert idx.query("tv", account_id=ACCOUNT, vector=[1, 0, 0], top_k=100, return_metadata="indexed") is not None

    long_id = "x" * 74
    with pytest.raises(BadRequestError) as err:
        idx.upsert("tv", account_id=ACCOUNT, body=ndjson({"id": long_id, "values": [1, 2, 3]}))
    assert code_of(err.value) == 40008 and "id too long; max is 64 bytes, got 74 bytes" in str(err.value.body)
    with pytest.raises(BadRequestError) as err:
        idx.upsert("tv", account_id=ACCOUNT, body=ndjson({"id": "b", "values": [1, 2]}))
    assert code_of(err.value) == 40006
    with pytest.raises(BadRequestError) as err:
        idx.insert("tv", account_id=ACCOUNT, body=b'{"id": "b", "values": [1, 2, 3]}\nnot json\n')
    assert code_of(err.value) == 40023 and "failed to parse upsert vectors request in json format" in str(err.value.body)
    with pytest.raises(BadRequestError) as err:
        idx.insert("tv", account_id=ACCOUNT, body=b'{"id": "b", "values": [NaN, 2, 3]}\n')
    assert code_of(err.value) == 40023
    with pytest.raises(NotFoundError) as err:
        idx.metadata_index.delete("tv", account_id=ACCOUNT, property_name="nope")
    assert code_of(err.value) == 40005
    for i in range(10):
        idx.metadata_index.create("tv", account_id=ACCOUNT, index_type="number", property_name=f"p{i}")
    with pytest.raises(BadRequestError):
        idx.metadata_index.create("tv", account_id=ACCOUNT, index_type="number", property_name="p10")
    with pytest.raises(NotFoundError) as err:
        idx.upsert("missing", account_id=ACCOUNT, body=ndjson({"id": "a", "values": [1, 2, 3]}))
    assert code_of(err.value) == 3000
    with pytest.raises(BadRequestError) as err:
        cf.ai.run("@cf/unknown/model", account_id=ACCOUNT, text="hi")
    assert code_of(err.value) == 5007
    info = idx.info("tv", account_id=ACCOUNT)
    assert info is not None and info.vector_count == 1  # nothing above wrote anything


def test_body_forms_and_batch_semantics(server: ThreadedServer, cf: Cloudflare) -> None:
    idx = cf.vectorize.indexes
    idx.create(account_id=ACCOUNT, name="tv", config={"dimensions": 2, "metric": "euclidean"})
    base = f"{server.url}/client/v4/accounts/{ACCOUNT}/vectorize/v2/indexes/tv"
    # SDK body=str: sent as a JSON string literal holding the NDJSON.
    idx.upsert("tv", account_id=ACCOUNT, body=ndjson({"id": "s", "values": [1, 1]}).decode())  # type: ignore[arg-type]
    # curl --data-binary with application/x-ndjson.
    r = httpx.post(base + "/upsert", content=ndjson({"id": "c", "values": [2, 2]}), headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["result"]["mutationId"]
    # wrangler / requests: multipart with a file field named "vectors".
    files = {"vectors": ("vectors.ndjson", ndjson({"id": "w", "values": [3, 3]}), "application/x-ndjson")}
    r = httpx.post(base + "/insert", files=files, headers={"authorization": "Bearer x"})
    assert r.status_code == 200, r.text
    r = httpx.post(base + "/insert", files={"vectors": (None, ndjson({"id": "f", "values": [4, 4]}))})
    assert r.status_code == 200, r.text  # a plain (non-file) form field works too
    r = httpx.post(base + "/insert", content=ndjson({"id": "k", "values": [5, 6]}),
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text  # curl --data-binary without -H: raw NDJSON, whatever the type
    r = httpx.post(base + "/insert", files={"other": ("x", b"{}")})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == 40023
    # Within one batch: insert keeps the first of a repeated id, upsert the last.
    idx.insert("tv", account_id=ACCOUNT, body=ndjson({"id": "d", "values": [1, 0]}, {"id": "d", "values": [0, 1]}))
    idx.upsert("tv", account_id=ACCOUNT, body=ndjson({"id": "u", "values": [1, 0]}, {"id": "u", "values": [0, 1]}))
    got = {v["id"]: v["values"] for v in idx.get_by_ids("tv", account_id=ACCOUNT, ids=["d", "u", "s", "c", "w", "f", "k"])}  # type: ignore[union-attr]
    assert got == {"d": [1.0, 0.0], "u": [0.0, 1.0], "s": [1.0, 1.0], "c": [2.0, 2.0], "w": [3.0, 3.0], "f": [4.0, 4.0], "k": [5.0, 6.0]}
    # unparsable-behavior: error (default) rejects the whole request; discard skips the bad lines.
    bad = ndjson({"id": "g", "values": [5, 5]}) + b'{"id": "h", "values": [1e999, 1]}\n{"id": 5, "values": [1, 1]}\n[1]\n'
    with pytest.raises(BadRequestError):
        idx.upsert("tv", account_id=ACCOUNT, body=bad)
    idx.upsert("tv", account_id=ACCOUNT, body=bad, unparsable_behavior="discard")
    assert idx.get_by_ids("tv", account_id=ACCOUNT, ids=["g", "h"]) == [{"id": "g", "values": [5.0, 5.0]}]
    with pytest.raises(BadRequestError):
        idx.upsert("tv", account_id=ACCOUNT, body=b"")
    many = ndjson(*({"id": str(i), "values": [i, 1]} for i in range(5001)))
    with pytest.raises(cloudflare.APIStatusError) as err:
        idx.upsert("tv", account_id=ACCOUNT, body=many)
    assert err.value.status_code == 413
    info = idx.info("tv", account_id=ACCOUNT)
    assert info is not None and info.vector_count == 8


def test_namespace_vector_id_and_prefixes(server: ThreadedServer) -> None:
    with Cloudflare(base_url=server.url, api_token="anything") as cf:  # base_url without /client/v4
        idx = cf.vectorize.indexes
        idx.create(account_id=ACCOUNT, name="ns-test", config={"dimensions": 2, "metric": "dot-product"})
        idx.upsert("ns-test", account_id=ACCOUNT, body=ndjson(
            {"id": "a", "values": [1, 0], "namespace": "left"}, {"id": "b", "values": [2, 0], "namespace": "right"},
        ))
        q = idx.query("ns-test", account_id=ACCOUNT, vector=[1, 0], extra_body={"namespace": "left"})
        assert q is not None and [m.id for m in q.matches or []] == ["a"]
        q = idx.query("ns-test", account_id=ACCOUNT, vector=[1, 0])
        assert q is not None and [(m.id, m.score) for m in q.matches or []] == [("b", -2.0), ("a", -1.0)]
        q = idx.query("ns-test", account_id=ACCOUNT, vector=[], extra_body={"vector": None, "vectorId": "a"})
        assert q is not None and [m.id for m in q.matches or []] == ["b", "a"]
        with pytest.raises(NotFoundError):
            idx.query("ns-test", account_id=ACCOUNT, vector=[], extra_body={"vector": None, "vectorId": "zz"})
        with pytest.raises(BadRequestError):
            idx.query("ns-test", account_id=ACCOUNT, vector=[1, 0], extra_body={"vectorId": "a"})  # not both
    # Workers AI model ids: 5.x percent-encodes them, 4.x sends raw slashes; HF ids work too.
    for path in ("@cf%2Fbaai%2Fbge-base-en-v1.5", "@cf/baai/bge-base-en-v1.5", "BAAI%2Fbge-base-en-v1.5"):
        for prefix in ("/client/v4", ""):
            r = httpx.post(f"{server.url}{prefix}/accounts/{ACCOUNT}/ai/run/{path}", json={"text": ["a", "b", "c"]})
            assert r.status_code == 200 and r.json()["result"]["shape"] == [3, 768], (path, r.text)
    r = httpx.post(f"{server.url}/client/v4/accounts/{ACCOUNT}/ai/run/@cf/baai/bge-base-en-v1.5", json={"text": []})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == 5004
    r = httpx.get(f"{server.url}/client/v4/accounts/{ACCOUNT}/nothing")
    assert r.status_code == 404 and r.json()["success"] is False and r.json()["errors"][0]["code"] == 7000

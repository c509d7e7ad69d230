"""Fuzz: arbitrary JSON (and non-JSON) bodies on every write and query route never give a 5xx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import likewise
from likewise.server import create_app
from likewise.server.testing import FakeEmbedder

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=70),
)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5), max_leaves=20)
vector_like = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=70), st.integers()), "values": st.one_of(st.lists(scalars, max_size=4), json_values)},
    optional={"metadata": json_values, "namespace": json_values},
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"vectors": st.lists(vector_like, max_size=4)}),
    st.fixed_dictionaries({}, optional={"vector": json_values, "top_k": json_values, "filter": json_values,
                                        "return_metadata": json_values, "return_values": json_values, "id": json_values}),
    st.fixed_dictionaries({}, optional={"topK": json_values, "vector": st.lists(scalars, max_size=4),
                                        "filter": json_values, "returnMetadata": json_values, "ids": json_values}),
)
ROUTES = [
    "/v1/indexes/tv/upsert", "/v1/indexes/tv/insert", "/v1/indexes/tv/query", "/v1/indexes/tv/get_by_ids",
    "/v1/indexes/tv/delete_by_ids", "/v1/indexes/tv/upsert_arrays", "/v1/indexes/tv/metadata_indexes", "/v1/indexes",
    "/v1/embed", "/v1/embeddings", "/client/v4/accounts/a/vectorize/v2/indexes/tv/query",
    "/client/v4/accounts/a/vectorize/v2/indexes/tv/upsert", "/client/v4/accounts/a/vectorize/v2/indexes",
    "/client/v4/accounts/a/vectorize/v2/indexes/tv/metadata_index/create", "/client/v4/accounts/a/ai/run/@cf/baai/bge-small-en-v1.5",
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "data"
    app = create_app(path, embedder_factory=FakeEmbedder, engine=likewise.EngineParams(background=False))
    with TestClient(app, raise_server_exceptions=False) as c:
        c.post("/v1/indexes", json={"name": "tv", "dimensions": 3})
        c.post("/v1/indexes/tv/upsert", json={"vectors": [{"id": "a", "values": [1, 2, 3], "metadata": {"g": "x"}}]})
        c.post("/v1/indexes/tv/metadata_indexes", json={"property_name": "g", "index_type": "string"})
        yield c


def _encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies, raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_no_input_is_a_server_error(client: TestClient, route: str, body: Any, raw: bytes | None) -> None:
    content = raw if raw is not None else _encode(body)
    r = client.post(route, content=content, headers={"content-type": "application/json"})
    assert r.status_code < 500, (route, content[:200], r.text[:300])
    payload = r.json()
    assert ("error" in payload) or ("errors" in payload) or r.status_code < 400

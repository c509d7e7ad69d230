"""OpenAI embeddings compatibility, proven with the official ``openai`` SDK over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from likewise.server.testing import (
    FakeEmbedder,
    ThreadedServer,
)

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def oa(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="anything", max_retries=0)
    yield client
    client.close()


def test_embeddings_with_the_sdk(oa: openai.OpenAI) -> None:
    expected = FakeEmbedder(MODEL).embed_batch(["hello world", "a second text here"])
    res = oa.embeddings.create(model=MODEL, input=["hello world", "a second text here"])  # SDK asks for base64
    assert [d.index for d in res.data] == [0, 1] and res.model == MODEL and res.object == "list"
    np.testing.assert_array_equal(np.asarray(res.data[1].embedding, dtype=np.float32), expected[1])
    assert res.usage.prompt_tokens == res.usage.total_tokens == 4 + 6
    one = oa.embeddings.create(model=MODEL, input="hello world", encoding_format="float")
    assert len(one.data) == 1 and one.data[0].embedding == expected[0].tolist()
    alias = oa.embeddings.create(model="@cf/baai/bge-base-en-v1.5", input="x", dimensions=768)
    assert len(alias.data[0].embedding) == 768
    assert {m.id for m in oa.models.list()} >= {MODEL}


def test_embedding_errors(oa: openai.OpenAI, server: ThreadedServer) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oa.embeddings.create(model="text-embedding-3-small", input="x")
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        oa.embeddings.create(model=MODEL, input="x", dimensions=128)  # MiniLM is not a Matryoshka model
    assert bad.value.body["param"] == "dimensions"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        oa.embeddings.create(model=MODEL, input=[[1, 2, 3]])  # token arrays need OpenAI's tokenizer
    with pytest.raises(openai.BadRequestError):
        oa.embeddings.create(model=MODEL, input="")
    with pytest.raises(openai.BadRequestError) as long:
        oa.embeddings.create(model=MODEL, input=" ".join(["w"] * 600))
    assert long.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": MODEL, "input": "x", "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert vec.shape == (384,) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5
    r = httpx.post(f"{server.url}/v1/embeddings", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"

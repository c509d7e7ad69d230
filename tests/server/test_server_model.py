"""The few tests that run the real bundled model (sentence-transformers/all-MiniLM-L6-v2) over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import likewise
from likewise.server import create_app
from likewise.server.testing import ThreadedServer

pytestmark = pytest.mark.model
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    path: Path = tmp_path_factory.mktemp("model") / "data"
    with ThreadedServer(create_app(path, engine=likewise.EngineParams(background=False))) as server:
        yield server


def test_workers_ai_and_openai_with_the_real_model(real: ThreadedServer) -> None:
    import cloudflare
    import openai
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Interest rates rose again."]
    with cloudflare.Cloudflare(base_url=real.url + "/client/v4", api_token="x") as cf:
        out = cf.ai.run(MODEL, account_id="a", text=texts)
    assert isinstance(out, dict) and out["shape"] == [3, 384]
    m = np.asarray(out["data"], dtype=np.float32)
    assert m[0] @ m[1] > m[0] @ m[2] + 0.2  # a real model: the cats are closer than the rates
    with openai.OpenAI(base_url=real.url + "/v1", api_key="x", max_retries=0) as oa:
        res = oa.embeddings.create(model=MODEL, input=texts)
    np.testing.assert_allclose(np.asarray([d.embedding for d in res.data], dtype=np.float32), m, atol=1e-6)
    assert res.usage.prompt_tokens == 25  # WordPiece pieces plus [CLS] and [SEP], by the model's tokenizer
    r = httpx.post(real.url + "/v1/embed", json={"input": "word " * 600})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "input_too_long")


def test_client_indexes_texts_like_the_embedded_database(real: ThreadedServer, tmp_path: Path) -> None:
    items = [("cat", "A cat sits on the mat.", {"kind": "pet"}), ("rates", "Interest rates rose again.")]
    with likewise.Client(real.url) as client:
        remote = client.create_index("notes", model=MODEL)
        assert (remote.dimensions, remote.metric, remote.config.model) == (384, "cosine", MODEL)
        assert remote.has_embedder and remote.config.embedder == "text"
        plain = client.create_index("plain", dimensions=3)
        assert not plain.has_embedder and plain.config.embedder is None
        assert client.index("notes").has_embedder  # as described by the server
        remote.upsert_texts(items)
        got = remote.query_text("a kitten on a rug", top_k=2, return_metadata="all")
    with likewise.open(tmp_path / "local") as db:
        local = db.create_index("notes", model=MODEL)
        assert local.has_embedder and local.config == db.list_indexes()[0]
        assert local.config.embedder == "text"
        local.upsert_texts(items)
        want = local.query_text("a kitten on a rug", top_k=2, return_metadata="all")
    assert got.ids == want.ids == ["cat", "rates"]
    assert [m.metadata for m in got.matches] == [m.metadata for m in want.matches]
    assert [m.score for m in got.matches] == pytest.approx([m.score for m in want.matches], abs=1e-6)

"""Authentication and authorisation: 401 vs 403, roles, index scope without leaking existence."""

from __future__ import annotations

import hmac
from typing import Any

import httpx
import pytest

import likewise
from likewise.server.auth import Authenticator, Token, parse_token_spec, tokens_from_env
from likewise.server.errors import ApiError

TOKENS = [
    Token("adm-token", "admin"),
    Token("wr-token", "write"),
    Token("rd-token", "read"),
    Token("sc-token", "write", frozenset({"tv"})),
]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def secured(make_server: Any) -> Any:
    server = make_server(tokens=TOKENS)
    for name in ("tv", "other"):
        r = httpx.post(server.url + "/v1/indexes", json={"name": name, "dimensions": 2}, headers=bearer("adm-token"))
        assert r.status_code == 201
    return server


def test_401_for_missing_or_wrong_tokens(secured: Any) -> None:
    for headers in ({}, bearer("nope"), {"authorization": "Basic abc"}, {"authorization": "Bearer"}):
        r = httpx.get(secured.url + "/v1/indexes", headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthenticated"), headers
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(secured.url + "/healthz").status_code == 200  # liveness needs no token
    assert httpx.get(secured.url + "/metrics").status_code == 401
    assert httpx.get(secured.url + "/metrics", headers=bearer("rd-token")).status_code == 200


def test_roles(secured: Any) -> None:
    url = secured.url
    write = {"vectors": [{"id": "a", "values": [1, 0]}]}
    assert httpx.get(url + "/v1/indexes/tv/info", headers=bearer("rd-token")).status_code == 200
    r = httpx.post(url + "/v1/indexes/tv/upsert", json=write, headers=bearer("rd-token"))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    assert httpx.post(url + "/v1/indexes/tv/upsert", json=write, headers=bearer("wr-token")).status_code == 200
    r = httpx.post(url + "/v1/indexes", json={"name": "new", "dimensions": 2}, headers=bearer("wr-token"))
    assert r.status_code == 403
    assert httpx.delete(url + "/v1/indexes/tv", headers=bearer("wr-token")).status_code == 403
    assert httpx.get(url + "/v1/indexes/tv/info", headers=bearer("rd-token")).json()["vector_count"] == 1


def test_scope_never_leaks_existence(secured: Any) -> None:
    url = secured.url
    h = bearer("sc-token")
    assert httpx.post(url + "/v1/indexes/tv/upsert", json={"vectors": [{"id": "a", "values": [1, 0]}]}, headers=h).status_code == 200
    existing = httpx.get(url + "/v1/indexes/other", headers=h)
    missing = httpx.get(url + "/v1/indexes/ghost", headers=h)
    assert existing.status_code == missing.status_code == 403
    assert existing.json()["error"]["code"] == missing.json()["error"]["code"] == "forbidden"
    assert [i["name"] for i in httpx.get(url + "/v1/indexes", headers=h).json()["indexes"]] == ["tv"]
    cf = httpx.get(url + "/client/v4/accounts/a/vectorize/v2/indexes", headers=h).json()["result"]
    assert [i["name"] for i in cf] == ["tv"]
    r = httpx.post(url + "/client/v4/accounts/a/vectorize/v2/indexes/ghost/query", json={"vector": [1, 0]}, headers=h)
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == 10000


@pytest.mark.filterwarnings("ignore:Passing raw bytes as `body` is deprecated:DeprecationWarning")
def test_sdks_and_client_with_tokens(secured: Any) -> None:
    import cloudflare
    import openai

    with cloudflare.Cloudflare(base_url=secured.url + "/client/v4", api_token="wrong", max_retries=0) as cf:
        with pytest.raises(cloudflare.AuthenticationError) as err:
            cf.vectorize.indexes.list(account_id="a")
        assert err.value.body["errors"][0]["code"] == 10000  # type: ignore[index]
    with cloudflare.Cloudflare(base_url=secured.url + "/client/v4", api_token="rd-token") as cf:
        assert [i.name for i in cf.vectorize.indexes.list(account_id="a")] == ["other", "tv"]
        with pytest.raises(cloudflare.PermissionDeniedError):
            cf.vectorize.indexes.upsert("tv", account_id="a", body=b'{"id": "x", "values": [1, 0]}')
    with openai.OpenAI(base_url=secured.url + "/v1", api_key="wrong", max_retries=0) as oa:
        with pytest.raises(openai.AuthenticationError):
            oa.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input="x")
    with likewise.Client(secured.url, token="rd-token") as client:
        assert [c.name for c in client.list_indexes()] == ["other", "tv"]
        with pytest.raises(ApiError) as api:
            client.index("tv").upsert([likewise.Vector("x", [1, 0])])
        assert (api.value.http_status, api.value.code) == (403, "forbidden")
    with likewise.Client(secured.url, token="nope") as client, pytest.raises(ApiError) as api:
        client.list_indexes()
    assert api.value.http_status == 401


def test_no_tokens_means_any_or_no_token(server: Any) -> None:
    for headers in ({}, bearer("whatever"), {"x-auth-key": "k"}):
        assert httpx.post(server.url + "/v1/indexes", json={"name": f"i{len(headers)}x", "dimensions": 2}, headers=headers).status_code in (201, 409)


def test_token_specs_and_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_token_spec("abc") == Token("abc", "admin", None)
    assert parse_token_spec("abc:read") == Token("abc", "read", None)
    assert parse_token_spec("abc:write:tv, news") == Token("abc", "write", frozenset({"tv", "news"}))
    with pytest.raises(ValueError):
        parse_token_spec("abc:superuser")
    assert "abc" not in repr(parse_token_spec("abc:read"))
    assert tokens_from_env({"LIKEWISE_TOKENS": "a:read; b:write:x"}) == [Token("a", "read"), Token("b", "write", frozenset({"x"}))]
    calls: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = Authenticator(TOKENS)
    assert auth.authenticate({"authorization": "Bearer adm-token"}).role == "admin"
    assert len(calls) == len(TOKENS)  # every token is compared, even after a match

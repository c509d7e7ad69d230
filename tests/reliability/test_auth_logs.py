"""Auth over a real server process (issue #7 point 7): the status codes, and no token in any log.

tests/server/test_server_auth.py checks the codes in process; here a real ``likewise serve`` runs
with tokens from ``--token`` and from ``LIKEWISE_TOKENS``, at ``--log-level debug``, and answers
requests with no, wrong, under-privileged and out-of-scope tokens (on an existing and a missing
index alike, so a 403 does not reveal whether an index exists). Everything the process wrote to
stdout and stderr is then searched for every token value, whole and in halves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from .conftest import ServerProcess

ADMIN = "adm-7f3c9a1e5b2d"
READ = "rd-2b8e4f6a0c1d"
SCOPED = "sc-9d1a3e5f7b2c"
FROM_ENV = "env-4c6e8a0b2d4f"
WRONG = "wrong-5e7a9c1d3f"


def _h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_auth_codes_and_tokens_never_logged(tmp_path: Path, monkeypatch: Any) -> None:
    log = tmp_path / "server.log"
    monkeypatch.setenv("LIKEWISE_TOKENS", f"{FROM_ENV}:write")
    server = ServerProcess(tmp_path / "data", "--log-level", "debug", "--token", ADMIN, "--token", f"{READ}:read",
                           "--token", f"{SCOPED}:write:alpha", log=log)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for name in ("alpha", "beta"):
                assert http.post("/v1/indexes", json={"name": name, "dimensions": 2}, headers=_h(ADMIN)).status_code == 201
            write = {"vectors": [{"id": "a", "values": [1, 0]}]}
            assert http.get("/v1/indexes").status_code == 401
            assert http.get("/v1/indexes", headers=_h(WRONG)).status_code == 401
            assert http.get("/v1/indexes", params={"token": ADMIN}).status_code == 401  # not a way in
            r = http.post("/v1/indexes/alpha/upsert", json=write, headers=_h(READ))
            assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
            assert http.post("/v1/indexes/alpha/upsert", json=write, headers=_h(SCOPED)).status_code == 200
            assert http.post("/v1/indexes/alpha/upsert", json=write, headers=_h(FROM_ENV)).status_code == 200
            existing = http.post("/v1/indexes/beta/upsert", json=write, headers=_h(SCOPED))
            missing = http.post("/v1/indexes/ghost/upsert", json=write, headers=_h(SCOPED))
            assert existing.status_code == missing.status_code == 403
            assert existing.json()["error"]["code"] == missing.json()["error"]["code"] == "forbidden"
            assert existing.json()["error"]["message"].replace("beta", "X") == missing.json()["error"]["message"].replace("ghost", "X")
            cf = "/client/v4/accounts/a/vectorize/v2/indexes"
            assert http.get(cf, headers=_h(WRONG)).status_code == 401
            assert http.post(f"{cf}/ghost/query", json={"vector": [1, 0]}, headers=_h(SCOPED)).status_code == 403
            assert http.post("/v1/embeddings", json={"input": "x", "model": "m"}, headers=_h(WRONG)).status_code == 401
            assert http.get("/metrics", headers=_h(READ)).status_code == 200
    finally:
        server.stop()  # a graceful stop: shutdown logging included
    text = log.read_text(errors="replace")
    assert "auth on" in text  # the log is really there, and at debug level it is chatty
    for token in (ADMIN, READ, SCOPED, FROM_ENV, WRONG):
        for part in (token, token[: len(token) // 2 + 1], token[len(token) // 2 :]):
            assert part not in text, f"a token ({part!r}) appears in the server log"
    assert os.environ["LIKEWISE_TOKENS"] not in text

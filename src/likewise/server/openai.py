"""OpenAI embeddings API compatibility: ``POST /v1/embeddings`` and ``GET /v1/models``.

Request: ``{"input": str | [str], "model", "encoding_format"?: "float"|"base64", "dimensions"?, "user"?}``.
The official SDK asks for ``base64`` unless told otherwise (it decodes little-endian float32 itself),
so both encodings are first-class. ``dimensions`` is honoured where the model allows it: equal to
the model's width always, smaller only for models trained for truncation (an embedder that sets
``matryoshka = True``), re-normalised as OpenAI does. Token-array inputs are refused (they would need
OpenAI's tokenizer). ``usage`` counts tokens with the model's own tokenizer when it exposes one.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` (:func:`render_error`).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import LikewiseError, ModelNotFoundError
from .common import NO_RETRY, authorize, json_response, run, state
from .errors import ApiError, native_error_body, parse_json
from .models import max_input_tokens, token_report

__all__ = ["is_openai_path", "render_error", "router"]

router = APIRouter(tags=["openai"])
MAX_INPUTS = 2048


def is_openai_path(path: str) -> bool:
    return path in ("/v1/embeddings", "/v1/models") or path.startswith("/v1/models/")


class OpenAIError(ApiError):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(status, code or "invalid_request_error", message)
        self.param = param


def render_error(request: Request, exc: LikewiseError) -> Response:
    status = exc.http_status
    if status == 401:
        kind, code = "invalid_request_error", "invalid_api_key"
    elif status == 403:
        kind, code = "permission_error", exc.code
    elif status == 404:
        kind, code = "invalid_request_error", "model_not_found" if isinstance(exc, ModelNotFoundError) else exc.code
    elif status >= 500:
        kind, code = "server_error", exc.code
    else:
        kind, code = "invalid_request_error", exc.code
    body = native_error_body(exc)
    body["error"].update({"type": kind, "param": getattr(exc, "param", None), "code": code})
    headers = dict(NO_RETRY) if status >= 500 or status in (409, 429) else None
    return json_response(body, status=status, headers=headers)


@router.post("/v1/embeddings", summary="OpenAI: create embeddings")
async def embeddings(request: Request) -> Response:
    authorize(request, "read")
    body = parse_json(await request.body())
    if not isinstance(body, dict):
        raise OpenAIError(400, "the request body must be a JSON object")
    model_name = body.get("model")
    if not isinstance(model_name, str) or not model_name:
        raise OpenAIError(400, "you must provide a model parameter", param="model")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if isinstance(texts, list) and texts and all(isinstance(t, (int, list)) for t in texts):
        raise OpenAIError(400, "token-array input is not supported by this server; send text", param="input")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise OpenAIError(400, "'input' must be a non-empty string or an array of non-empty strings", param="input")
    if len(texts) > MAX_INPUTS:
        raise OpenAIError(400, f"'input' may hold at most {MAX_INPUTS} items; got {len(texts)}", param="input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise OpenAIError(400, f"encoding_format must be 'float' or 'base64'; got {encoding!r}", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise OpenAIError(400, "dimensions must be a positive integer", param="dimensions")
    models = state(request).models

    def work() -> tuple[np.ndarray, list[int]]:
        model = models.get(model_name)
        tokens, too_long = token_report(model, texts)
        if any(too_long):
            i = too_long.index(True)
            raise OpenAIError(
                400,
                f"This model's maximum context length is {max_input_tokens(model)} tokens; input {i} is longer.",
                param="input",
                code="context_length_exceeded",
            )
        matrix = models.embed(texts, model_name)[1]
        width = matrix.shape[1]
        if dimensions is not None and dimensions != width:
            if not getattr(model, "matryoshka", False) or dimensions > width:
                raise OpenAIError(
                    400,
                    f"model {model_name} does not support dimensions={dimensions}; its embeddings have {width}",
                    param="dimensions",
                )
            matrix = matrix[:, :dimensions]
            matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(matrix, dtype="<f4"), tokens

    matrix, tokens = await run(work)
    data: list[dict[str, Any]] = []
    for i, row in enumerate(matrix):
        embedding: Any = base64.b64encode(row.tobytes()).decode("ascii") if encoding == "base64" else row.tolist()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    used = sum(tokens)
    return json_response(
        {"object": "list", "data": data, "model": model_name, "usage": {"prompt_tokens": used, "total_tokens": used}}
    )


@router.get("/v1/models", summary="OpenAI: list models")
async def list_models(request: Request) -> Response:
    authorize(request, "read")
    models = state(request).models
    names = sorted(set(models.loaded()) | {models.default_model})
    created = int(time.time())
    return json_response(
        {"object": "list", "data": [{"id": n, "object": "model", "created": created, "owned_by": "likewise"} for n in names]}
    )


@router.get("/v1/models/{model:path}", summary="OpenAI: describe a model")
async def get_model(model: str, request: Request) -> Response:
    authorize(request, "read")
    await run(state(request).models.get, model)  # 404 model_not_found when it is not available
    return json_response({"id": model, "object": "model", "created": int(time.time()), "owned_by": "likewise"})

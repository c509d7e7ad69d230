"""The native HTTP API under ``/v1``: every operation of the embedded ``Database`` and ``Index``.

Names and shapes mirror the Python interface in snake_case, so that :class:`likewise.Client` is a thin
translation and answers exactly as the embedded database does. Arguments are passed to the core
as they arrive (after JSON decoding), so the core's validators produce the same errors over HTTP as
in-process; this layer adds only what HTTP needs: media types, body and batch limits, auth, and the
text front door (``/v1/embed`` and query by ``text``).

Errors are ``{"error": {"code", "message", "details"}}`` with the status of the error class.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from typing import Any

import numpy as np
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..errors import BatchTooLargeError, InvalidArgumentError, InvalidIdError
from ..index import Index
from ..types import Vector
from .common import (
    QUERIES,
    as_float_array,
    authorize,
    json_response,
    open_index,
    plain_query,
    read_json,
    require_object,
    run,
    state,
    vectors_as_arrays,
)
from .errors import ApiError, parse_strict_json
from .models import max_input_tokens, token_report

__all__ = ["check_keys", "index_config", "parse_ndjson_vectors", "router"]

router = APIRouter(prefix="/v1", tags=["native"])

# -- OpenAPI request bodies (parsing is done by hand, so FastAPI cannot infer them) -------------------

_VECTOR = {
    "type": "object",
    "required": ["id", "values"],
    "properties": {
        "id": {"type": "string", "maxLength": 64},
        "values": {"type": "array", "items": {"type": "number"}},
        "metadata": {"type": "object"},
        "namespace": {"type": "string"},
    },
}
_QUERY = {
    "type": "object",
    "description": "Exactly one of vector, id or text.",
    "properties": {
        "vector": {"type": "array", "items": {"type": "number"}},
        "id": {"type": "string"},
        "text": {"type": "string"},
        "model": {"type": "string"},
        "top_k": {"type": "integer", "default": 5, "minimum": 1, "maximum": 1000},
        "filter": {"type": "object"},
        "namespace": {"type": "string"},
        "return_values": {"type": "boolean", "default": False},
        "return_metadata": {"type": "string", "enum": ["none", "indexed", "all"], "default": "none"},
    },
}


def _body(schema: dict[str, Any], *, ndjson: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if ndjson:
        content["application/x-ndjson"] = {"schema": {"type": "string", "description": "one vector per line"}}
    return {"requestBody": {"required": True, "content": content}}


# -- helpers -------------------------------------------------------------------------------------------


def index_config(idx_config: Any) -> dict[str, Any]:
    return asdict(idx_config)


def check_keys(body: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    """Unknown keys are an error: a typo (``topk``) must not silently fall back to a default."""
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise InvalidArgumentError(
            f"unknown field(s) in {what}: {', '.join(map(repr, unknown))}; expected some of {', '.join(allowed)}",
            fields=unknown,
        )


def parse_ndjson_vectors(data: bytes) -> list[Any]:
    """NDJSON (one vector object per line) for the native write routes; any bad line fails the batch."""
    out: list[Any] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(parse_strict_json(line))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"NDJSON line {number} is not valid JSON: {exc}", line=number) from exc
    return out


def _ids(body: dict[str, Any]) -> Any:
    ids = body.get("ids")
    if not isinstance(ids, (list, str)):  # a string goes on: the core has its own message for it
        raise InvalidArgumentError("'ids' must be an array of vector ids")
    return ids


def _check_batch(request: Request, n: int) -> None:
    limit = state(request).max_batch
    if n > limit:
        raise BatchTooLargeError(f"{n} vectors in one request; the limit is {limit}", limit=limit, got=n)


async def _index(request: Request, name: str) -> Index:
    return await open_index(request, name)


# -- indexes ---------------------------------------------------------------------------------------------


@router.get("/indexes", summary="List indexes")
async def list_indexes(request: Request) -> Response:
    principal = authorize(request, "read")
    configs = await run(state(request).db.list_indexes)
    return json_response({"indexes": [index_config(c) for c in configs if principal.can_see(c.name)]})


@router.post(
    "/indexes",
    summary="Create an index",
    status_code=201,
    openapi_extra=_body(
        {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "dimensions": {"type": "integer"},
                "metric": {"type": "string", "enum": ["cosine", "euclidean", "dot-product"]},
                "description": {"type": "string"},
                "model": {"type": "string", "description": "bind a text model; it sets dimensions and metric"},
            },
        }
    ),
)
async def create_index(request: Request) -> Response:
    st = state(request)
    principal = st.auth.authenticate(request.headers)  # 401 before the body is even read
    body = require_object(await read_json(request))
    check_keys(body, ("name", "dimensions", "metric", "description", "model"), "create index")
    name: Any = body.get("name")  # passed on as sent: the core names what is wrong with it
    principal.require("admin", name if isinstance(name, str) else None)
    kwargs = {k: body[k] for k in ("dimensions", "metric", "description", "model") if k in body}
    idx = await run(lambda: st.db.create_index(name, **kwargs))
    return json_response(index_config(idx.config), status=201)


@router.get("/indexes/{name}", summary="Describe an index")
async def get_index(name: str, request: Request) -> Response:
    authorize(request, "read", name)
    idx = await _index(request, name)
    return json_response(index_config(idx.config))


@router.delete("/indexes/{name}", summary="Delete an index and its vectors")
async def delete_index(name: str, request: Request) -> Response:
    authorize(request, "admin", name)
    await run(state(request).db.delete_index, name)
    return json_response({"deleted": name})


@router.get("/indexes/{name}/info", summary="Vector count and mutation progress")
async def info(name: str, request: Request) -> Response:
    authorize(request, "read", name)
    idx = await _index(request, name)
    return json_response(asdict(await run(idx.info)))


# -- writes ----------------------------------------------------------------------------------------------


async def _vectors_body(request: Request) -> list[Any]:
    ctype = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype in ("application/x-ndjson", "application/jsonl", "application/ndjson"):
        vectors: Any = parse_ndjson_vectors(await request.body())
    else:
        body = require_object(await read_json(request))
        if "values_b64" in body:
            return _columnar_vectors(request, body)
        check_keys(body, ("vectors",), "write request")
        vectors = body.get("vectors")
        if not isinstance(vectors, list):
            raise InvalidArgumentError("'vectors' must be an array of {id, values, metadata?, namespace?} objects")
    _check_batch(request, len(vectors))
    for i, item in enumerate(vectors):  # the bad-input table wants invalid_id for a missing id
        if isinstance(item, dict) and "id" not in item:
            raise InvalidIdError(f"vector #{i} has no 'id'", index=i)
    return list(vectors_as_arrays(vectors))


def _columnar_vectors(request: Request, body: dict[str, Any]) -> list[Any]:
    """The binary form of a write (what :class:`likewise.Client` sends for numpy vectors):
    ``{"ids", "values_b64", "shape", "metadata"?, "namespaces"?}``, one entry per row. The rows become
    ordinary ``Vector`` objects, so ``insert``/``upsert`` validate them exactly as any other input."""
    check_keys(body, ("ids", "values_b64", "shape", "metadata", "namespaces"), "write request")
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise InvalidArgumentError("'ids' must be an array")
    _check_batch(request, len(ids))
    matrix = _decode_matrix(body["values_b64"], body.get("shape"))
    metadata, namespaces = body.get("metadata"), body.get("namespaces")
    for key, column in (("metadata", metadata), ("namespaces", namespaces)):
        if column is not None and (not isinstance(column, list) or len(column) != len(ids)):
            raise InvalidArgumentError(f"'{key}' must be an array with one entry per id")
    if len(matrix) != len(ids):
        raise InvalidArgumentError(f"{len(ids)} ids but {len(matrix)} rows in values_b64")
    return [
        Vector(vid, matrix[i], metadata[i] if metadata else None, namespaces[i] if namespaces else None)
        for i, vid in enumerate(ids)
    ]


_WRITE_BODY = _body(
    {"type": "object", "required": ["vectors"], "properties": {"vectors": {"type": "array", "items": _VECTOR}}},
    ndjson=True,
)


@router.post("/indexes/{name}/insert", summary="Insert vectors (existing ids are kept)", openapi_extra=_WRITE_BODY)
async def insert(name: str, request: Request) -> Response:
    authorize(request, "write", name)
    vectors = await _vectors_body(request)
    idx = await _index(request, name)
    mutation = await run(idx.insert, vectors)
    return json_response({"mutation_id": mutation, "count": len(vectors)})


@router.post("/indexes/{name}/upsert", summary="Create or replace vectors", openapi_extra=_WRITE_BODY)
async def upsert(name: str, request: Request) -> Response:
    authorize(request, "write", name)
    vectors = await _vectors_body(request)
    idx = await _index(request, name)
    mutation = await run(idx.upsert, vectors)
    return json_response({"mutation_id": mutation, "count": len(vectors)})


@router.post(
    "/indexes/{name}/upsert_arrays",
    summary="Upsert a matrix (JSON rows or base64 float32)",
    openapi_extra=_body(
        {
            "type": "object",
            "required": ["ids"],
            "properties": {
                "ids": {"type": "array", "items": {"type": "string"}},
                "values": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "values_b64": {"type": "string", "description": "little-endian float32, row-major"},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "metadata": {"type": "array"},
                "namespace": {"type": "string"},
            },
        }
    ),
)
async def upsert_arrays(name: str, request: Request) -> Response:
    authorize(request, "write", name)
    body = require_object(await read_json(request))
    check_keys(body, ("ids", "values", "values_b64", "shape", "metadata", "namespace"), "upsert_arrays")
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise InvalidArgumentError("'ids' must be an array of strings")
    _check_batch(request, len(ids))
    if ("values" in body) == ("values_b64" in body):
        raise InvalidArgumentError("give exactly one of 'values' or 'values_b64'")
    matrix: Any = body.get("values")
    if "values_b64" in body:
        matrix = _decode_matrix(body["values_b64"], body.get("shape"))
    idx = await _index(request, name)
    mutation = await run(idx.upsert_arrays, ids, matrix, body.get("metadata"), body.get("namespace"))
    return json_response({"mutation_id": mutation, "count": len(ids)})


def _decode_vector(data: Any) -> np.ndarray:
    if not isinstance(data, str):
        raise InvalidArgumentError("'vector_b64' must be a base64 string of little-endian float32")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgumentError(f"'vector_b64' is not valid base64: {exc}") from exc
    if len(raw) % 4:
        raise InvalidArgumentError(f"'vector_b64' holds {len(raw)} bytes, not a whole number of float32")
    return np.frombuffer(raw, dtype="<f4")


def _decode_matrix(data: Any, shape: Any) -> np.ndarray:
    if not isinstance(data, str):
        raise InvalidArgumentError("'values_b64' must be a base64 string")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise InvalidArgumentError("'shape' must be [rows, dimensions] with values_b64")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgumentError(f"'values_b64' is not valid base64: {exc}") from exc
    if len(raw) != shape[0] * shape[1] * 4:
        raise InvalidArgumentError(
            f"'values_b64' holds {len(raw)} bytes; shape {shape} of float32 needs {shape[0] * shape[1] * 4}"
        )
    return np.frombuffer(raw, dtype="<f4").reshape(shape[0], shape[1])


_OBJECTS_BODY = _body(
    {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "description": "[id, object] or [id, object, metadata]"},
            "namespace": {"type": "string"},
        },
    }
)


async def _upsert_objects(request: Request, name: str, method: str) -> Response:
    authorize(request, "write", name)
    body = require_object(await read_json(request))
    check_keys(body, ("items", "namespace"), method)
    items = body.get("items")
    if not isinstance(items, list):
        raise InvalidArgumentError("'items' must be an array of [id, object] or [id, object, metadata]")
    _check_batch(request, len(items))
    idx = await _index(request, name)
    mutation = await run(getattr(idx, method), items, body.get("namespace"))
    return json_response({"mutation_id": mutation, "count": len(items)})


@router.post("/indexes/{name}/upsert_texts", summary="Embed texts with the index's model and upsert", openapi_extra=_OBJECTS_BODY)
async def upsert_texts(name: str, request: Request) -> Response:
    return await _upsert_objects(request, name, "upsert_texts")


@router.post("/indexes/{name}/upsert_records", summary="Embed records with the index's record embedder and upsert", openapi_extra=_OBJECTS_BODY)
async def upsert_records(name: str, request: Request) -> Response:
    return await _upsert_objects(request, name, "upsert_records")


@router.post(
    "/indexes/{name}/upsert_items",
    summary="Upsert every item the index's item embedder learned",
    openapi_extra=_body({"type": "object", "properties": {"metadata": {"type": "object"}, "namespace": {"type": "string"}}}),
)
async def upsert_items(name: str, request: Request) -> Response:
    authorize(request, "write", name)
    body = require_object(await read_json(request))
    check_keys(body, ("metadata", "namespace"), "upsert_items")
    idx = await _index(request, name)
    mutation = await run(idx.upsert_items, body.get("metadata"), body.get("namespace"))
    return json_response({"mutation_id": mutation})


@router.post(
    "/indexes/{name}/delete_by_ids",
    summary="Delete vectors by id",
    openapi_extra=_body({"type": "object", "required": ["ids"], "properties": {"ids": {"type": "array"}}}),
)
async def delete_by_ids(name: str, request: Request) -> Response:
    authorize(request, "write", name)
    body = require_object(await read_json(request))
    check_keys(body, ("ids",), "delete_by_ids")
    ids = _ids(body)
    _check_batch(request, len(ids))
    idx = await _index(request, name)
    return json_response({"mutation_id": await run(idx.delete_by_ids, ids)})


# -- reads -----------------------------------------------------------------------------------------------


@router.post("/indexes/{name}/query", summary="Nearest vectors to a vector, a stored id or a text", openapi_extra=_body(_QUERY))
async def query(name: str, request: Request) -> Response:
    with QUERIES.counted():
        return await _query(name, request)


async def _query(name: str, request: Request) -> Response:
    authorize(request, "read", name)
    body = require_object(await read_json(request))
    check_keys(
        body,
        ("vector", "vector_b64", "id", "text", "record", "model", "top_k", "filter", "namespace", "return_values",
         "return_metadata"),
        "query",
    )
    if "vector_b64" in body:  # what likewise.Client sends for a numpy vector: float32, no JSON floats
        body["vector"] = _decode_vector(body.pop("vector_b64"))
    given = [k for k in ("vector", "id", "text", "record") if k in body]
    if len(given) != 1:
        raise InvalidArgumentError("give exactly one of 'vector', 'id', 'text' or 'record'")
    kwargs: dict[str, Any] = {
        k: body[k] for k in ("top_k", "filter", "namespace", "return_values", "return_metadata") if k in body
    }
    st = state(request)
    idx = await _index(request, name)
    if "id" in body:
        result = await run(lambda: idx.query_by_id(body["id"], **kwargs))
    elif "vector" in body:
        vector = as_float_array(body["vector"])
        plain = plain_query(
            kwargs.get("filter"), kwargs.get("namespace"), kwargs.get("return_values"), kwargs.get("return_metadata", "none")
        )
        result = await QUERIES.answer(lambda: idx.query(vector, **kwargs), plain)
    elif "record" in body:
        result = await run(lambda: idx.query_record(body["record"], **kwargs))
    elif "model" in body:  # an explicit model: embed here, with the server's model registry
        text = body["text"]
        if not isinstance(text, str) or not text:
            raise InvalidArgumentError("'text' must be a non-empty string")

        def by_text() -> Any:
            _, matrix = st.models.embed([text], body["model"])
            return idx.query(matrix[0], **kwargs)

        result = await run(by_text)
    else:  # the index's own embedder, exactly as Index.query_text in-process
        result = await run(lambda: idx.query_text(body["text"], **kwargs))
    return json_response(result.to_dict())


@router.post(
    "/indexes/{name}/get_by_ids",
    summary="Stored vectors by id",
    openapi_extra=_body({"type": "object", "required": ["ids"], "properties": {"ids": {"type": "array"}}}),
)
async def get_by_ids(name: str, request: Request) -> Response:
    authorize(request, "read", name)
    body = require_object(await read_json(request))
    check_keys(body, ("ids",), "get_by_ids")
    ids = _ids(body)
    idx = await _index(request, name)
    found = await run(idx.get_by_ids, ids)
    return json_response({"vectors": [v.to_dict() for v in found]})


@router.get(
    "/indexes/{name}/vectors",
    summary="One page of vector ids (cursor over a snapshot)",
    openapi_extra={
        "parameters": [
            {"name": "count", "in": "query", "required": False, "schema": {"type": "integer", "default": 100}},
            {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
        ]
    },
)
async def list_vectors(name: str, request: Request) -> Response:
    authorize(request, "read", name)
    count, cursor = request.query_params.get("count"), request.query_params.get("cursor")
    kwargs: dict[str, Any] = {}
    if count is not None:
        kwargs["count"] = int(count) if count.lstrip("-").isdigit() else count  # the core names the problem
    if cursor is not None:
        kwargs["cursor"] = cursor
    idx = await _index(request, name)
    page = await run(lambda: idx.list_vectors(**kwargs))
    return json_response(asdict(page))


# -- metadata indexes ------------------------------------------------------------------------------------


@router.get("/indexes/{name}/metadata_indexes", summary="List metadata indexes")
async def list_metadata_indexes(name: str, request: Request) -> Response:
    authorize(request, "read", name)
    idx = await _index(request, name)
    found = await run(idx.list_metadata_indexes)
    return json_response({"metadata_indexes": [asdict(m) for m in found]})


@router.post(
    "/indexes/{name}/metadata_indexes",
    summary="Create a metadata index",
    openapi_extra=_body(
        {
            "type": "object",
            "required": ["property_name", "index_type"],
            "properties": {
                "property_name": {"type": "string"},
                "index_type": {"type": "string", "enum": ["string", "number", "boolean"]},
            },
        }
    ),
)
async def create_metadata_index(name: str, request: Request) -> Response:
    authorize(request, "write", name)
    body = require_object(await read_json(request))
    check_keys(body, ("property_name", "index_type"), "create metadata index")
    idx = await _index(request, name)
    mutation = await run(idx.create_metadata_index, body.get("property_name"), body.get("index_type"))
    return json_response({"mutation_id": mutation})


@router.delete("/indexes/{name}/metadata_indexes/{property_name}", summary="Delete a metadata index")
async def delete_metadata_index(name: str, property_name: str, request: Request) -> Response:
    authorize(request, "write", name)
    idx = await _index(request, name)
    return json_response({"mutation_id": await run(idx.delete_metadata_index, property_name)})


@router.post("/indexes/{name}/optimize", summary="Index everything into the ANN graph and snapshot it")
async def optimize(name: str, request: Request) -> Response:
    authorize(request, "write", name)
    idx = await _index(request, name)
    await run(idx.optimize)
    return json_response({})


# -- embeddings ------------------------------------------------------------------------------------------


@router.post(
    "/embed",
    summary="Embed texts",
    openapi_extra=_body(
        {
            "type": "object",
            "required": ["input"],
            "properties": {
                "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                "model": {"type": "string"},
                "truncate": {"type": "boolean", "default": False},
            },
        }
    ),
)
async def embed(request: Request) -> Response:
    authorize(request, "read")
    body = require_object(await read_json(request))
    check_keys(body, ("input", "model", "truncate"), "embed")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidArgumentError("'input' must be a string or a non-empty array of strings")
    _check_batch(request, len(texts))
    truncate = body.get("truncate", False)
    if not isinstance(truncate, bool):
        raise InvalidArgumentError("'truncate' must be a boolean")
    st = state(request)
    model_name = body.get("model")

    def work() -> tuple[Any, np.ndarray, list[int]]:
        model = st.models.get(model_name)
        tokens, too_long = token_report(model, texts)
        if any(too_long) and not truncate:
            i = too_long.index(True)
            raise ApiError(
                422,
                "input_too_long",
                f"input #{i} is longer than the {max_input_tokens(model)} tokens {model.model_id} takes "
                "(send truncate=true to embed only its start)",
                index=i,
                limit=max_input_tokens(model),
            )
        _, matrix = st.models.embed(texts, model_name)
        return model, matrix, tokens

    model, matrix, tokens = await run(work)
    return json_response(
        {
            "model": model.model_id,
            "dimensions": int(matrix.shape[1]),
            "vectors": matrix.tolist(),
            "usage": {"tokens": sum(tokens)},
        }
    )

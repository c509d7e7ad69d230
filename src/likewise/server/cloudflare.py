"""Cloudflare Vectorize v2 and Workers AI (text embeddings) compatibility: translation only.

Served under both ``/client/v4/accounts/{account_id}/…`` and ``/accounts/{account_id}/…`` so that the
official ``cloudflare`` SDK works with either form of ``base_url`` (reference: vectorize-api.md). The
account id is accepted and ignored. This module turns Vectorize's wire format into calls on the
embedded ``Index`` and back, and applies the rules Vectorize has that the native API does not:

* the v4 envelope ``{"success", "errors", "messages", "result"}``, camelCase keys, and errors signalled
  by HTTP status (the SDK never reads ``success``), with Vectorize's numeric codes (:func:`render_error`);
* insert/upsert bodies as NDJSON whatever the Content-Type, as a JSON string literal (SDK ``body=str``)
  or as the multipart field ``vectors`` (wrangler); ``unparsable-behavior=discard``; duplicate ids in
  one batch keep the first (insert) or the last (upsert); at most 5,000 vectors per request;
* query: topK 1–100, or 1–50 with ``returnValues`` or ``returnMetadata: "all"`` (40025);
  ``returnMetadata`` must be ``none|indexed|all`` (a boolean is 40026, as in v2); filters follow
  Vectorize's syntax rules and may only name properties that have a metadata index;
* index create: ``dimensions`` ≤ 1536, presets that fix dimensions, metric and the index's model;
  at most 10 metadata indexes per index.

Known difference, documented rather than emulated: Vectorize leaves vectors written *before* a
metadata index was created out of that index; likewise indexes them all.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from ..errors import (
    DimensionMismatchError,
    IndexExistsError,
    IndexNotFoundError,
    InvalidFilterError,
    InvalidIdError,
    InvalidInputError,
    InvalidTopKError,
    LikewiseError,
    MetadataIndexNotFoundError,
    MissingDependencyError,
    ModelNotFoundError,
    TooLargeError,
    VectorNotFoundError,
)
from ..filters import parse_filter
from ..index import Index
from ..types import METRICS, IndexConfig
from .common import (
    NO_RETRY,
    QUERIES,
    as_float_array,
    authorize,
    json_response,
    open_index,
    plain_query,
    run,
    state,
    vectors_as_arrays,
)
from .errors import ApiError, native_error_body, parse_json, parse_strict_json
from .models import PRESETS

__all__ = ["CloudflareError", "is_cloudflare_path", "render_error", "router"]

router = APIRouter(tags=["cloudflare"])
V2 = "/accounts/{account_id}/vectorize/v2/indexes"

MAX_DIMENSIONS = 1536
MAX_BATCH = 5000
MAX_METADATA_INDEXES = 10
MAX_TOP_K = 100
MAX_TOP_K_WITH_DATA = 50
MAX_LIST_COUNT = 1000
DEFAULT_LIST_COUNT = 100
MAX_AI_TEXTS = 100

# Vectorize / Workers AI error codes. Observed in the wild: 3000, 3002, 40006, 40008, 40023, 40025,
# 40026, 40005, 5007, 5004, 3006. Ours where no source was found: 40000 (invalid request),
# 40007 (vector id not found), 10000 (auth, the v4 API's generic auth code), 7000/7001 (no route /
# method), 1000 (internal).
NOT_FOUND = 3000
DUPLICATE = 3002
INVALID_REQUEST = 40000
METADATA_INDEX_NOT_FOUND = 40005
DIMENSIONS = 40006
VECTOR_NOT_FOUND = 40007
ID_TOO_LONG = 40008
UPSERT_BODY = 40023
TOP_K = 40025
QUERY_BODY = 40026
AI_INVALID = 5004
AI_NO_MODEL = 5007
TOO_LARGE = 3006
AUTH = 10000
INTERNAL = 1000
_OP_DEFAULT = {"insert": UPSERT_BODY, "upsert": UPSERT_BODY, "query": QUERY_BODY, "ai": AI_INVALID}


class CloudflareError(ApiError):
    """An error raised by the translation layer itself, with its Cloudflare code."""

    def __init__(self, http_status: int, cf_code: int, message: str, **details: Any) -> None:
        super().__init__(http_status, "cloudflare_error", message, **details)
        self.cf_code = cf_code


def is_cloudflare_path(path: str) -> bool:
    return path.startswith("/client/v4/") or path.startswith("/accounts/")


def _op(request: Request, op: str) -> None:
    request.state.cf_op = op  # lets render_error pick Vectorize's code for "anything else wrong"


def ok(result: Any) -> Response:
    return json_response({"success": True, "errors": [], "messages": [], "result": result})


def _cf_status_code(request: Request, exc: LikewiseError) -> tuple[int, int, str]:
    op = getattr(request.state, "cf_op", "")
    message = exc.message
    if isinstance(exc, CloudflareError):
        return exc.http_status, exc.cf_code, message
    if isinstance(exc, ApiError):
        if exc.http_status in (401, 403):
            return exc.http_status, AUTH, message
        if exc.http_status == 404:
            return 404, 7000, "No route for that URI"
        if exc.http_status == 405:
            return 405, 7001, "Method not allowed for this route"
        if exc.http_status == 413:
            return 413, TOO_LARGE, message
        if exc.http_status < 500:
            return 400, _OP_DEFAULT.get(op, INVALID_REQUEST), message
        return exc.http_status, INTERNAL, message
    if isinstance(exc, IndexNotFoundError):
        return 404, NOT_FOUND, f'vectorize.index.not_found - Index name "{exc.details.get("name", "")}"'
    if isinstance(exc, IndexExistsError):
        return 400, DUPLICATE, f'vectorize.index.duplicate_name - Index name "{exc.details.get("name", "")}"'
    if isinstance(exc, MetadataIndexNotFoundError):
        return 404, METADATA_INDEX_NOT_FOUND, message
    if isinstance(exc, VectorNotFoundError):
        return 404, VECTOR_NOT_FOUND, message
    if isinstance(exc, ModelNotFoundError):
        return 400, AI_NO_MODEL, f"No such model {exc.details.get('model', '')} or task"
    if isinstance(exc, MissingDependencyError):
        return 501, INTERNAL, message
    if isinstance(exc, TooLargeError):
        return 413, TOO_LARGE, message
    if isinstance(exc, DimensionMismatchError):
        return 400, DIMENSIONS, message
    if isinstance(exc, InvalidIdError):
        return 400, ID_TOO_LONG if "too long" in message else _OP_DEFAULT.get(op, INVALID_REQUEST), message
    if isinstance(exc, InvalidTopKError):
        return 400, TOP_K, message
    if isinstance(exc, InvalidInputError):
        return 400, _OP_DEFAULT.get(op, INVALID_REQUEST), message
    return exc.http_status, INTERNAL, message


def render_error(request: Request, exc: LikewiseError) -> Response:
    """The v4 error envelope; the HTTP status carries the error (the SDK raises by status)."""
    status, code, message = _cf_status_code(request, exc)
    error: dict[str, Any] = {"code": code, "message": message}
    if exc.details:
        error["details"] = native_error_body(exc)["error"]["details"]
    body = {"success": False, "errors": [error], "messages": [], "result": None}
    headers = dict(NO_RETRY) if status >= 500 or status in (409, 429) else None
    return json_response(body, status=status, headers=headers)


# -- helpers ---------------------------------------------------------------------------------------------


async def _json_body(request: Request, code: int) -> dict[str, Any]:
    try:
        body = parse_json(await request.body())
    except ApiError as exc:
        raise CloudflareError(400, code, f"Failed to parse the request body as JSON: {exc.message}") from exc
    if not isinstance(body, dict):
        raise CloudflareError(400, code, "Failed to parse the request body as JSON: expected an object")
    return body


async def _index(request: Request, name: str) -> Index:
    return await open_index(request, name)


def _preset_of(cfg: IndexConfig) -> str | None:
    for preset in PRESETS.values():
        if cfg.model is not None and cfg.model == preset.model and cfg.dimensions == preset.dimensions:
            return preset.name
    return None


def _index_object(cfg: IndexConfig) -> dict[str, Any]:
    config: dict[str, Any] = {"dimensions": cfg.dimensions, "metric": cfg.metric}
    preset = _preset_of(cfg)
    if preset is not None:
        config["preset"] = preset
    return {
        "name": cfg.name,
        "description": cfg.description or "",
        "created_on": cfg.created_on,
        "modified_on": cfg.modified_on,
        "config": config,
    }


# -- indexes ---------------------------------------------------------------------------------------------


@router.post(V2, summary="Vectorize: create index")
async def create_index(account_id: str, request: Request) -> Response:
    st = state(request)
    principal = st.auth.authenticate(request.headers)
    body = await _json_body(request, INVALID_REQUEST)
    name: Any = body.get("name")  # passed on as sent: the core names what is wrong with it
    principal.require("admin", name if isinstance(name, str) else None)
    config = body.get("config")
    if not isinstance(config, dict):
        raise CloudflareError(400, INVALID_REQUEST, "config must be an object: {dimensions, metric} or {preset}")
    model: str | None = None
    dimensions: Any
    metric: Any
    if config.get("preset") is not None:
        preset = PRESETS.get(config["preset"])
        if preset is None:
            raise CloudflareError(
                400, INVALID_REQUEST, f"unknown preset {config['preset']!r}; expected one of {', '.join(PRESETS)}"
            )
        dimensions, metric, model = preset.dimensions, preset.metric, preset.model
    else:
        dimensions, metric = config.get("dimensions"), config.get("metric")
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_DIMENSIONS:
            raise CloudflareError(
                400, INVALID_REQUEST, f"config.dimensions must be an integer from 1 to {MAX_DIMENSIONS}; got {dimensions!r}"
            )
        if metric not in METRICS:
            raise CloudflareError(
                400, INVALID_REQUEST, f"config.metric must be one of {', '.join(METRICS)}; got {metric!r}"
            )
    description = body.get("description")

    def create() -> Index:
        if model is not None:
            # A preset binds its model when the model is on this machine; otherwise (offline, or a
            # hosted-only model) the index gets the preset's dimensions and metric without one.
            try:
                return st.db.create_index(name, dimensions, metric, description, model=model)
            except (ModelNotFoundError, MissingDependencyError):
                pass
        return st.db.create_index(name, dimensions, metric, description)

    idx = await run(create)
    return ok(_index_object(idx.config))


@router.get(V2, summary="Vectorize: list indexes")
async def list_indexes(account_id: str, request: Request) -> Response:
    principal = authorize(request, "read")
    configs = await run(state(request).db.list_indexes)
    return ok([_index_object(c) for c in configs if principal.can_see(c.name)])


@router.get(V2 + "/{index_name}", summary="Vectorize: get index")
async def get_index(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "read", index_name)
    idx = await _index(request, index_name)
    return ok(_index_object(idx.config))


@router.delete(V2 + "/{index_name}", summary="Vectorize: delete index")
async def delete_index(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "admin", index_name)
    await run(state(request).db.delete_index, index_name)
    return ok(None)


@router.get(V2 + "/{index_name}/info", summary="Vectorize: index info")
async def info(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "read", index_name)
    idx = await _index(request, index_name)
    i = await run(idx.info)
    return ok(
        {
            "dimensions": i.dimensions,
            "vectorCount": i.vector_count,
            "processedUpToDatetime": i.processed_up_to_datetime,
            "processedUpToMutation": i.processed_up_to_mutation,
        }
    )


# -- insert / upsert -------------------------------------------------------------------------------------


async def _ndjson_bytes(request: Request) -> bytes:
    """The NDJSON payload, whichever of the three forms the client used (reference §1, §5.4)."""
    ctype = (request.headers.get("content-type") or "").lower()
    if ctype.startswith("multipart/form-data"):
        limit = state(request).max_body_bytes
        form = await request.form(max_part_size=limit)
        try:
            field = form.get("vectors")
            if field is None:
                raise CloudflareError(400, UPSERT_BODY, "multipart body has no field named 'vectors'")
            data = await field.read() if isinstance(field, UploadFile) else field.encode("utf-8")
        finally:
            await form.close()
    else:
        data = await request.body()
    if data.lstrip()[:1] == b'"':  # SDK body=str arrives as a JSON string literal of the NDJSON
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = None
        if isinstance(decoded, str):
            data = decoded.encode("utf-8")
    return data


def _parse_lines(data: bytes, discard: bool) -> tuple[list[dict[str, Any]], int]:
    vectors: list[dict[str, Any]] = []
    discarded = 0
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            item = parse_strict_json(line)
            if not isinstance(item, dict):
                raise ValueError("a line must be one JSON object")
            if not isinstance(item.get("id"), str) or not isinstance(item.get("values"), list):
                raise ValueError('a vector needs a string "id" and an array "values"')
        except (ValueError, UnicodeDecodeError) as exc:
            if discard:
                discarded += 1
                continue
            raise CloudflareError(
                400, UPSERT_BODY, f"failed to parse upsert vectors request in json format: line {number}: {exc}", line=number
            ) from exc
        vectors.append(item)
    return vectors, discarded


async def _write(request: Request, index_name: str, op: str) -> Response:
    _op(request, op)
    authorize(request, "write", index_name)
    behaviour = request.query_params.get("unparsable-behavior", "error")
    if behaviour not in ("error", "discard"):
        raise CloudflareError(400, UPSERT_BODY, f"unparsable-behavior must be 'error' or 'discard'; got {behaviour!r}")
    vectors, discarded = _parse_lines(await _ndjson_bytes(request), behaviour == "discard")
    if not vectors and not discarded:
        raise CloudflareError(400, UPSERT_BODY, "failed to parse upsert vectors request in json format: no vectors")
    if len(vectors) > MAX_BATCH:
        raise CloudflareError(413, TOO_LARGE, f"{len(vectors)} vectors in one request; the limit is {MAX_BATCH}")
    # Vectorize semantics for a repeated id within one batch: insert keeps the first, upsert the last.
    unique: dict[str, dict[str, Any]] = {}
    for v in vectors:
        if op == "insert":
            unique.setdefault(v["id"], v)
        else:
            unique[v["id"]] = v
    idx = await _index(request, index_name)
    write = idx.insert if op == "insert" else idx.upsert
    mutation = await run(write, vectors_as_arrays(list(unique.values())))
    return ok({"mutationId": mutation})


@router.post(V2 + "/{index_name}/insert", summary="Vectorize: insert vectors (NDJSON)")
async def insert(account_id: str, index_name: str, request: Request) -> Response:
    return await _write(request, index_name, "insert")


@router.post(V2 + "/{index_name}/upsert", summary="Vectorize: upsert vectors (NDJSON)")
async def upsert(account_id: str, index_name: str, request: Request) -> Response:
    return await _write(request, index_name, "upsert")


# -- query -----------------------------------------------------------------------------------------------


def _query_args(body: dict[str, Any]) -> tuple[int, bool, str]:
    top_k = body.get("topK", 5)
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)  # the SDK types topK as float
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise CloudflareError(400, QUERY_BODY, "Failed to parse the request body as JSON: topK: expected integer")
    return_values = body.get("returnValues", False)
    if not isinstance(return_values, bool):
        raise CloudflareError(400, QUERY_BODY, "Failed to parse the request body as JSON: returnValues: expected boolean")
    return_metadata = body.get("returnMetadata", "none")
    if return_metadata not in ("none", "indexed", "all"):  # v2 rejects v1's boolean too
        raise CloudflareError(400, QUERY_BODY, "Failed to parse the request body as JSON: returnMetadata: expected value")
    if return_values or return_metadata == "all":
        if top_k > MAX_TOP_K_WITH_DATA:
            raise CloudflareError(
                400,
                TOP_K,
                f"with returnValues=true or returnMetadata=all, max top K is {MAX_TOP_K_WITH_DATA}, but got {top_k}; "
                f"for a top K up to {MAX_TOP_K}, retry with returnValues=false and returnMetadata=indexed",
            )
    elif top_k > MAX_TOP_K:
        raise CloudflareError(400, TOP_K, f"max top K is {MAX_TOP_K}, but got {top_k}")
    if top_k < 1:
        raise CloudflareError(400, TOP_K, f"top K must be at least 1, but got {top_k}")
    return top_k, return_values, return_metadata


def _check_filter(idx: Index, raw: Any) -> Any:
    """Vectorize's syntax rules, and its rule that only properties with a metadata index filter."""
    if raw is None:
        return None
    parsed = parse_filter(raw, vectorize_rules=True)
    if parsed is None:
        return None
    indexed = {m.property_name for m in idx.list_metadata_indexes()}
    for key in parsed.keys:
        if key not in indexed:
            raise InvalidFilterError(
                f"cannot filter on {key!r}: it has no metadata index. Vectorize only filters on indexed "
                f"properties; create one with metadata_index.create(property_name={key!r}, index_type=...)",
                key=key,
            )
    return raw


@router.post(V2 + "/{index_name}/query", summary="Vectorize: query")
async def query(account_id: str, index_name: str, request: Request) -> Response:
    with QUERIES.counted():
        return await _query(account_id, index_name, request)


async def _query(account_id: str, index_name: str, request: Request) -> Response:
    _op(request, "query")
    authorize(request, "read", index_name)
    body = await _json_body(request, QUERY_BODY)
    top_k, return_values, return_metadata = _query_args(body)
    vector: Any = body.get("vector")  # Any: handed to the core, which validates it
    vector_id: Any = body.get("vectorId")
    if (vector is None) == (vector_id is None):
        raise CloudflareError(400, QUERY_BODY, "give either vector or vectorId, but not both")
    if vector is not None and not isinstance(vector, list):
        raise CloudflareError(400, QUERY_BODY, "Failed to parse the request body as JSON: vector: expected an array")
    idx = await _index(request, index_name)

    def work() -> Any:
        flt = _check_filter(idx, body.get("filter"))
        kwargs: dict[str, Any] = dict(
            top_k=top_k, filter=flt, namespace=body.get("namespace"),
            return_values=return_values, return_metadata=return_metadata,
        )
        if vector_id is not None:
            return idx.query_by_id(vector_id, **kwargs)
        return idx.query(as_float_array(vector), **kwargs)

    plain = vector is not None and plain_query(body.get("filter"), body.get("namespace"), return_values, return_metadata)
    result = await QUERIES.answer(work, plain)
    return ok(result.to_dict())


# -- by id -----------------------------------------------------------------------------------------------


async def _ids(request: Request) -> list[Any]:
    body = await _json_body(request, INVALID_REQUEST)
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise CloudflareError(400, INVALID_REQUEST, "ids must be an array of vector ids")
    return ids


@router.post(V2 + "/{index_name}/get_by_ids", summary="Vectorize: get vectors by id")
async def get_by_ids(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "read", index_name)
    ids = await _ids(request)
    idx = await _index(request, index_name)
    found = await run(idx.get_by_ids, ids)
    return ok([v.to_dict() for v in found])


@router.post(V2 + "/{index_name}/delete_by_ids", summary="Vectorize: delete vectors by id")
async def delete_by_ids(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "write", index_name)
    ids = await _ids(request)
    if len(ids) > MAX_BATCH:
        raise CloudflareError(413, TOO_LARGE, f"{len(ids)} ids in one request; the limit is {MAX_BATCH}")
    idx = await _index(request, index_name)
    return ok({"mutationId": await run(idx.delete_by_ids, ids)})


@router.get(V2 + "/{index_name}/list", summary="Vectorize: list vector ids")
async def list_vectors(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "read", index_name)
    raw = request.query_params.get("count")
    count = DEFAULT_LIST_COUNT
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_COUNT:
            raise CloudflareError(400, INVALID_REQUEST, f"count must be an integer from 1 to {MAX_LIST_COUNT}; got {raw!r}")
        count = int(raw)
    cursor = request.query_params.get("cursor") or None
    idx = await _index(request, index_name)
    page = await run(lambda: idx.list_vectors(count=count, cursor=cursor))
    return ok(
        {
            "count": page.count,
            "totalCount": page.total_count,
            "isTruncated": page.is_truncated,
            "nextCursor": page.next_cursor,
            "cursorExpirationTimestamp": page.cursor_expiration_timestamp,
            "vectors": [{"id": i} for i in page.vectors],
        }
    )


# -- metadata indexes ------------------------------------------------------------------------------------


@router.post(V2 + "/{index_name}/metadata_index/create", summary="Vectorize: create metadata index")
async def create_metadata_index(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "write", index_name)
    body = await _json_body(request, INVALID_REQUEST)
    prop: Any = body.get("propertyName")
    kind: Any = body.get("indexType")
    idx = await _index(request, index_name)

    def work() -> str:
        existing = {m.property_name for m in idx.list_metadata_indexes()}
        if prop not in existing and len(existing) >= MAX_METADATA_INDEXES:
            raise CloudflareError(
                400, INVALID_REQUEST, f"an index may have at most {MAX_METADATA_INDEXES} metadata indexes"
            )
        return idx.create_metadata_index(prop, kind)

    return ok({"mutationId": await run(work)})


@router.get(V2 + "/{index_name}/metadata_index/list", summary="Vectorize: list metadata indexes")
async def list_metadata_indexes(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "read", index_name)
    idx = await _index(request, index_name)
    found = await run(idx.list_metadata_indexes)
    return ok({"metadataIndexes": [{"propertyName": m.property_name, "indexType": m.index_type} for m in found]})


@router.post(V2 + "/{index_name}/metadata_index/delete", summary="Vectorize: delete metadata index")
async def delete_metadata_index(account_id: str, index_name: str, request: Request) -> Response:
    authorize(request, "write", index_name)
    body = await _json_body(request, INVALID_REQUEST)
    prop = body.get("propertyName")
    if not isinstance(prop, str):
        raise CloudflareError(400, INVALID_REQUEST, "propertyName must be a string")
    idx = await _index(request, index_name)
    return ok({"mutationId": await run(idx.delete_metadata_index, prop)})


# -- Workers AI ------------------------------------------------------------------------------------------


@router.post("/accounts/{account_id}/ai/run/{model:path}", summary="Workers AI: run a text-embedding model")
async def ai_run(account_id: str, model: str, request: Request) -> Response:
    """``model`` may arrive percent-encoded (SDK 5.x: ``@cf%2Fbaai%2F…``) or with raw slashes (4.x);
    Starlette decodes the path before routing, so ``{model:path}`` sees the same id either way."""
    _op(request, "ai")
    authorize(request, "read")
    body = await _json_body(request, AI_INVALID)
    text = body.get("text")
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise CloudflareError(400, AI_INVALID, "Invalid data: 'text' must be a non-empty string or an array of them")
    if len(texts) > MAX_AI_TEXTS:
        raise CloudflareError(400, AI_INVALID, f"Invalid data: at most {MAX_AI_TEXTS} texts per request, got {len(texts)}")
    pooling = body.get("pooling", "mean")
    if pooling not in ("mean", "cls"):
        raise CloudflareError(400, AI_INVALID, f"Invalid data: pooling must be 'mean' or 'cls'; got {pooling!r}")
    models = state(request).models

    def work() -> np.ndarray:
        # Workers AI truncates over-long inputs rather than failing; TextEmbedder does the same.
        try:
            return models.embed(texts, model, None if pooling == "mean" else pooling)[1]
        except TypeError as exc:  # an embedder factory without a pooling option
            raise CloudflareError(
                400, AI_INVALID, f"pooling {pooling!r} is not available for {model} on this server; use 'mean'"
            ) from exc

    matrix = await run(work)
    return ok({"shape": [int(matrix.shape[0]), int(matrix.shape[1])], "data": matrix.tolist(), "pooling": pooling})

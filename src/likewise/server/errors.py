"""Errors of the HTTP layer and the strict JSON reader every front door shares.

This module owns three things, and imports nothing from FastAPI so that :mod:`likewise.client` can use
it without the server extra:

* :class:`ApiError`, a :class:`~likewise.errors.LikewiseError` whose status and wire code are set per
  instance, for the failures that only exist over HTTP (bad JSON, wrong media type, authentication,
  unknown routes). The core error tree has no classes for these; the client rebuilds them as
  ``ApiError`` too, so ``except LikewiseError`` catches everything on both sides.
* :func:`parse_json`: ``json.loads`` made strict enough for the bad-input table
  (reliability.md §6). Truncated or non-UTF-8 bodies are a 400 ``invalid_json``. ``NaN``/``Infinity``
  literals and overflowing numbers such as ``1e999`` parse to non-finite floats *on purpose*: the core
  validators then reject them where they appear, naming the vector and the component (422
  ``non_finite_value``), instead of a vague parse error.
* :func:`native_error_body`: the ``{"error": {"code", "message", "details"}}`` body.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import LikewiseError

__all__ = [
    "ApiError",
    "forbidden",
    "invalid_json",
    "is_json_media_type",
    "native_error_body",
    "parse_json",
    "parse_strict_json",
    "unauthenticated",
    "unsupported_media_type",
]


class ApiError(LikewiseError):
    """An error that exists only at the HTTP layer; ``http_status`` and ``code`` are per instance."""

    def __init__(self, http_status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.http_status = http_status
        self.code = code

    def __reduce__(self) -> Any:  # keep pickling (e.g. across processes) working
        return (_rebuild_api_error, (self.http_status, self.code, self.message, self.details))


def _rebuild_api_error(status: int, code: str, message: str, details: dict[str, Any]) -> ApiError:
    return ApiError(status, code, message, **details)


def invalid_json(message: str, **details: Any) -> ApiError:
    return ApiError(400, "invalid_json", message, **details)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "unsupported_media_type",
        f"Content-Type {content_type!r} is not accepted here; send application/json",
        content_type=content_type,
    )


def unauthenticated(message: str = "missing or invalid bearer token") -> ApiError:
    return ApiError(401, "unauthenticated", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or any ``+json`` type; a missing header counts as JSON (curl-friendly)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def parse_json(data: bytes | str, *, what: str = "request body") -> Any:
    """Decode JSON; a body that is empty, truncated or not UTF-8 raises 400 ``invalid_json``.

    Non-finite numbers are left as ``nan``/``inf`` floats for the validators to reject with a precise
    message (see the module docstring).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise invalid_json(f"{what} is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
    else:
        text = data
    if not text.strip():
        raise invalid_json(f"{what} is empty; expected JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid_json(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno,
            column=exc.colno,
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. 5000-digit integers, absurd nesting
        raise invalid_json(f"{what} is not acceptable JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value


def parse_strict_json(text: str | bytes) -> Any:
    """Standard JSON only: ``NaN``/``Infinity`` and overflowing numbers raise ``ValueError``.

    Used for NDJSON lines, where Vectorize's rule is that a line either parses or is "unparsable".
    """
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def native_error_body(exc: LikewiseError) -> dict[str, Any]:
    """The native JSON error body; details are made JSON-safe (they may hold reprs of bad input)."""
    return {"error": {"code": exc.code, "message": exc.message, "details": _json_safe(exc.details)}}


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)

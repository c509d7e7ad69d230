"""The one error tree of likewise.

Every error raised on purpose by likewise is a :class:`LikewiseError`. Each class knows the HTTP
status and the stable wire ``code`` the service answers with, so the HTTP layer never has to guess::

    LikewiseError                      500 internal_error
    ├── InvalidInputError              422 invalid_input
    │   ├── DimensionMismatchError     422 dimension_mismatch
    │   ├── NonFiniteValueError        422 non_finite_value
    │   ├── InvalidVectorTypeError     422 invalid_vector_type
    │   ├── ZeroVectorError            422 zero_vector
    │   ├── InvalidIdError             422 invalid_id
    │   ├── DuplicateIdError           422 duplicate_id
    │   ├── InvalidMetadataError       422 invalid_metadata
    │   ├── InvalidNamespaceError      422 invalid_namespace
    │   ├── InvalidFilterError         422 invalid_filter
    │   ├── InvalidTopKError           422 invalid_top_k
    │   ├── InvalidIndexNameError      422 invalid_index_name
    │   ├── InvalidArgumentError       422 invalid_argument
    │   ├── InvalidCursorError         422 invalid_cursor
    │   └── TooLargeError              413 payload_too_large
    │       ├── RecordTooLargeError    413 record_too_large
    │       └── BatchTooLargeError     413 batch_too_large
    ├── NotFoundError                  404 not_found
    │   ├── IndexNotFoundError         404 index_not_found
    │   ├── VectorNotFoundError        404 vector_not_found
    │   ├── MetadataIndexNotFoundError 404 metadata_index_not_found
    │   └── ModelNotFoundError         404 model_not_found
    ├── ConflictError                  409 conflict
    │   └── IndexExistsError           409 index_exists
    ├── MissingDependencyError         501 missing_dependency
    └── StorageError                   500 storage_error
        ├── DataDirLockedError         503 storage_locked
        ├── StorageFullError           507 insufficient_storage
        └── CorruptionError            500 corrupt_data

Messages name the limit or the expected value, so that a user can fix the input without reading
the source.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LikewiseError",
    "InvalidInputError",
    "DimensionMismatchError",
    "NonFiniteValueError",
    "InvalidVectorTypeError",
    "ZeroVectorError",
    "InvalidIdError",
    "DuplicateIdError",
    "InvalidMetadataError",
    "InvalidNamespaceError",
    "InvalidFilterError",
    "InvalidTopKError",
    "InvalidIndexNameError",
    "InvalidArgumentError",
    "InvalidCursorError",
    "TooLargeError",
    "RecordTooLargeError",
    "BatchTooLargeError",
    "NotFoundError",
    "IndexNotFoundError",
    "VectorNotFoundError",
    "MetadataIndexNotFoundError",
    "ModelNotFoundError",
    "ConflictError",
    "IndexExistsError",
    "MissingDependencyError",
    "StorageError",
    "DataDirLockedError",
    "StorageFullError",
    "CorruptionError",
]


class LikewiseError(Exception):
    """Base of every error likewise raises on purpose.

    ``details`` carries machine-readable facts (expected and received values, offending ids) that
    the HTTP service returns in ``{"error": {"code", "message", "details"}}``.
    """

    http_status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body the service sends for this error."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInputError(LikewiseError):
    """The caller sent something likewise cannot accept; nothing was written."""

    http_status = 422
    code = "invalid_input"


class DimensionMismatchError(InvalidInputError):
    code = "dimension_mismatch"


class NonFiniteValueError(InvalidInputError):
    code = "non_finite_value"


class InvalidVectorTypeError(InvalidInputError):
    code = "invalid_vector_type"


class ZeroVectorError(InvalidInputError):
    code = "zero_vector"


class InvalidIdError(InvalidInputError):
    code = "invalid_id"


class DuplicateIdError(InvalidInputError):
    code = "duplicate_id"


class InvalidMetadataError(InvalidInputError):
    code = "invalid_metadata"


class InvalidNamespaceError(InvalidInputError):
    code = "invalid_namespace"


class InvalidFilterError(InvalidInputError):
    code = "invalid_filter"


class InvalidTopKError(InvalidInputError):
    code = "invalid_top_k"


class InvalidIndexNameError(InvalidInputError):
    code = "invalid_index_name"


class InvalidArgumentError(InvalidInputError):
    code = "invalid_argument"


class InvalidCursorError(InvalidInputError):
    code = "invalid_cursor"


class TooLargeError(InvalidInputError):
    http_status = 413
    code = "payload_too_large"


class RecordTooLargeError(TooLargeError):
    code = "record_too_large"


class BatchTooLargeError(TooLargeError):
    code = "batch_too_large"


class NotFoundError(LikewiseError):
    http_status = 404
    code = "not_found"


class IndexNotFoundError(NotFoundError):
    code = "index_not_found"


class VectorNotFoundError(NotFoundError):
    code = "vector_not_found"


class MetadataIndexNotFoundError(NotFoundError):
    code = "metadata_index_not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class ConflictError(LikewiseError):
    http_status = 409
    code = "conflict"


class IndexExistsError(ConflictError):
    code = "index_exists"


class MissingDependencyError(LikewiseError):
    """An optional extra is needed for this feature; the message names it."""

    http_status = 501
    code = "missing_dependency"


class StorageError(LikewiseError):
    code = "storage_error"


class DataDirLockedError(StorageError):
    http_status = 503
    code = "storage_locked"


class StorageFullError(StorageError):
    http_status = 507
    code = "insufficient_storage"


class CorruptionError(StorageError):
    code = "corrupt_data"

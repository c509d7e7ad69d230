"""Bearer-token authentication and role/scope authorisation for every route.

A :class:`Token` has a secret value, a role (``read`` < ``write`` < ``admin``) and optionally the set
of indexes it may touch. :class:`Authenticator` turns request headers into a :class:`Principal`:

* no tokens configured: everyone is an unscoped admin, whatever token (if any) they send. The CLI
  only allows that on a loopback address, and accepting any token lets SDKs that insist on sending
  one (Cloudflare's, OpenAI's) work unchanged.
* tokens configured: a missing or unknown token is 401; a known token without the role, or scoped to
  other indexes, is 403. A scoped token gets 403 for an index outside its scope whether or not that
  index exists, so that scope never leaks existence.

Secrets are compared with :func:`hmac.compare_digest` against every configured token (no early exit),
and never appear in a message, a log line or a ``repr``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import ApiError, forbidden, unauthenticated

__all__ = ["ROLES", "Authenticator", "Principal", "Role", "Token", "parse_token_spec", "tokens_from_env"]

Role = Literal["read", "write", "admin"]
ROLES: tuple[str, ...] = ("read", "write", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Token:
    """A bearer token: its secret ``value``, its ``role`` and, if scoped, the ``indexes`` it may use."""

    value: str = field(repr=False)
    role: Role = "admin"
    indexes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not self.value:
            raise ValueError("a token must not be empty")
        if self.role not in _RANK:
            raise ValueError(f"token role must be one of {', '.join(ROLES)}; got {self.role!r}")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role and index scope of the token that authenticated the request."""

    role: Role
    indexes: frozenset[str] | None = None

    def can_see(self, index: str) -> bool:
        return self.indexes is None or index in self.indexes

    def require(self, role: Role, index: str | None = None) -> None:
        """Raise 403 unless this principal has ``role`` (or better) and ``index`` in scope."""
        if _RANK[self.role] < _RANK[role]:
            raise forbidden(f"this token has the {self.role!r} role; this operation needs {role!r}")
        if index is not None and not self.can_see(index):
            raise forbidden(f"this token is not allowed to use index {index!r}")
        if index is None and self.indexes is not None and role == "admin":
            raise forbidden("this token is scoped to some indexes; this operation needs an unscoped token")


ANONYMOUS_ADMIN = Principal("admin", None)


def parse_token_spec(spec: str) -> Token:
    """``TOKEN[:role[:index1,index2]]`` → :class:`Token` (role defaults to ``admin``)."""
    value, _, rest = spec.partition(":")
    role, _, scope = rest.partition(":")
    indexes = frozenset(s.strip() for s in scope.split(",") if s.strip()) if scope else None
    return Token(value=value, role=(role or "admin"), indexes=indexes)  # type: ignore[arg-type]


def tokens_from_env(environ: Mapping[str, str] | None = None) -> list[Token]:
    """Tokens from ``LIKEWISE_TOKENS``: specs separated by whitespace or ``;``."""
    raw = (environ if environ is not None else os.environ).get("LIKEWISE_TOKENS", "")
    return [parse_token_spec(s) for s in raw.replace(";", " ").split() if s]


class Authenticator:
    """Maps request headers to a :class:`Principal`, or raises 401."""

    def __init__(self, tokens: Iterable[Token] | None = None) -> None:
        self.tokens: tuple[Token, ...] = tuple(tokens or ())
        self._secrets = [(t.value.encode("utf-8"), t) for t in self.tokens]

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    @staticmethod
    def presented(headers: Mapping[str, str]) -> str | None:
        """The token the caller sent: ``Authorization: Bearer …`` (also Cloudflare's ``X-Auth-Key``)."""
        auth = headers.get("authorization")
        if auth:
            scheme, _, credentials = auth.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
        key = headers.get("x-auth-key")
        return key.strip() if key else None

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        if not self.tokens:
            return ANONYMOUS_ADMIN
        offered = self.presented(headers)
        if offered is None:
            raise unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
        candidate = offered.encode("utf-8", "surrogateescape")
        found: Token | None = None
        for secret, token in self._secrets:  # compare against all: timing says nothing about which
            if hmac.compare_digest(candidate, secret):
                found = token
        if found is None:
            raise unauthenticated("invalid bearer token")
        return Principal(found.role, found.indexes)


def is_auth_error(exc: Exception) -> bool:
    return isinstance(exc, ApiError) and exc.http_status in (401, 403)

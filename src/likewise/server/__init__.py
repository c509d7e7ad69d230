"""likewise's HTTP service: the native API, Cloudflare Vectorize/Workers AI and OpenAI compatibility.

``create_app`` is imported lazily so that ``likewise.server.errors`` (used by :mod:`likewise.client`)
does not need FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        try:
            from .app import create_app
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            from ..errors import MissingDependencyError

            raise MissingDependencyError(
                f"the HTTP server needs {exc.name!r}; install it with: pip install 'likewise[server]'",
                extra="server",
            ) from exc
        return create_app
    raise AttributeError(name)

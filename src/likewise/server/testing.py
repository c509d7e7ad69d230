"""Helpers for testing against the service: a real server in a thread, and a fake embedder.

``uvicorn.Server`` in a thread starts in milliseconds and speaks real HTTP, which is what the SDK
tests and the client conformance backend need: nothing is mocked between client and server.
:class:`FakeEmbedder` stands in for text models where the weights do not matter (``create_app(...,
embedder_factory=FakeEmbedder)``): deterministic unit vectors from a hash of the text.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import ModelNotFoundError

__all__ = ["FAKE_DIMENSIONS", "FakeEmbedder", "ThreadedServer"]

FAKE_DIMENSIONS = {
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "BAAI/bge-small-en-v1.5": 384,
    "BAAI/bge-base-en-v1.5": 768,
    "BAAI/bge-large-en-v1.5": 1024,
}


class FakeEmbedder:
    """Deterministic unit vectors from a SHA-256 of (pooling, text); the known models' widths.

    Counts one token per whitespace-separated word plus two, and takes at most 512, so that the
    token accounting and input-length rules can be tested without a tokenizer.
    """

    max_length = 512

    def __init__(self, model_id: str, pooling: str | None = None) -> None:
        if model_id not in FAKE_DIMENSIONS:
            raise ModelNotFoundError(f"Model {model_id!r} is not on this machine", model=model_id)
        self.model_id = model_id
        self.dimensions = FAKE_DIMENSIONS[model_id]
        self.pooling = pooling or "mean"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(f"{self.pooling}:{text}".encode()).digest()[:8], "little")
            row = np.random.default_rng(seed).standard_normal(self.dimensions)
            out[i] = row / np.linalg.norm(row)
        return out


class ThreadedServer:
    """``with ThreadedServer(app) as srv: srv.url`` — uvicorn on 127.0.0.1, a free port, one thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        import uvicorn

        # uvicorn binds the port itself (port 0: any free one). Handing it a pre-bound socket instead
        # costs ~40 ms a request here (Nagle meets delayed ACK), so the port is read back after start.
        self.host, self.port = host, port
        config.setdefault("log_level", "warning")
        config.setdefault("access_log", False)
        config.setdefault("lifespan", "on")
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **config))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the likewise test server did not start")
            time.sleep(0.005)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Graceful stop: stop accepting, finish in-flight requests, run the lifespan shutdown."""
        if self._thread is not None:
            self.server.should_exit = True
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

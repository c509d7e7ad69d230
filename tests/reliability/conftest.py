"""Shared parts of the reliability battery (issue #7): scale knobs, a real server process, oracles.

Every test here uses real parts: a real ``likewise serve`` process that is SIGKILLed, a real SQLite
file, a real tmpfs that fills up. Counts default to the CI mode (a few minutes on 2 cores);
``LIKEWISE_SOAK=1`` switches every test to the long mode of issue #7 (500 kills, a full minute of
concurrency, more damaged files, more fuzz cases). ``benchmarks/soak.py`` runs the long mode.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

SOAK = os.environ.get("LIKEWISE_SOAK", "") not in ("", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the battery, so that ``-m "not reliability"`` gives a quick run without it."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


def scaled(ci: int, soak: int) -> int:
    """``ci`` in the CI mode, ``soak`` when ``LIKEWISE_SOAK`` is set."""
    return soak if SOAK else ci


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The server runs with the kernel-thread defaults already set, so `likewise serve` does not re-exec
# itself (one Python start instead of two: restarts are the cost of a crash storm).
SERVER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "LIKEWISE_SERVE_TUNED": "1",
}


class ServerProcess:
    """``likewise serve --data DIR`` in its own process on a free loopback port."""

    def __init__(self, data: Path, *args: str, log: Path | None = None) -> None:
        self.data = data
        self.args = args
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.port = free_port()
        cmd = [sys.executable, "-c", "from likewise.cli import main; main()", "serve", "--data", str(self.data),
               "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        began = time.monotonic()
        with open(self.log or os.devnull, "ab") as out:  # the child keeps its own copy of the handle
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ, **SERVER_ENV})
        deadline = began + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"likewise serve exited with {self.proc.returncode} before it was ready")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("likewise serve did not become ready")
            time.sleep(0.02)
        self.started_in = time.monotonic() - began
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no snapshot, no checkpoint runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        """Graceful stop (SIGTERM): uvicorn drains, the lifespan closes the database."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(data_dir, *extra_args, log=path)`` → a started :class:`ServerProcess`; all killed at the end."""
    started: list[ServerProcess] = []

    def make(data: Path | None = None, *args: str, log: Path | None = None) -> ServerProcess:
        server = ServerProcess(data or tmp_path / "data", *args, log=log)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.kill()

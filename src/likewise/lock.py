"""The data-directory lock: one writer process per directory, and a clear error naming the holder."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import DataDirLockedError

__all__ = ["DirectoryLock"]


class DirectoryLock:
    """An exclusive ``flock`` on ``<dir>/LOCK`` holding the owner's PID; released on close or exit.

    ``flock`` locks belong to the open file, so the kernel drops the lock when the process dies,
    even by SIGKILL: a crash never leaves a stale lock behind.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "LOCK"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLockedError(
                f"{directory} is locked by process {holder}; only one process may open a data "
                "directory for writing at a time (use the HTTP service to share it)",
                path=str(directory),
                pid=holder,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

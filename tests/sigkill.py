"""Shared by the crash tests: read a writer process's acknowledgements until it is SIGKILLed."""

from __future__ import annotations

import signal
import subprocess
import threading
import time


def lines_until_killed(proc: subprocess.Popen[str], delay: float) -> list[list[str]]:
    """Collect ``proc``'s whole stdout lines (split into words) while it runs, SIGKILL it after
    ``delay`` seconds, and return them. A torn last line was never acknowledged, so it is dropped."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: list[list[str]] = []

    def reader() -> None:
        for line in stdout:
            if line.endswith("\n"):
                lines.append(line.split())

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    thread.join()
    return lines

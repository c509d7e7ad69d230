"""``likewise serve``: the loopback rule, token parsing, and a real process that shuts down gracefully."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import likewise
from likewise.cli import main
from likewise.server.cli import is_loopback


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.9.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.10")


def test_refuses_public_address_without_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(kw))
    monkeypatch.delenv("LIKEWISE_TOKENS", raising=False)
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "d"), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without a token" in result.output and not ran
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "d"), "--host", "0.0.0.0", "--token", "t0k:read"])
    assert result.exit_code == 0, result.output
    assert ran and ran[0]["host"] == "0.0.0.0" and ran[0]["port"] == 8787 and "t0k" not in result.output
    monkeypatch.setenv("LIKEWISE_TOKENS", "envtok:admin")
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "e"), "--host", "0.0.0.0", "--port", "9999"])
    assert result.exit_code == 0 and ran[-1]["port"] == 9999
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path / "f"), "--token", "x:root"])
    assert result.exit_code == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_graceful_shutdown_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data, port, token = tmp_path / "data", _free_port(), "graceful-secret"
    cmd = [sys.executable, "-c", "from likewise.cli import main; main()", "serve", "--data", str(data),
           "--port", str(port), "--token", token]
    log = open(tmp_path / "server.log", "w+")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        environ = Path(f"/proc/{proc.pid}/environ")
        if environ.exists():  # serve re-executed itself with one kernel thread per request
            assert b"OMP_WAIT_POLICY=PASSIVE" in environ.read_bytes().split(b"\0")
        client = likewise.Client(url, token=token, timeout=10)
        idx = client.create_index("g", dimensions=4)
        acked: list[str] = []
        stop = threading.Event()

        def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                vid = f"w{w}-{i}"
                try:
                    idx.upsert([likewise.Vector(vid, [1, w, i, 1])])
                except Exception:  # noqa: BLE001 - the server is going away; unacknowledged
                    return
                acked.append(vid)
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        # uvicorn drains in-flight requests, runs the lifespan shutdown, then re-raises the signal.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        stop.set()
        for t in threads:
            t.join()
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    log.close()
    stderr = (tmp_path / "server.log").read_text()
    assert len(acked) > 10
    with likewise.open(data) as db:  # the lock was released: the directory opens at once
        found = {v.id for v in db.index("g").get_by_ids(acked)}
    assert found == set(acked)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines and {"request_id", "method", "path", "status", "ms"} <= set(lines[0])
    assert f"closed {data}" in stderr  # the lifespan closed the database (snapshots, lock)
    assert "OMP_NUM_THREADS" not in stderr  # (re-exec'd quietly with one kernel thread per request)
    assert token not in stderr

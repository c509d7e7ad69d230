"""Runs the Ray tier from a plain ``pytest``: inside a loopback-only network namespace, bounded in time.

Ray binds the host's own address whatever it is told (/work/shared/reference/ray-notes.md), so the
``ray``-marked tests refuse to run outside a namespace that has only ``lo``. This test (not marked
``ray``) creates one with ``unshare -n`` (``unshare -rn`` when not root) and runs
``pytest tests/scale -m ray`` in it as a subprocess; it is skipped, saying why, where Ray or
``unshare`` is unavailable.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _ray_missing() -> bool:
    """True unless the real Ray is importable (a bare directory named ``ray`` on sys.path is not Ray)."""
    spec = importlib.util.find_spec("ray")
    return spec is None or spec.origin is None

ROOT = Path(__file__).resolve().parents[2]
TIER_TIMEOUT_S = 300  # the tier takes about 2-3 minutes on 2 busy cores; fail rather than hang


def _namespace_prefix() -> list[str]:
    # The test command installs Ray and .ci/run the tools: a missing one is a failure, not a skip.
    assert not _ray_missing(), "Ray is not installed: pip install -e '.[ray]' (the test command does)"
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    assert not missing, f"{' and '.join(missing)} needed for the Ray tier's loopback-only namespace (.ci/run installs them)"
    prefix = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    probe = subprocess.run(
        [*prefix, "sh", "-c", "ip link set lo up"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here ({probe.stderr.strip()[:200]})")
    return prefix


def test_ray_tier_in_a_loopback_only_namespace() -> None:
    prefix = _namespace_prefix()
    inner = [sys.executable, "-m", "pytest", "tests/scale", "-m", "ray", "-rs"]  # -q comes from addopts
    inner += ["-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]
    script = "ip link set lo up; exec " + " ".join(shlex.quote(a) for a in inner)
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run(
            [*prefix, "sh", "-c", script],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIER_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or "")
        pytest.fail(f"the Ray tier took over {TIER_TIMEOUT_S} s:\n{out[-4000:]}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\d+ passed", line)]
    assert summary and "skipped" not in summary[-1], out[-4000:]  # ran, and nothing was skipped

"""The long mode of the reliability battery (issue #7): 500 kills per storm, a full minute of 16
concurrent clients, ~300 damaged directories, ~24,000 schemathesis cases.

Runs ``pytest tests/reliability`` with ``LIKEWISE_SOAK=1`` and prints the figures each test
reports (the same lines CI prints, with bigger numbers); exits with pytest's status. It takes about
half an hour on 2 cores, most of it restarting the server 500 times::

    .venv/bin/python benchmarks/soak.py                 # everything
    .venv/bin/python benchmarks/soak.py -k crash_storm  # one part (any pytest arguments)
    .venv/bin/python benchmarks/soak.py --log benchmarks/results/soak.log

The figures go to docs/reliability.md by hand: this script only runs and reports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE_PREFIXES = ("server storm:", "embedded storm:", "concurrency:", "torn files:", "schemathesis:",
                   "disk full:", "bad input and limits:", "kills during")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, default=None, help="also write pytest's whole output here")
    args, pytest_args = parser.parse_known_args()
    env = {**os.environ, "LIKEWISE_SOAK": "1"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "-q", "tests/reliability", *pytest_args]
    began = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    figures: list[str] = []
    log = open(args.log, "w") if args.log else None  # noqa: SIM115 - closed below, after streaming
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            if log:
                log.write(line)
            for prefix in FIGURE_PREFIXES:  # pytest's progress dots may precede a figure on its line
                at = line.find(prefix)
                if at >= 0:
                    figures.append(line[at:].strip())
                    break
    finally:
        if log:
            log.close()
    status = proc.wait()
    print(f"\n== soak figures ({(time.monotonic() - began) / 60:.1f} min, pytest exit {status}) ==")
    for figure in figures:
        print(figure)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""bench/host_script_cost.py still runs: the script it builds is the one ``onboard`` sends, so a
change to the script or its parameters that breaks the benchmark shows here, not on the day
someone measures. Exit status and the table's shape only; the numbers are the benchmark's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("sudo") is None,
                                reason="the script's elevation check wants root, and sudo")


@pytest.mark.parametrize("extra", [[], ["--sudo"]])
def test_the_benchmark_runs_the_script_to_a_verified_connect(extra: list[str]) -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "host_script_cost.py"),
                           "--runs", "2", *extra], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [r[1].strip() for r in rows[1:]] == ["floor", "script"], done.stdout
    for row in rows[1:]:
        assert float(row[2]) > 0 and float(row[3]) >= 1, row

"""The README's main command: `arcfleet lab demo` runs the whole loop and says it is right."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_lab_demo_onboards_diagnoses_and_reruns_to_empty(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "fleet", "lab", "demo", "--hosts", "24", "--windows", "6",
         "--subnet", "127.79", "--state-dir", str(state)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo OK" in result.stderr
    assert "every host is connected" in result.stderr
    # Two runs recorded: the onboard and its rerun.
    runs = subprocess.run([sys.executable, "-m", "fleet", "runs", "--state-dir", str(state)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert runs.returncode == 0
    assert runs.stdout.count("rerun") >= 1

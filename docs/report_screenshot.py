"""Regenerate docs/report.png: a screenshot of the HTML report of a lab run.

    .venv/bin/python docs/report_screenshot.py

Starts the built-in lab (30 Linux and 6 Windows hosts, the default scenario mix), onboards it
with ``arcfleet onboard`` as an operator would, and has headless Chromium (Debian's
``chromium`` package) photograph the ``report.html`` the run wrote next to failures.csv.
Everything stays on loopback; the browser runs with networking features off.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import load_plan

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "report.png"


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    plan = load_plan(ROOT / "fleet" / "lab" / "scenarios" / "mix.yaml")
    with tempfile.TemporaryDirectory(prefix="arcfleet-shot-") as work:
        folder = Path(work)
        with LabFleet.in_thread(folder / "lab", hosts=30, windows=6, plan=plan,
                                subnet="127.89") as lab:
            run = subprocess.run(
                [sys.executable, "-m", "fleet", "onboard", "-i", str(lab.inventory_path),
                 "--state-dir", str(folder / "state"), "--connect-rate", "0"],
                cwd=ROOT, capture_output=True, text=True, check=False)
        lines = [line for line in run.stderr.splitlines() if line.startswith("HTML report: ")]
        if not lines:
            print(run.stderr, file=sys.stderr)
            return 1
        page = Path(lines[0].removeprefix("HTML report: "))
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={folder / 'profile'}",
             "--window-size=1280,1700", f"--screenshot={OUT}", page.as_uri()],
            check=True, capture_output=True, timeout=120)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bench: how fast the CLI starts, as whole processes (issue 15).

Reports the wall time of `arcfleet --version`, `arcfleet --help` and `arcfleet inventory show
--json` on a 5,000-host Ansible INI inventory (bench/inventory_load.py's generator): best and
median of a few runs, the ratio to the targets (0.3 s, 0.3 s, 1 s) and to a bare `python -c pass`
measured in the same run (on a loaded machine every process start is slower). Not a test: timings
depend on the machine and its load. For where the time goes:

    .venv/bin/python -X importtime -c "import fleet.cli" 2> importtime.txt

    .venv/bin/python bench/cli_start.py [--runs 7] [--hosts 5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inventory_load import generate  # bench/ is not a package

REPO = Path(__file__).resolve().parents[1]
# Measure arcfleet as installed: Python keeps its modules' compiled bytecode (pip writes it, and a
# source tree gets it on first import) unless PYTHONDONTWRITEBYTECODE is set, as on some CI and
# sandbox machines, where every run would compile all of arcfleet again (~0.25 s of CPU).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# The program as installed runs it (`python -m fleet` calls the same entry as the console script).
ARCFLEET = [sys.executable, "-m", "fleet"]


def wall_times(args: list[str], runs: int, tree: Path = REPO) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([*ARCFLEET, *args], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                       check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--compare", type=Path, default=None, metavar="TREE",
                        help="also time another source tree in the same run, e.g. an older "
                        "commit: git archive COMMIT | tar -x -C TREE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "hosts.ini"
        generate(inventory, args.hosts)
        cases = [
            ("arcfleet --version", ["--version"], 0.3),
            ("arcfleet --help", ["--help"], 0.3),
            (f"inventory show --json ({args.hosts} hosts, INI)",
             ["inventory", "show", "--json", "-i", str(inventory)], 1.0),
        ]
        trees = [("", REPO)] + ([("  (compare) ", args.compare)] if args.compare else [])
        for _, tree in trees:  # warm the file cache and write every .pyc once
            for _label, argv, _target in cases:
                wall_times(argv, 1, tree)
        python_only = wall_times_python(args.runs)
        print(f"load average {os.getloadavg()[0]:.2f}, {args.runs} runs each, "
              f"bare `python -c pass` median {statistics.median(python_only):.3f} s")
        bare = statistics.median(python_only)
        print(f"{'command':<42} {'best':>7} {'median':>7} {'target':>7} {'median/target':>14} "
              f"{'median/bare python':>19}")
        for label, argv, target in cases:
            for prefix, tree in trees:
                times = wall_times(argv, args.runs, tree)
                median = statistics.median(times)
                print(f"{prefix + label:<42} {min(times):>6.3f}s {median:>6.3f}s "
                      f"{target:>6.1f}s {median / target:>14.2f} {median / bare:>19.1f}")


def wall_times_python(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return times


if __name__ == "__main__":
    main()

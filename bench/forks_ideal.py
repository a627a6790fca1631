"""Issue 5's timing acceptance: 500 lab hosts, connect latency 2 s, ``--forks 100``.

The wall time of ``arcfleet onboard`` must be within 15% of the ideal, ceil(500 / 100) x 2 s =
10 s. The run uses ``--connect-rate 0``: the playbook's default pacing (5 connects/s) protects
ARM on a real fleet and is meant to be slower than this ideal. The lab runs in its own process.

    /work/venv/bin/python bench/forks_ideal.py [--hosts 500] [--latency 2] [--forks 100] [--runs 1]

Prints each run and the ratio to the ideal; exit status 0 when the best run is within 15%, 1
when not (a busy machine makes it slower: compare the load average printed with the cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from onboard_scale import lab, raise_fd_limit, row, run_arcfleet, run_floor

TOLERANCE = 1.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--forks", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--floor", action="store_true",
                        help="before each arcfleet run, the asyncssh floor on a fresh lab of "
                             "the same size: what any asyncssh tool gets on this machine")
    args = parser.parse_args()
    raise_fd_limit(args.hosts * 4 + 1024)
    ratios = []
    with tempfile.TemporaryDirectory(prefix="arcfleet-bench-") as tmp:
        for _ in range(args.runs):
            if args.floor:
                with lab(args.hosts, args.latency, Path(tmp)) as lab_:
                    floor = run_floor(lab_, args.hosts, args.latency, args.forks, Path(tmp))
                print(row(floor), flush=True)
            with lab(args.hosts, args.latency, Path(tmp)) as lab_:
                result = run_arcfleet(lab_, args.hosts, args.latency, args.forks, Path(tmp))
            print(row(result), flush=True)
            if result.ok_hosts != args.hosts:
                sys.exit(f"only {result.ok_hosts} of {args.hosts} hosts connected")
            ratios.append(result.ratio)
    best = min(ratios)
    verdict = "within" if best <= TOLERANCE else "NOT within"
    print(f"best wall / ideal = {best:.3f}: {verdict} {TOLERANCE - 1:.0%} of the ideal")
    sys.exit(0 if best <= TOLERANCE else 1)


if __name__ == "__main__":
    main()

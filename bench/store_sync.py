"""How much does synchronous=FULL cost over NORMAL for the run store's per-host commits?

Records N host outcomes (one transaction each, as a run does) into a fresh store on the given
directory's file system, for each setting, and prints outcomes/s and the FULL/NORMAL time ratio.

    /work/venv/bin/python bench/store_sync.py [--hosts 2000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from fleet.azcm.diagnosis import Category
from fleet.store import RunStore
from tests.store_helpers import attempt, outcome, start


def measure(base: Path, hosts: int, synchronous: str) -> float:
    names = [f"h{i:05d}" for i in range(hosts)]
    with tempfile.TemporaryDirectory(dir=base) as tmp, RunStore.open(
        Path(tmp), synchronous=synchronous
    ) as store:
        run_id = start(store, names)
        began = time.perf_counter()
        for name in names:
            store.host_started(run_id, name)
            store.record_attempt(run_id, name, attempt())
            store.record_outcome(run_id, outcome(name, Category.NETWORK, cause="no route"))
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    results = {mode: measure(args.dir, args.hosts, mode) for mode in ("NORMAL", "FULL")}
    for mode, seconds in results.items():
        print(f"{mode:<6} {args.hosts} hosts x 3 commits: {seconds:.3f}s "
              f"({args.hosts / seconds:.0f} hosts/s)")
    print(f"FULL/NORMAL time ratio: {results['FULL'] / results['NORMAL']:.2f}")


if __name__ == "__main__":
    main()

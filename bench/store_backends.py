"""The run store's overhead per host: PostgreSQL (shared, with claims) against SQLite.

For N hosts, in one process, as a run records them: SQLite (``synchronous=NORMAL``, the default)
records host started, one attempt and the outcome (3 commits per host); PostgreSQL does the
same plus the claim (claimed in batches of ``--batch``, ``FOR UPDATE SKIP LOCKED``) and the
worker's lease renewal (one statement per batch). PostgreSQL runs in a throwaway cluster on
loopback (tests/pgcluster.py) with its production defaults (fsync on, synchronous_commit on),
so every commit waits for the disk; SQLite is measured with NORMAL (the default: no fsync per
commit in WAL mode) and FULL (an fsync per commit, PostgreSQL's durability).

    .venv/bin/python bench/store_backends.py [--hosts 1000] [--batch 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pgcluster, from a checkout

from fleet.azcm.diagnosis import Category
from fleet.store import RunStore
from fleet.store.postgres import PostgresRunStore
from tests.pgcluster import PgCluster
from tests.store_helpers import attempt, host_tuples, outcome, start


def record(store: RunStore, run_id: str, name: str, worker: str | None = None) -> None:
    store.host_started(run_id, name)
    store.record_attempt(run_id, name, attempt())
    if isinstance(store, PostgresRunStore):
        store.record_outcome(run_id, outcome(name, Category.NETWORK, cause="no route"),
                             worker=worker)
    else:
        store.record_outcome(run_id, outcome(name, Category.NETWORK, cause="no route"))


def sqlite_run(hosts: int, synchronous: str) -> float:
    names = [f"h{i:05d}" for i in range(hosts)]
    with tempfile.TemporaryDirectory() as tmp, RunStore.open(
        Path(tmp), synchronous=synchronous
    ) as store:
        run_id = start(store, names)
        began = time.perf_counter()
        for name in names:
            record(store, run_id, name)
        return time.perf_counter() - began


def postgres_run(url: str, hosts: int, batch: int, *, claims: bool) -> float:
    names = [f"h{i:05d}" for i in range(hosts)]
    with tempfile.TemporaryDirectory() as tmp, PostgresRunStore.open(url, Path(tmp)) as store:
        if not claims:
            run_id = start(store, names)
            began = time.perf_counter()
            for name in names:
                record(store, run_id, name)
            return time.perf_counter() - began
        run_id = store.start_run(
            kind="onboard", command_line=["bench"], inventory_paths=[], inventory_digest="d",
            playbook="p", options={}, hosts=host_tuples(names),
            sites=dict.fromkeys(names, "s"),
        ).id
        began = time.perf_counter()
        while taken := store.claim_hosts(run_id, "s", "w", limit=batch, lease_s=60):
            store.renew_leases(run_id, "w", 60)
            for claim in taken:
                record(store, run_id, claim.host, worker="w")
        store.finish_if_complete(run_id)
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    cluster = PgCluster.start(durable=True)
    try:
        os.environ["PGPASSWORD"] = cluster.password
        results = {
            "sqlite": sqlite_run(args.hosts, "NORMAL"),
            "sqlite-full": sqlite_run(args.hosts, "FULL"),
            "postgres": postgres_run(cluster.create_database("bench_plain"), args.hosts,
                                     args.batch, claims=False),
            "postgres+claims": postgres_run(cluster.create_database("bench_claims"),
                                            args.hosts, args.batch, claims=True),
        }
    finally:
        cluster.stop()
    for name, seconds in results.items():
        print(f"{name:<16} {args.hosts} hosts: {seconds:.3f}s "
              f"({1000 * seconds / args.hosts:.2f} ms/host)")
    for name in ("sqlite-full", "postgres", "postgres+claims"):
        print(f"{name}/sqlite time ratio: {results[name] / results['sqlite']:.2f}")


if __name__ == "__main__":
    main()

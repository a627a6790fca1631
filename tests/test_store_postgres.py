"""The PostgreSQL run store, on a real throwaway cluster (tests/pgcluster.py).

Every behaviour test of the SQLite store that takes a ``store`` runs here again, unchanged, on
PostgreSQL (imported below; this module's ``store`` fixture overrides theirs). Then what only
the shared store has: versioned migrations, the password kept out of sight, claims and leases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.azcm.diagnosis import Category
from fleet.errors import StoreError
from fleet.redact import forget_secrets
from fleet.store.locate import StoreLocation, redact_dsn
from fleet.store.postgres import LeaseLost, PostgresRunStore
from fleet.store.postgres_schema import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version
from tests.pgcluster import PgCluster
from tests.store_helpers import outcome
from tests.test_store_runs import (  # noqa: F401  (collected again, on PostgreSQL)
    test_final_outcomes_only_cover_root_hosts,
    test_final_outcomes_take_the_latest_run,
    test_host_history_across_runs,
    test_hosts_to_rerun_with_and_without_categories,
    test_install_columns_round_trip,
    test_list_runs_counts_by_status,
    test_options_with_paths_and_enums_are_stored_as_json,
    test_outcome_for_a_host_not_planned_is_kept,
    test_outcome_row_fields,
    test_reruns_share_the_root,
    test_resolve_run_id_by_unique_prefix,
    test_run_id_shape,
    test_sink_records_attempts_outcome_and_states,
    test_start_run_records_run_and_pending_hosts,
    test_unfinished_hosts_of_a_resumed_run,
    test_unknown_kind_status_or_parent_is_a_store_error,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[PostgresRunStore]:
    opened = PostgresRunStore.open(pg_url, tmp_path / "state")
    yield opened
    opened.close()


# ---------------------------------------------------------------- schema and migrations


def test_fresh_database_is_migrated_to_the_current_version(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert schema_version(conn) == 0
    PostgresRunStore.open(pg_url, tmp_path).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert schema_version(conn) == SCHEMA_VERSION == len(MIGRATIONS) == 3
        assert migrate(conn) == (3, 3)  # idempotent
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'run_hosts'"
        )}
        assert {"site", "worker", "lease_until", "claims"} <= columns
        outcome_columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'outcomes'"
        )}
        assert {"agent_version_before", "agent_version_after", "install"} <= outcome_columns


def test_migrations_run_one_step_at_a_time(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn, MIGRATIONS[:1]) == (0, 1)
        assert migrate(conn, MIGRATIONS[:2]) == (1, 2)
        assert migrate(conn, MIGRATIONS) == (2, 3)  # a v2 store gains the install columns


def test_failed_migration_rolls_back(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error):
            migrate(conn, (("CREATE TABLE half (x INTEGER)", "SELECT no_such_function()"),))
        assert schema_version(conn) == 0
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)


def test_newer_schema_is_refused(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    PostgresRunStore.open(pg_url, tmp_path).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE arcfleet_schema SET version = 9")
    with pytest.raises(StoreError, match="schema version 9, newer"):
        PostgresRunStore.open(pg_url, tmp_path)


def test_open_without_create_does_not_create(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    with pytest.raises(StoreError, match="no run store"):
        PostgresRunStore.open(pg_url, tmp_path, create=False)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('runs')").fetchone() == (None,)


def test_two_jump_hosts_migrating_at_once_apply_each_step_once(pg_url: str) -> None:
    code = (
        "import sys, psycopg\n"
        "from fleet.store.postgres_schema import migrate\n"
        "with psycopg.connect(sys.argv[1], autocommit=True) as c: print(migrate(c))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    results = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    # A step applied twice would fail (its CREATE TABLE exists): all succeed, all end at the
    # last version, one started from an empty database. (Steps are separate transactions, so
    # another process may apply a later step: then it reports (1, 3) or (2, 3).)
    last = len(MIGRATIONS)
    assert all(p.returncode == 0 for p in procs)
    assert all(r.endswith(f", {last})") for r in results) and results[0] == f"(0, {last})", \
        results


# ---------------------------------------------------------------- the password


def test_a_password_in_the_url_is_refused_and_never_shown(tmp_path: Path) -> None:
    url = "postgresql://arcfleet:Sentinel-PW-4711@127.0.0.1:1/db"
    with pytest.raises(StoreError) as caught:
        StoreLocation(tmp_path, url).open()
    assert "Sentinel-PW-4711" not in str(caught.value)
    assert "arcfleet:***@127.0.0.1:1" in str(caught.value)
    assert redact_dsn(url) == "postgresql://arcfleet:***@127.0.0.1:1/db"


def test_password_from_a_secret_reference(
    pg_cluster: PgCluster, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("ARCFLEET_TEST_PG", pg_cluster.password)
    forget_secrets()
    with StoreLocation(tmp_path, pg_url, "env:ARCFLEET_TEST_PG").open() as opened:
        assert opened.list_runs() == []
    # A wrong password: libpq's message, the URL without a password, no secret.
    monkeypatch.setenv("ARCFLEET_TEST_PG", "Wrong-Sentinel-9931")
    with pytest.raises(StoreError) as caught:
        StoreLocation(tmp_path, pg_url, "env:ARCFLEET_TEST_PG").open()
    assert "password authentication failed" in str(caught.value)
    assert "Wrong-Sentinel-9931" not in str(caught.value)
    assert pg_cluster.password not in str(caught.value)
    forget_secrets()


def test_password_from_pgpass(
    pg_cluster: PgCluster, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg_cluster.port}:*:arcfleet:{pg_cluster.password}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with StoreLocation(tmp_path, pg_url).open() as opened:
        assert opened.list_runs() == []


# ---------------------------------------------------------------- claims and leases


def _site_run(store: PostgresRunStore, names: list[str], site_of: dict[str, str]) -> str:
    record = store.start_run(
        kind="onboard", command_line=["arcfleet", "runs", "create"], inventory_paths=["i"],
        inventory_digest="d", playbook="onboard", options={},
        hosts=[(n, f"127.0.9.{i + 1}", "ssh", "linux") for i, n in enumerate(names)],
        sites=site_of,
    )
    return record.id


def test_claims_take_a_sites_hosts_in_order_and_skip_held_ones(store: PostgresRunStore) -> None:
    names = [f"h{i}" for i in range(6)]
    run_id = _site_run(store, names, {n: ("east" if i % 2 else "west") for i, n in
                                      enumerate(names)})
    assert store.get_run(run_id) is not None
    first = store.claim_hosts(run_id, "west", "w1", limit=2, lease_s=60)
    assert [c.host for c in first] == ["h0", "h2"]
    assert [c.host for c in store.claim_hosts(run_id, "west", "w2", limit=5, lease_s=60)] == [
        "h4"]
    assert store.claim_hosts(run_id, "west", "w3", limit=5, lease_s=60) == []
    assert [c.host for c in store.claim_hosts(run_id, None, "w4", limit=1, lease_s=60)] == ["h1"]
    assert store.site_unfinished(run_id, "west") == 3


def test_an_expired_lease_is_claimed_again_and_the_late_result_is_dropped(
    store: PostgresRunStore,
) -> None:
    run_id = _site_run(store, ["a", "b"], {"a": "s", "b": "s"})
    assert [c.host for c in store.claim_hosts(run_id, "s", "dead", limit=1, lease_s=0.2)] == ["a"]
    store.host_started(run_id, "a")
    time.sleep(0.5)
    again = store.claim_hosts(run_id, "s", "alive", limit=5, lease_s=60)
    assert [(c.host, c.started_before, c.claims) for c in again] == [
        ("a", True, 2), ("b", False, 1)]
    assert store.renew_leases(run_id, "dead", 60) == 0  # it holds nothing any more
    with pytest.raises(LeaseLost):
        store.record_outcome(run_id, outcome("a", Category.NETWORK), worker="dead")
    store.record_outcome(run_id, outcome("a", Category.CONNECTED), worker="alive")
    store.record_outcome(run_id, outcome("b", Category.CONNECTED), worker="alive")
    final = store.final_outcomes(run_id)
    assert {h: (r.category, r.site, r.worker) for h, r in final.items()} == {
        "a": ("connected", "s", "alive"), "b": ("connected", "s", "alive")}
    assert store.finish_if_complete(run_id)
    record = store.get_run(run_id)
    assert record is not None and record.status == "finished"


def test_a_live_lease_is_renewed_not_taken(store: PostgresRunStore) -> None:
    run_id = _site_run(store, ["a"], {"a": "s"})
    store.claim_hosts(run_id, "s", "w1", limit=1, lease_s=0.6)
    for _ in range(4):
        time.sleep(0.2)
        assert store.renew_leases(run_id, "w1", 0.6) == 1
        assert store.claim_hosts(run_id, "s", "w2", limit=1, lease_s=60) == []
    store.release_host(run_id, "w1", "a")
    assert [c.host for c in store.claim_hosts(run_id, "s", "w2", limit=1, lease_s=60)] == ["a"]


_RACER = """
import sys, time
from fleet.store.postgres import PostgresRunStore
url, state, run_id, worker = sys.argv[1:5]
with PostgresRunStore.open(url, state) as store:
    print("ready", flush=True)
    sys.stdin.readline()  # both start claiming together
    while batch := store.claim_hosts(run_id, "s", worker, limit=3, lease_s=60):
        for claim in batch:
            print(claim.host, flush=True)
        time.sleep(0.002)  # the host's work
"""


def test_two_workers_racing_for_200_hosts_claim_each_once(
    store: PostgresRunStore, pg_url: str, tmp_path: Path
) -> None:
    names = [f"h{i:03d}" for i in range(200)]
    run_id = _site_run(store, names, dict.fromkeys(names, "s"))
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACER, pg_url, str(tmp_path / "state"), run_id,
                          worker], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=os.environ.copy())
        for worker in ("w1", "w2")
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    claimed = [p.communicate(timeout=300)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(claimed[0] + claimed[1]) == names  # each host once, none lost
    assert claimed[0] and claimed[1], "both workers took part in the race"
    rows = store._read("SELECT host, worker, claims FROM run_hosts WHERE run_id = ?", (run_id,))
    assert {r["claims"] for r in rows} == {1}
    assert {r["host"] for r in rows if r["worker"] == "w1"} == set(claimed[0])


# ---------------------------------------------------------------- the command line


def test_store_migrate_command_on_both_backends(pg_url: str, tmp_path: Path) -> None:
    from tests.run_support import arcfleet

    first = arcfleet("store", "migrate", "--store", pg_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"{pg_url}: schema migrated from 0 to version 3"
    again = arcfleet("store", "migrate", "--store", pg_url)
    assert again.stdout.strip() == f"{pg_url}: schema already at version 3"
    state = tmp_path / "state"
    local = arcfleet("store", "migrate", "--state-dir", str(state))
    assert local.returncode == 0, local.stderr
    assert local.stdout.strip() == f"{state}: schema migrated from 0 to version 2"


def test_a_bad_store_is_one_line_exit_2_and_no_password(tmp_path: Path) -> None:
    from tests.run_support import arcfleet

    url = "postgresql://arcfleet:Sentinel-PW-0815@127.0.0.1:1/db"
    for args in (["runs"], ["report"], ["store", "migrate"],
                 ["onboard", "-i", str(tmp_path / "none.yaml"), "--site", "x"]):
        result = arcfleet(*args, "--store", url, "--state-dir", str(tmp_path / "s"))
        assert result.returncode == 2, (args, result.stderr)
        assert "Sentinel-PW-0815" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    refused = arcfleet("runs", "--store", "postgresql://arcfleet@127.0.0.1:1/db")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "127.0.0.1:1" in refused.stderr

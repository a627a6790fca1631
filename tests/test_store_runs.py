"""RunStore: runs, reruns, final outcomes, what to rerun, what a resume must check."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from fleet.azcm.diagnosis import Category
from fleet.engine.outcome import Attempt
from fleet.errors import StoreError
from fleet.store import SCHEMA_VERSION, RunStore, RunStoreSink, migrate
from tests.store_helpers import attempt, outcome, start


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    opened = RunStore.open(tmp_path / "state")
    yield opened
    opened.close()


def test_start_run_records_run_and_pending_hosts(store: RunStore) -> None:
    run_id = start(store, ["a", "b"])
    run = store.get_run(run_id)
    assert run is not None
    assert run.kind == "onboard" and run.status == "running" and run.parent_run_id is None
    assert run.root_run_id == run_id
    assert run.folder == store.state_dir / "runs" / run_id and run.folder.is_dir()
    assert run.command_line == ["arcfleet", "onboard", "-i", "inv.yaml"]
    assert run.options == {"forks": 10}
    assert [h.state for h in store.run_hosts(run_id)] == ["pending", "pending"]
    assert store.unfinished_hosts(run_id) == ([], ["a", "b"])


def test_run_id_shape(store: RunStore) -> None:
    run_id = start(store, ["a"])
    date, time, suffix = run_id.split("-")
    assert len(date) == 8 and len(time) == 6 and len(suffix) == 4


def test_options_with_paths_and_enums_are_stored_as_json(store: RunStore) -> None:
    record = store.start_run(
        kind="preflight", command_line=["arcfleet"], inventory_paths=["x"],
        inventory_digest="d", playbook="p",
        options={"playbook": Path("/etc/pb.yaml"), "limit": ("a", "b"), "category": Category.AUTH},
        hosts=[],
    )
    assert record.options == {"playbook": "/etc/pb.yaml", "limit": ["a", "b"], "category": "auth"}


def test_unknown_kind_status_or_parent_is_a_store_error(store: RunStore) -> None:
    with pytest.raises(StoreError, match="kind"):
        start(store, ["a"], kind="deploy")
    with pytest.raises(StoreError, match="parent"):
        start(store, ["a"], kind="rerun", parent_run_id="20990101-000000-dead")
    with pytest.raises(StoreError, match="rerun run needs parent_run_id"):
        start(store, ["a"], kind="rerun")
    run_id = start(store, ["a"])
    with pytest.raises(StoreError, match="onboard run takes no parent_run_id"):
        start(store, ["a"], kind="onboard", parent_run_id=run_id)
    with pytest.raises(StoreError, match="status"):
        store.finish_run(run_id, "done")


def test_sink_records_attempts_outcome_and_states(store: RunStore) -> None:
    run_id = start(store, ["a", "b", "c"])
    sink = RunStoreSink(store, run_id)
    sink.host_started("a")
    sink.attempt_recorded("a", attempt(exit_status=1, category=Category.THROTTLED))
    sink.attempt_recorded("a", attempt())
    sink.outcome_recorded(outcome("a", Category.CONNECTED, attempts=2))
    sink.host_started("b")
    assert [h.state for h in store.run_hosts(run_id)] == ["done", "in_flight", "pending"]
    steps = store.attempts_for(run_id, "a")
    assert [(s.seq, s.exit_status, s.category) for s in steps] == [
        (1, 1, "throttled"), (2, 0, None)
    ]
    assert store.unfinished_hosts(run_id) == (["b"], ["c"])
    final = store.final_outcomes(run_id)
    assert list(final) == ["a"]
    assert final["a"].status == "success" and final["a"].attempts == 2


def test_sink_commits_a_loop_turns_attempts_together_and_before_the_outcome(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a running loop the attempts of one turn go to the store at the end of that turn, in
    their order; an outcome commits the attempts before it at once; a failed commit keeps the
    attempts for the next one, and a failure that lasts surfaces at the next outcome."""
    run_id = start(store, ["a", "b"])
    sink = RunStoreSink(store, run_id)
    commits: list[int] = []
    record_attempts = store.record_attempts
    failures = [StoreError("disk full"), StoreError("disk full")]  # two commits fail

    def counting(run: str, items: Sequence[tuple[str, Attempt]]) -> None:
        if failures:
            raise failures.pop()
        commits.append(len(items))
        record_attempts(run, items)

    monkeypatch.setattr(store, "record_attempts", counting)  # counts commits, fails two

    def seqs(host: str) -> list[tuple[int, str]]:
        return [(s.seq, s.command) for s in store.attempts_for(run_id, host)]

    async def scenario() -> None:
        sink.attempt_recorded("a", attempt("a1"))
        sink.attempt_recorded("b", attempt("b1"))
        sink.attempt_recorded("a", attempt("a2"))
        assert seqs("a") == []  # not yet: the turn is not over
        await asyncio.sleep(0)  # the turn's end: the commit failed (disk full), kept
        assert seqs("a") == [] and commits == []
        with pytest.raises(StoreError, match="disk full"):  # still failing: b not recorded
            sink.outcome_recorded(outcome("b", Category.CONNECTED))
        assert "b" not in store.final_outcomes(run_id)
        sink.attempt_recorded("a", attempt("a3"))
        sink.outcome_recorded(outcome("a", Category.CONNECTED, attempts=3))
        assert seqs("a") == [(1, "a1"), (2, "a2"), (3, "a3")]
        assert seqs("b") == [(1, "b1")]
        assert commits == [4]  # the three kept and the new one, in one transaction
        await asyncio.sleep(0)  # the turn's scheduled flush finds nothing left
        assert commits == [4]

    asyncio.run(scenario())


def test_outcome_for_a_host_not_planned_is_kept(store: RunStore) -> None:
    run_id = start(store, ["a"])
    store.record_outcome(run_id, outcome("z", Category.UNREACHABLE))
    assert [h.host for h in store.run_hosts(run_id)] == ["a", "z"]
    assert store.unfinished_hosts(run_id) == ([], ["a"])


def test_outcome_row_fields(store: RunStore) -> None:
    run_id = start(store, ["a"])
    store.record_outcome(run_id, outcome(
        "a", Category.PERMISSIONS, code="AZCM0042", cause="no role", fix="grant role",
        message="fatal: 403", attempts=3, remediations=("refresh_token",), exit_code=42,
        correlation_ids=("c1", "c2"), resource_id="/subscriptions/x", seconds=4.0,
    ))
    row = store.final_outcomes(run_id)["a"]
    assert (row.status, row.category, row.azcm_code, row.exit_code) == (
        "failed", "permissions", "AZCM0042", 42)
    assert (row.cause, row.fix, row.message) == ("no role", "grant role", "fatal: 403")
    assert row.remediations == ("refresh_token",) and row.attempts == 3
    assert row.correlation_id == "c1 c2" and row.resource_id == "/subscriptions/x"
    assert row.duration_s == pytest.approx(4.0)
    assert row.started_at == "2026-11-26T01:00:00.000+00:00"
    assert row.run_id == run_id and row.log_file == "runs/x/a.log"


def _fleet_with_reruns(store: RunStore) -> tuple[str, str, str]:
    root = start(store, ["a", "b", "c", "d"])
    store.record_outcome(root, outcome("a", Category.CONNECTED))
    store.record_outcome(root, outcome("b", Category.CREDENTIALS, code="AZCM0016"))
    store.record_outcome(root, outcome("c", Category.NETWORK))
    store.host_started(root, "d")  # d was in flight when the run died
    store.finish_run(root, "crashed")
    rerun1 = start(store, ["b", "c", "d"], kind="rerun", parent_run_id=root)
    store.record_outcome(rerun1, outcome("b", Category.CONNECTED))
    store.record_outcome(rerun1, outcome("c", Category.THROTTLED))
    store.record_outcome(rerun1, outcome("d", Category.UNREACHABLE))
    store.finish_run(rerun1, "finished")
    rerun2 = start(store, ["c"], kind="rerun", parent_run_id=rerun1)
    store.record_outcome(rerun2, outcome("c", Category.CONNECTED))
    store.finish_run(rerun2, "finished")
    return root, rerun1, rerun2


def test_reruns_share_the_root(store: RunStore) -> None:
    root, rerun1, rerun2 = _fleet_with_reruns(store)
    r2 = store.get_run(rerun2)
    assert r2 is not None and r2.parent_run_id == rerun1 and r2.root_run_id == root
    assert [r.id for r in store.runs_under(root)] == [root, rerun1, rerun2]
    assert store.latest_run_id() == root
    assert store.latest_run_id(root_only=False) == rerun2


def test_final_outcomes_take_the_latest_run(store: RunStore) -> None:
    root, rerun1, rerun2 = _fleet_with_reruns(store)
    final = store.final_outcomes(root)
    assert list(final) == ["a", "b", "c", "d"]
    assert {h: (r.category, r.run_id) for h, r in final.items()} == {
        "a": ("connected", root),
        "b": ("connected", rerun1),
        "c": ("connected", rerun2),
        "d": ("unreachable", rerun1),
    }


def test_final_outcomes_only_cover_root_hosts(store: RunStore) -> None:
    root = start(store, ["a"])
    store.record_outcome(root, outcome("a", Category.NETWORK))
    rerun = start(store, ["a", "extra"], kind="rerun", parent_run_id=root)
    store.record_outcome(rerun, outcome("extra", Category.CONNECTED))
    assert list(store.final_outcomes(root)) == ["a"]
    assert store.final_outcomes(root)["a"].category == "network"


def test_hosts_to_rerun_with_and_without_categories(store: RunStore) -> None:
    root = start(store, ["a", "b", "c", "d", "e"])
    store.record_outcome(root, outcome("a", Category.CONNECTED))
    store.record_outcome(root, outcome("b", Category.CREDENTIALS))
    store.record_outcome(root, outcome("c", Category.NETWORK))
    store.record_outcome(root, outcome("e", Category.ALREADY_CONNECTED))
    store.host_started(root, "d")
    assert store.hosts_to_rerun(root) == ["b", "c", "d"]
    assert store.hosts_to_rerun(root, {"network"}) == ["c"]
    assert store.hosts_to_rerun(root, {"network", "credentials"}) == ["b", "c"]
    assert store.hosts_to_rerun(root, {"connected"}) == []
    rerun = start(store, ["b", "c", "d"], kind="rerun", parent_run_id=root)
    store.record_outcome(rerun, outcome("b", Category.CONNECTED))
    store.record_outcome(rerun, outcome("d", Category.UNREACHABLE))
    assert store.hosts_to_rerun(root) == ["c", "d"]
    assert store.hosts_to_rerun(root, {"unreachable"}) == ["d"]


def test_unfinished_hosts_of_a_resumed_run(store: RunStore) -> None:
    root, rerun1, _ = _fleet_with_reruns(store)
    assert store.unfinished_hosts(root) == (["d"], [])
    assert store.unfinished_hosts(rerun1) == ([], [])


def test_list_runs_counts_by_status(store: RunStore) -> None:
    root, rerun1, rerun2 = _fleet_with_reruns(store)
    runs = {r.id: r for r in store.list_runs()}
    assert list(runs) == [root, rerun1, rerun2]
    assert runs[root].counts == {"success": 1, "failed": 2, "skipped": 0, "interrupted": 0,
                                 "ready": 0}
    assert runs[root].hosts == 4 and runs[root].unfinished == 1
    assert runs[root].status == "crashed"
    assert runs[rerun1].parent_run_id == root and runs[rerun1].duration_s is not None
    assert runs[rerun1].counts["failed"] == 2 and runs[rerun1].counts["success"] == 1


def test_host_history_across_runs(store: RunStore) -> None:
    root, rerun1, rerun2 = _fleet_with_reruns(store)
    history = store.host_history("c")
    assert [(r.run_id, r.category) for r in history] == [
        (root, "network"), (rerun1, "throttled"), (rerun2, "connected")
    ]
    assert store.host_history("nobody") == []


def test_resolve_run_id_by_unique_prefix(store: RunStore) -> None:
    run_id = start(store, ["a"])
    assert store.resolve_run_id(run_id) == run_id
    assert store.resolve_run_id(run_id[:-2]) == run_id
    assert store.resolve_run_id("1999") is None


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    with RunStore.open(tmp_path) as store:
        run_id = start(store, ["a"])
        store.record_outcome(run_id, outcome("a", Category.NETWORK))
    with RunStore.open(tmp_path, create=False) as store:
        assert store.final_outcomes(run_id)["a"].category == "network"


def test_open_without_create_does_not_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run store"):
        RunStore.open(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


# ---------------------------------------------------------------- schema version and migrations


def test_fresh_store_is_at_the_current_version(tmp_path: Path) -> None:
    RunStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "arcfleet.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "run_hosts", "outcomes", "attempts"} <= tables
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "arcfleet.db")
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(StoreError, match="schema version 7, newer"):
        RunStore.open(tmp_path)


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "arcfleet.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        RunStore.open(tmp_path)


def test_a_second_migration_is_one_function(tmp_path: Path) -> None:
    with RunStore.open(tmp_path) as store:
        run_id = start(store, ["a"])
        store.record_outcome(run_id, outcome("a", Category.NETWORK))

    def v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE outcomes ADD COLUMN doc_url TEXT NOT NULL DEFAULT ''")

    from fleet.store import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "arcfleet.db", isolation_level=None)
    assert migrate(conn, (*MIGRATIONS, v2)) == 3
    assert migrate(conn, (*MIGRATIONS, v2)) == 3  # idempotent
    assert conn.execute("SELECT host, doc_url FROM outcomes").fetchall() == [("a", "")]
    conn.close()
    with pytest.raises(StoreError, match="newer"):  # this code only knows v1 and v2
        RunStore.open(tmp_path)


def test_a_v1_store_gains_the_install_columns(tmp_path: Path) -> None:
    from fleet.store import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "arcfleet.db", isolation_level=None)
    assert migrate(conn, MIGRATIONS[:1]) == 1  # a store written before the install stage
    conn.execute("INSERT INTO runs (id, root_run_id, kind, started_at, status, command_line, "
                 "inventory_paths, inventory_digest, playbook, options) VALUES ('r1', 'r1', "
                 "'onboard', '2026-01-01T00:00:00Z', 'finished', 'x', '[]', 'd', 'onboard', "
                 "'{}')")
    conn.execute("INSERT INTO outcomes (run_id, host, address, transport, os, status, category,"
                 " cause, fix, message, correlation_id, attempts, remediations, transcript_file,"
                 " started_at, finished_at, duration_s, rule, action) VALUES ('r1', 'old', "
                 "'10.0.0.1', 'ssh', 'linux', 'failed', 'network', 'c', 'f', '', '', 1, '[]', "
                 "'', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', 1.0, 'code', 'retry')")
    conn.close()
    with RunStore.open(tmp_path) as store:  # migrates to v2 on open
        run_id = start(store, ["new"])
        store.record_outcome(run_id, replace(outcome("new", Category.CONNECTED),
                                             agent_version_before=None,
                                             agent_version_after="1.51.03008.304",
                                             install="installed"))
        old = store.host_history("old")[0]
        new = store.final_outcomes(run_id)["new"]
    assert (old.agent_version_before, old.agent_version_after, old.install) == ("", "", "")
    assert (new.agent_version_after, new.install) == ("1.51.03008.304", "installed")
    conn = sqlite3.connect(tmp_path / "arcfleet.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)

    def broken(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        migrate(conn, (broken,))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    conn.close()


def test_synchronous_full_or_normal_only(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, synchronous="FULL") as store:
        run_id = start(store, ["a"])
        store.record_outcome(run_id, outcome("a", Category.CONNECTED))
    with pytest.raises(StoreError, match="synchronous"):
        RunStore.open(tmp_path, synchronous="OFF")


def test_install_columns_round_trip(store: RunStore) -> None:
    run_id = start(store, ["fresh", "old", "plain"])
    store.record_outcome(run_id, replace(outcome("fresh", Category.CONNECTED),
                                         agent_version_after="1.51.03008.304", install="installed"))
    store.record_outcome(run_id, replace(outcome("old", Category.CONNECTED),
                                         agent_version_before="1.40.02664.1629",
                                         agent_version_after="1.51.03008.304", install="upgraded"))
    store.record_outcome(run_id, outcome("plain", Category.NETWORK))
    rows = store.final_outcomes(run_id)
    assert [(r.agent_version_before, r.agent_version_after, r.install) for r in rows.values()] == [
        ("", "1.51.03008.304", "installed"),
        ("1.40.02664.1629", "1.51.03008.304", "upgraded"),
        ("", "", ""),
    ]

"""The store on disk: survives SIGKILL, serves a concurrent reader, stays owner-only."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.azcm.diagnosis import Category
from fleet.report import render_csv, report_rows
from fleet.store import RunStore
from tests.store_helpers import outcome, start

ROOT = Path(__file__).resolve().parent.parent


def _writer(state_dir: Path, count: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store_helpers", "write", str(state_dir), str(count),
         *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
    )


def test_sigkill_loses_nothing_committed(tmp_path: Path) -> None:
    child = _writer(tmp_path, 20_000)
    assert child.stdout is not None
    run_id = child.stdout.readline().split()[1]
    committed = []
    for line in child.stdout:
        committed.append(line.split()[1])
        if len(committed) == 60:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(tmp_path / "arcfleet.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with RunStore.open(tmp_path, create=False) as store:
        final = store.final_outcomes(run_id)
        assert set(committed) <= set(final)  # every outcome reported committed is there
        assert all(final[h].category == "network" for h in committed)
        in_flight, pending = store.unfinished_hosts(run_id)
        assert len(final) + len(in_flight) + len(pending) == 20_000
        assert len(in_flight) <= 1
        # The writer is gone without finishing: the run reads as crashed.
        run = store.get_run(run_id)
        assert run is not None and run.status == "crashed" and run.finished_at is None
        assert set(in_flight) | set(pending) <= set(store.hosts_to_rerun(run_id))


def test_concurrent_reader_while_a_process_writes(tmp_path: Path) -> None:
    child = _writer(tmp_path, 3000, "1000")
    assert child.stdout is not None and child.stdin is not None
    run_id = child.stdout.readline().split()[1]
    lines = []
    while (line := child.stdout.readline()) != "paused\n":
        lines.append(line)
    # The writer holds its connection open mid-run: the CLI, in a third process, reads it.
    out = subprocess.run(
        [sys.executable, "-m", "fleet", "report", run_id, "--state-dir", str(tmp_path),
         "--format", "json", "--all"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    mid = json.loads(out.stdout)
    assert [h["category"] for h in mid[:1000]] == ["network"] * 1000
    assert {h["status"] for h in mid[1000:]} == {"interrupted"} and len(mid) == 3000
    assert "still running" in mid[-1]["cause"]
    child.stdin.write("go\n")
    child.stdin.flush()
    seen: list[int] = []
    try:
        while child.poll() is None:  # read continuously while the writer commits
            with RunStore.open(tmp_path, create=False) as reader:
                seen.append(len(reader.final_outcomes(run_id)))
                reader.list_runs()
                render_csv(report_rows(reader, run_id, all_hosts=True))
    finally:
        rest = child.stdout.read()
        child.wait()
        child.stdout.close()
        child.stdin.close()
    assert child.returncode == 0 and rest.rstrip().endswith("done")
    assert len(lines) == 1000 and seen and seen[0] >= 1000
    assert seen == sorted(seen)  # the reader only ever saw committed, growing state
    with RunStore.open(tmp_path, create=False) as store:
        assert len(store.final_outcomes(run_id)) == 3000
        assert store.list_runs()[0].status == "finished"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_dir_and_files_are_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = os.umask(0o022)
    try:
        with RunStore.open(state) as store:
            run_id = start(store, ["a"])
            store.record_outcome(run_id, outcome("a", Category.NETWORK))
            assert _mode(state) == 0o700
            assert _mode(state / "runs") == 0o700
            assert _mode(state / "runs" / run_id) == 0o700
            files = ["arcfleet.db", "arcfleet.db-wal", "arcfleet.db-shm"]
            for name in files:
                assert _mode(state / name) == 0o600, name
            assert os.umask(0o022) == 0o022  # the store restored the process umask
    finally:
        os.umask(old)


def test_an_existing_open_state_dir_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    RunStore.open(state).close()
    assert _mode(state) == 0o700


@pytest.mark.parametrize("status", ["finished", "interrupted"])
def test_finished_runs_keep_their_status(tmp_path: Path, status: str) -> None:
    with RunStore.open(tmp_path) as store:
        run_id = start(store, ["a"])
        store.finish_run(run_id, status)
        run = store.get_run(run_id)
        assert run is not None and run.status == status and run.finished_at

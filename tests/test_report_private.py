"""Issue 16 item 8: every report file arcfleet writes is owner-only, whatever was at the path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fleet.azcm.diagnosis import Category
from fleet.store import RunStore
from tests.run_support import arcfleet
from tests.store_helpers import outcome, start


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state_dir = tmp_path / "state"
    with RunStore.open(state_dir) as store:
        run = start(store, ["web1", "web2"])
        store.record_outcome(run, outcome("web1", Category.NETWORK, cause="proxy"))
        store.record_outcome(run, outcome("web2", Category.CONNECTED))
        store.finish_run(run, "finished")
    return state_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("flag", [["--csv"], ["--format", "junit", "--output"],
                                  ["--format", "json", "--output"]])
def test_an_existing_0644_report_ends_0600(state: Path, tmp_path: Path, flag: list[str]) -> None:
    target = tmp_path / "out" / "report.file"
    target.parent.mkdir()
    target.write_text("old world-readable content\n", encoding="utf-8")
    target.chmod(0o644)
    done = arcfleet("report", *flag, str(target), "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    assert _mode(target) == 0o600
    assert "web1" in target.read_text(encoding="utf-8")
    # No temporary file is left beside it.
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.file"]


def test_a_new_report_is_0600_even_with_a_permissive_umask(state: Path, tmp_path: Path) -> None:
    target = tmp_path / "new.csv"
    old = os.umask(0)
    try:
        done = arcfleet("report", "--csv", str(target), "--state-dir", str(state))
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    assert _mode(target) == 0o600


def test_a_symlink_at_the_target_is_refused_and_not_followed(state: Path,
                                                              tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n", encoding="utf-8")
    victim.chmod(0o644)
    link = tmp_path / "report.csv"
    link.symlink_to(victim)
    done = arcfleet("report", "--csv", str(link), "--state-dir", str(state))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and str(link) in done.stderr
    assert "symbolic link" in done.stderr and "Traceback" not in done.stderr
    assert victim.read_text(encoding="utf-8") == "keep me\n" and _mode(victim) == 0o644
    assert link.is_symlink()


def test_failures_csv_of_a_run_is_0600(state: Path) -> None:
    with RunStore.open(state) as store:
        folder = store.run_folder(store.latest_run_id() or "")
    failures = folder / "failures.csv"
    failures.write_text("stale\n", encoding="utf-8")
    failures.chmod(0o644)
    from fleet.report import write_failures_csv

    with RunStore.open(state) as store:
        written = write_failures_csv(store, store.latest_run_id() or "")
    assert written == failures and _mode(failures) == 0o600

"""`arcfleet report`, `runs` and `show` as subprocesses against a store the test fills."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import JUnitXml

from fleet.azcm.diagnosis import Category
from fleet.redact import forget_secrets, register_secret
from fleet.report import CSV_COLUMNS
from fleet.store import RunStore
from tests.store_helpers import attempt, outcome, start

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "Sentinel-S3cr3t-7f1d9c"


def arcfleet(*args: str, env: dict[str, str] | None = None,
             cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    full_env.pop("ARCFLEET_STATE_DIR", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd)


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """A store with a root run and a rerun; a registered secret was in every text field."""
    state = tmp_path / "state"
    register_secret(SENTINEL)
    try:
        with RunStore.open(state) as store:
            record = store.start_run(
                kind="onboard",
                command_line=["arcfleet", "onboard", "--sp-secret", SENTINEL],
                inventory_paths=["inv.yaml"], inventory_digest="sha256:1", playbook="default",
                options={"azure": {"secret": SENTINEL, "region": "westeurope"}, "forks": 5},
                hosts=[("web1", "127.0.9.1", "ssh", "linux"), ("web2", "127.0.9.2", "ssh", "linux"),
                       ("win1", "127.0.9.3", "winrm", "windows")],
            )
            root = record.id
            store.host_started(root, "web1")
            store.record_attempt(root, "web1", attempt(f"azcmagent connect --x {SENTINEL}",
                                                       exit_status=16))
            store.record_outcome(root, outcome(
                "web1", Category.CREDENTIALS, code="AZCM0016",
                cause=f"secret {SENTINEL} expired", fix="create a new secret",
                message=f"AADSTS7000215: Invalid client secret {SENTINEL}, \"q\"",
                transcript_file=str(record.folder / "web1.log"), exit_code=16,
            ))
            store.record_outcome(root, outcome("web2", Category.CONNECTED))
            store.record_outcome(root, outcome("win1", Category.NETWORK, cause="proxy",
                                               transport="winrm", os_name="windows"))
            store.finish_run(root, "finished")
            rerun = start(store, ["win1"], kind="rerun", parent_run_id=root)
            store.record_outcome(rerun, outcome("win1", Category.TIMEOUT, cause="took too long",
                                                transport="winrm", os_name="windows"))
            store.finish_run(rerun, "finished")
        yield state, root, rerun
    finally:
        forget_secrets()


def test_report_prints_the_summary_of_the_latest_root(filled: tuple[Path, str, str]) -> None:
    state, root, _ = filled
    out = arcfleet("report", "--state-dir", str(state))
    assert out.returncode == 0, out.stderr
    assert f"run {root} + 1 rerun (finished)" in out.stdout
    assert "AZCM0016" in out.stdout and "timeout" in out.stdout
    assert f"arcfleet rerun {root} --state-dir {state}" in out.stdout


def test_report_state_dir_from_environment(filled: tuple[Path, str, str]) -> None:
    state, root, _ = filled
    out = arcfleet("report", env={"ARCFLEET_STATE_DIR": str(state)})
    assert out.returncode == 0, out.stderr
    assert root in out.stdout


def test_report_of_a_rerun_id_reports_its_root(filled: tuple[Path, str, str]) -> None:
    state, root, rerun = filled
    out = arcfleet("report", rerun, "--state-dir", str(state))
    assert out.returncode == 0 and f"run {root}" in out.stdout


def test_report_writes_csv_and_junit(filled: tuple[Path, str, str], tmp_path: Path) -> None:
    state, root, _ = filled
    csv_path, junit_path = tmp_path / "out" / "f.csv", tmp_path / "j.xml"
    out = arcfleet("report", root, "--state-dir", str(state), "--csv", str(csv_path), "--bom",
                   "--format", "junit", "--output", str(junit_path))
    assert out.returncode == 0, out.stderr
    raw = csv_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert [(r["host"], r["category"]) for r in rows] == [
        ("web1", "credentials"), ("win1", "timeout")]
    assert list(rows[0]) == list(CSV_COLUMNS)
    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit_path)) for case in suite}
    assert set(cases) == {"web1", "web2", "win1"} and cases["web2"].is_passed
    assert f"wrote {csv_path}" in out.stdout


def test_report_json_to_stdout_keeps_summary_on_stderr(filled: tuple[Path, str, str]) -> None:
    state, _, rerun = filled
    out = arcfleet("report", "--state-dir", str(state), "--format", "json", "--all")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [d["host"] for d in data] == ["web1", "web2", "win1"]
    assert data[2]["run_id"] == rerun and data[0]["exit_code"] == 16
    assert "rerun" in out.stderr


def test_runs_lists_runs(filled: tuple[Path, str, str]) -> None:
    state, root, rerun = filled
    out = arcfleet("runs", "--state-dir", str(state))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    root_line = next(line for line in lines if line.startswith(f"│ {root}"))
    rerun_line = next(line for line in lines if line.startswith(f"│ {rerun}"))
    assert "onboard" in root_line and "finished" in root_line
    assert "rerun" in rerun_line and root in rerun_line
    cells = [c.strip() for c in root_line.strip("│").split("│")]
    assert cells[6:] == ["3", "1", "0", "2", "0", "0", "0"]  # hosts, success, ready, failed, ...


def test_show_host_history_with_transcripts(filled: tuple[Path, str, str]) -> None:
    state, root, rerun = filled
    out = arcfleet("show", "win1", "--state-dir", str(state))
    assert out.returncode == 0, out.stderr
    assert root in out.stdout and rerun in out.stdout
    assert "network" in out.stdout and "timeout" in out.stdout
    assert "transcript: runs/x/win1.log" in out.stdout
    web1 = arcfleet("show", "web1", "--state-dir", str(state))
    assert str(state / "runs" / root / "web1.log") in web1.stdout
    assert "#1 connect exit=16" in web1.stdout


def test_secret_is_nowhere_on_disk_or_in_output(filled: tuple[Path, str, str],
                                                tmp_path: Path) -> None:
    state, root, _ = filled
    outputs = [
        arcfleet("report", "--state-dir", str(state), "--all", "--format", fmt)
        for fmt in ("csv", "json", "junit")
    ]
    outputs += [arcfleet("runs", "--state-dir", str(state)),
                arcfleet("show", "web1", "--state-dir", str(state))]
    for out in outputs:
        assert out.returncode == 0, out.stderr
        assert SENTINEL not in out.stdout and SENTINEL not in out.stderr
    assert "***" in outputs[0].stdout  # the text around the secret is kept
    for path in state.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path
    with RunStore.open(state, create=False) as store:
        run = store.get_run(root)
        assert run is not None
        assert run.command_line == ["arcfleet", "onboard", "--sp-secret", "***"]
        assert run.options["azure"] == {"secret": "***", "region": "westeurope"}


@pytest.mark.parametrize("args", [["report"], ["runs"], ["show", "web1"]])
def test_empty_or_missing_store_is_a_one_line_error(tmp_path: Path, args: list[str]) -> None:
    missing = arcfleet(*args, "--state-dir", str(tmp_path / "none"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "no runs recorded" in missing.stderr
    assert not (tmp_path / "none").exists()
    RunStore.open(tmp_path / "empty").close()
    empty = arcfleet(*args, "--state-dir", str(tmp_path / "empty"))
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1, empty.stderr


def test_unknown_run_id_or_host_is_exit_2(filled: tuple[Path, str, str]) -> None:
    state, _, _ = filled
    out = arcfleet("report", "19990101-000000-beef", "--state-dir", str(state))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "RUN_ID" in out.stderr and "no run 19990101-000000-beef" in out.stderr
    nobody = arcfleet("show", "nobody", "--state-dir", str(state))
    assert nobody.returncode == 2 and "nobody" in nobody.stderr


def test_default_state_dir_is_dot_arcfleet(filled: tuple[Path, str, str]) -> None:
    state, root, _ = filled
    (state.parent / ".arcfleet").symlink_to(state)
    out = arcfleet("report", cwd=state.parent)
    assert out.returncode == 0, out.stderr
    # The default needs no --state-dir in the rerun command.
    assert out.stdout.rstrip().endswith(f"arcfleet rerun {root}")

"""Helpers for tests that drive the arcfleet CLI as a subprocess against a lab in a thread."""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from fleet.lab.fleet import LabFleet

ROOT = Path(__file__).resolve().parent.parent

# A playbook that keeps lab runs short: few, fast retries; no breaker (the tests choose how many
# hosts fail); no pacing.
FAST_PLAYBOOK = """\
name: fast-lab
description: onboard with short waits, for tests against the lab
mode: onboard
attempts: 2
backoff: {initial_s: 0.05, max_s: 0.1, multiplier: 2}
deadlines: {connect_timeout_s: 10, command_s: 20, agent_connect_s: 30, host_s: 120}
remediations: [restart_agent_service]
breaker: {threshold: 0}
pacing: {forks: 50, connect_rate_per_s: 0, connect_burst: 100}
"""

# Columns whose values differ between two runs of the same scenario by nature.
VOLATILE_COLUMNS = ("correlation_id", "log_file", "started_at", "finished_at", "duration_s")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?")


def write_playbook(directory: Path, text: str = FAST_PLAYBOOK) -> Path:
    path = directory / "fast-lab.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The operator's defaults must not leak in: a narrow terminal, no state dir from outside.
    env.pop("ARCFLEET_STATE_DIR", None)
    env.pop("COLUMNS", None)
    env.update(extra or {})
    return env


def arcfleet(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``arcfleet ARGS`` to completion, as an operator runs it (not on a terminal)."""
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True,
                          text=True, env=cli_env(), cwd=ROOT, timeout=timeout)


def spawn_arcfleet(*args: str, stdout: int | IO[str] | None = subprocess.PIPE,
                   stderr_path: Path | None = None) -> subprocess.Popen[str]:
    """``arcfleet ARGS`` in the background; stdout piped (for --json lines) by default."""
    stderr = stderr_path.open("w", encoding="utf-8") if stderr_path else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "fleet", *args], stdout=stdout,
                                stderr=stderr, text=True, env=cli_env(), cwd=ROOT)
    finally:
        if stderr_path:
            stderr.close()  # type: ignore[union-attr]


def arcfleet_on_path(directory: Path) -> dict[str, str]:
    """An environment whose PATH has an ``arcfleet`` that is this tree's console script."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "arcfleet"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fleet "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return cli_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})


def onboard_args(lab: LabFleet, state_dir: Path, playbook: Path, *extra: str) -> list[str]:
    return ["onboard", "-i", str(lab.inventory_path), "--playbook", str(playbook),
            "--state-dir", str(state_dir), "--connect-rate", "0", *extra]


def contacted(lab: LabFleet) -> dict[str, int]:
    """Per lab host: how many commands it has received so far (its command record)."""
    return lab.call(lambda: {name: len(host.commands) for name, host in lab.hosts.items()})


def successful_connects(lab: LabFleet) -> dict[str, int]:
    """Per lab host: how many ``azcmagent connect`` calls ended with exit status 0."""
    return lab.call(lambda: {
        name: sum(call.exit_status == 0 for call in host.connect_calls)
        for name, host in lab.hosts.items()
    })


def connect_attempts(lab: LabFleet) -> dict[str, int]:
    """Per lab host: how many ``azcmagent connect`` calls connected it or were sent to an agent
    that was connected already. "Nobody is connected twice" counts these: a repeated connect
    fails (AZCM0067) and would be missed by counting successes only. A connect that failed
    on a disconnected agent (a transient error, then retried) or was cancelled mid-way (its
    client killed) may rightly be followed by another."""
    return lab.call(lambda: {
        name: sum(call.exit_status == 0 or call.agent_was_connected
                  for call in host.connect_calls)
        for name, host in lab.hosts.items()
    })


def rerun_command_of(stderr: str) -> str:
    """The rerun command a run's summary printed (one line, as the operator copies it)."""
    marker = "rerun the hosts that are not connected: "
    lines = [line for line in stderr.splitlines() if line.startswith(marker)]
    assert len(lines) == 1, stderr
    return lines[0][len(marker):].strip()


def failures_csv_of(stderr: str) -> Path:
    lines = [line for line in stderr.splitlines() if line.startswith("failures CSV: ")]
    assert len(lines) == 1, stderr
    return Path(lines[0].removeprefix("failures CSV: ").strip())


def run_id_of(stderr: str) -> str:
    match = re.search(r"^run (\S+): \d+ hosts", stderr, re.M)
    assert match, stderr
    return match.group(1)


def stable_rows(csv_text: str) -> dict[str, dict[str, str]]:
    """CSV rows by host without the volatile columns; ids and timestamps in text masked."""
    rows: dict[str, dict[str, str]] = {}
    for row in csv.DictReader(io.StringIO(csv_text.lstrip("\ufeff"), newline="")):
        kept = {}
        for column, value in row.items():
            if column in VOLATILE_COLUMNS:
                continue
            kept[column] = _STAMP.sub("<time>", _GUID.sub("<guid>", value))
        assert row["host"] not in rows, f"{row['host']} listed twice"
        rows[row["host"]] = kept
    return rows


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def collect_lines(proc: subprocess.Popen[str], into: list[str]) -> threading.Thread:
    """Append each line the process prints to ``into``, from a daemon thread (so a test can
    wait for output while the process runs)."""

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            into.append(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread

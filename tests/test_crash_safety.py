"""SIGKILL at random moments, over and over, never corrupts the store or loses a finished host.

arcfleet runs a 200-host lab fleet; the test kills it at a random moment (start-up, store
creation, mid-run, the summary), checks the store, resumes, kills again, and so on; when a fleet
is done it starts over on a reset lab. After every kill: ``PRAGMA integrity_check`` is ok, and
every host whose ``--json`` line was printed has that outcome in the store. At the end each fleet
has every host accounted for exactly once and no host connected twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from fleet.store import RunStore
from tests.run_support import (
    arcfleet,
    collect_lines,
    connect_attempts,
    integrity,
    onboard_args,
    spawn_arcfleet,
    write_playbook,
)

HOSTS = 200
KILLS = 22
MID_RUN_KILLS = KILLS // 3  # at least this many land after hosts finished
MAX_KILLS = 3 * KILLS  # a bound on the loop, should mid-run kills keep missing


def _plan() -> ScenarioPlan:
    spread = ([Scenario(ScenarioKind.WRONG_SECRET)] * 10
              + [Scenario(ScenarioKind.TRANSIENT, fail_times=1)] * 10
              + [Scenario(ScenarioKind.ALREADY_CONNECTED)] * 10)
    return ScenarioPlan(default=Scenario(), spread=tuple(spread))


def _query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def _wait_for_output(proc: subprocess.Popen[str], lines: list[str]) -> None:
    while not lines and proc.poll() is None:
        time.sleep(0.02)


def _latest_run(db: Path) -> tuple[str, str] | None:
    """(id, status) of the latest run, the status as arcfleet reads it (dead writer: crashed)."""
    if not db.exists():
        return None
    with RunStore.open(db.parent, create=False) as store:
        latest = store.latest_run_id(root_only=False)
        record = store.get_run(latest) if latest else None
    return (record.id, record.status) if record else None


def _check_fleet(db: Path, root: str, connects: dict[str, int]) -> None:
    """Every host of the fleet has exactly one outcome across the run and its resumes, and
    ``connects`` (connects during this fleet that connected the host or hit an agent already
    connected, see run_support.connect_attempts) is at most one per host."""
    counts: dict[str, int] = dict(_query(
        db, "SELECT o.host, COUNT(*) FROM outcomes o JOIN runs r ON r.id = o.run_id"
        " WHERE r.root_run_id = ? GROUP BY o.host", root))
    assert len(counts) == HOSTS, f"{root}: {HOSTS - len(counts)} host(s) without an outcome"
    assert set(counts.values()) == {1}, f"{root}: two outcomes: {counts}"
    twice = {host: n for host, n in connects.items() if n > 1}
    assert not twice, f"{root}: connected more than once: {twice}"


@pytest.mark.slow
def test_random_sigkills_never_corrupt_the_store_or_lose_an_outcome(tmp_path: Path) -> None:
    seed = int(os.environ.get("ARCFLEET_CRASH_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    playbook = write_playbook(tmp_path)
    state = tmp_path / "state"
    db = state / "arcfleet.db"
    kills = 0
    mid_run = 0  # kills that landed after some hosts finished
    fleets_done = 0
    with LabFleet.in_thread(tmp_path / "lab", hosts=HOSTS, plan=_plan(), subnet="127.63",
                            latency_s=0.4) as lab:
        scenarios = lab.call(lambda: {n: h.scenario for n, h in lab.hosts.items()})
        connects_at_start = connect_attempts(lab)
        resume = False
        def more_kills() -> bool:
            return kills < MAX_KILLS and (kills < KILLS or mid_run < MID_RUN_KILLS)

        while more_kills() or resume:
            before = _latest_run(db)
            proc = spawn_arcfleet(*(
                ["onboard", "-i", str(lab.inventory_path), "--resume", "--state-dir",
                 str(state), "--json"] if resume
                else onboard_args(lab, state, playbook, "--json")))
            lines: list[str] = []
            pump = collect_lines(proc, lines)
            killed = False
            if more_kills():
                # Half the kills at any moment from start-up on, half once hosts finish. The
                # delay after the first line stays short: a resumed run with few hosts left
                # ends within a second, and a kill after its end tests nothing mid-run.
                if rng.random() < 0.5 or (kills >= KILLS and mid_run < MID_RUN_KILLS):
                    _wait_for_output(proc, lines)
                    delay = rng.uniform(0.0, 0.4)
                else:
                    delay = rng.uniform(0.1, 2.5)
                try:
                    proc.wait(delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    kills += 1
            proc.wait(300)
            pump.join(10)
            detail = f"(seed {seed}, kill {kills}, resume={resume})"
            if db.exists():
                assert integrity(db) == "ok", f"integrity {detail}"
            if not killed:
                assert proc.returncode in (0, 1), f"exit {proc.returncode} {detail}"
            after = _latest_run(db)
            new_run = after if after is not None and after != before else None
            printed = [json.loads(line) for line in lines if line.strip()]
            if printed:
                assert new_run is not None, f"printed without a new run {detail}"
                stored = {host: (status, category) for host, status, category in _query(
                    db, "SELECT host, status, category FROM outcomes WHERE run_id = ?",
                    new_run[0])}
                for item in printed:
                    assert stored.get(item["host"]) == (item["status"], item["category"]), (
                        f"{item['host']} printed its outcome, the store has "
                        f"{stored.get(item['host'])} {detail}")
            if killed and new_run is not None:
                # finished: the kill landed after the run recorded its end (the summary).
                assert new_run[1] in ("crashed", "finished"), f"{new_run} after a kill {detail}"
                mid_run += bool(printed)
            if new_run is None and (killed or not resume):
                continue  # died before recording its run: do the same again
            if new_run is not None and new_run[1] == "crashed":
                resume = True
                continue
            # The fleet is done (a resume found nothing left, or a run finished).
            root = _query(db, "SELECT root_run_id FROM runs ORDER BY seq DESC LIMIT 1")[0][0]
            now = connect_attempts(lab)
            _check_fleet(db, str(root), {h: now[h] - connects_at_start[h] for h in now})
            fleets_done += 1
            resume = False
            if more_kills():  # a fresh fleet: every agent back to its scenario's start
                for name, scenario in scenarios.items():
                    lab.set_scenario(name, scenario)
                connects_at_start = connect_attempts(lab)
    print(f"seed {seed}: {kills} kills, {mid_run} mid-run, {fleets_done} fleet(s) done")
    assert kills >= KILLS and fleets_done >= 1 and mid_run >= MID_RUN_KILLS
    assert integrity(db) == "ok"
    listed = arcfleet("runs", "--state-dir", str(state))
    assert listed.returncode == 0 and "crashed" in listed.stdout, listed.stderr

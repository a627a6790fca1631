"""`onboard --resume` after SIGKILL and after Ctrl-C, against the lab.

The SIGKILL test kills arcfleet in the middle of a 200-host run at a moment chosen so that one
host's `azcmagent connect` has finished on the host but arcfleet has not recorded the outcome
(the lab holds that host's next `show --json`). The resume must find it connected and not
connect it again, account for every host exactly once, and end with the same CSV as an
uninterrupted run of the same scenario.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.lab.agent import simulator
from fleet.lab.fleet import LabFleet
from fleet.lab.host import LabHost
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from fleet.store import RunStore
from tests.run_support import (
    arcfleet,
    collect_lines,
    connect_attempts,
    failures_csv_of,
    onboard_args,
    spawn_arcfleet,
    stable_rows,
    successful_connects,
    write_playbook,
)

HOSTS = 200
HELD = "lab-0150"  # a plain success host, late enough that the kill lands mid-run


def _plan() -> ScenarioPlan:
    # Every scenario here ends the same way however often it is tried: the final CSV of a
    # resumed run can then be compared with an uninterrupted one.
    spread: list[Scenario] = []
    # (Not agent_missing: the install stage connects it now, and whether an interrupted run
    # had installed it changes its install column.)
    for kind, count in ((ScenarioKind.WRONG_SECRET, 8), (ScenarioKind.SUDO_PASSWORD, 8),
                        (ScenarioKind.ALREADY_CONNECTED, 8), (ScenarioKind.RBAC_403, 8),
                        (ScenarioKind.NOT_ROOT, 6), (ScenarioKind.CONNECTED_ELSEWHERE, 6)):
        spread += [Scenario(kind)] * count
    spread += [Scenario(ScenarioKind.AZCM, code="AZCM0044")] * 6
    return ScenarioPlan(default=Scenario(), spread=tuple(spread),
                        hosts=((HELD, Scenario()),))


class _HoldVerify:
    """Lab hook: the first `show` a host answers once connected (arcfleet's verify) never
    returns, so arcfleet is stuck after the connect succeeded and before the outcome."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reached = threading.Event()
        self._original = simulator._dispatch

    async def __call__(self, command: str, rest: list[str], flags: dict[str, str | bool],
                       host: LabHost, console: Any, elevated: bool) -> int:
        if command == "show" and host.name == self.name and host.state.connected \
                and not self.reached.is_set():
            self.reached.set()
            await asyncio.Event().wait()  # until the channel closes (the kill)
        return await self._original(command, rest, flags, host, console, elevated)


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch) -> Iterator[_HoldVerify]:
    hook = _HoldVerify(HELD)
    monkeypatch.setattr(simulator, "_dispatch", hook)
    yield hook


def _comparable(csv_text: str, subnet: str) -> dict[str, dict[str, str]]:
    rows = stable_rows(csv_text)
    for row in rows.values():
        row["address"] = row["address"].replace(f"{subnet}.", "127.N.")
    return rows


def _outcome_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT host, COUNT(*) FROM outcomes GROUP BY host").fetchall())
    finally:
        conn.close()


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(
        tmp_path: Path, hold: _HoldVerify) -> None:
    playbook = write_playbook(tmp_path)
    state = tmp_path / "state"
    with LabFleet.in_thread(tmp_path / "lab", hosts=HOSTS, plan=_plan(), subnet="127.62",
                            latency_s=0.3) as lab:
        proc = spawn_arcfleet(*onboard_args(lab, state, playbook, "--json"),
                              stderr_path=tmp_path / "killed.err")
        lines: list[str] = []
        pump = collect_lines(proc, lines)
        try:
            assert hold.reached.wait(120), "the held host never connected"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            pump.join(10)
        printed = len(lines)
        assert 0 < printed < HOSTS, f"the kill did not land mid-run ({printed} lines)"
        assert successful_connects(lab)[HELD] == 1

        with RunStore.open(state, create=False) as store:
            root = store.latest_run_id()
            assert root is not None
            record = store.get_run(root)
            assert record is not None and record.status == "crashed"
            in_flight, pending = store.unfinished_hosts(root)
            # Every printed host has its outcome stored; a host whose outcome was committed
            # when the kill came, before its line was printed, is finished too (the store is
            # written first), so the store may hold one outcome more than was printed.
            unfinished = set(in_flight) | set(pending)
            printed_hosts = {json.loads(line)["host"] for line in lines if line.strip()}
            assert HELD in in_flight and not printed_hosts & unfinished
            stored = HOSTS - len(unfinished)
            assert printed <= stored <= printed + 1, (printed, stored)  # one loop, one host
            held_steps = store.attempts_for(root, HELD)
            assert [s.exit_status for s in held_steps if s.stage == "connect"][-1] == 0

        resumed = arcfleet("onboard", "-i", str(lab.inventory_path), "--resume",
                           "--state-dir", str(state), "--json")
        assert resumed.returncode in (0, 1), resumed.stderr
        resumed_hosts = [line for line in resumed.stdout.splitlines() if line.strip()]
        assert len(resumed_hosts) == HOSTS - stored
        assert failures_csv_of(resumed.stderr).parent.parent == state / "runs"

        # Nobody was connected twice, the held host included: its agent said Connected.
        connects = connect_attempts(lab)
        assert max(connects.values()) == 1
        assert connects[HELD] == 1
        counts = _outcome_counts(state / "arcfleet.db")
        assert len(counts) == HOSTS and set(counts.values()) == {1}
        killed_csv = arcfleet("report", "--all", "--format", "csv", "--state-dir", str(state))
        assert killed_csv.returncode == 0, killed_csv.stderr
        killed_failures = failures_csv_of(resumed.stderr).read_text(encoding="utf-8")

    with RunStore.open(state, create=False) as store:
        runs = store.runs_under(root)
        assert [(r.kind, r.parent_run_id, r.status) for r in runs] == [
            ("onboard", None, "crashed"), ("resume", root, "finished")]
        held = store.final_outcomes(root)[HELD]
        assert (held.category, held.attempts, held.exit_code, held.run_id) == (
            "connected", 1, 0, runs[1].id)

    # The same scenario without a kill, on a fresh lab.
    reference_state = tmp_path / "reference"
    hold.reached.set()  # the hook holds nobody now
    with LabFleet.in_thread(tmp_path / "lab2", hosts=HOSTS, plan=_plan(), subnet="127.63",
                            latency_s=0.3) as lab2:
        whole = arcfleet(*onboard_args(lab2, reference_state, playbook))
        assert whole.returncode == 1, whole.stderr
        reference_csv = arcfleet("report", "--all", "--format", "csv",
                                 "--state-dir", str(reference_state))
        reference_failures = failures_csv_of(whole.stderr).read_text(encoding="utf-8")
    assert _comparable(killed_csv.stdout, "127.62") == _comparable(reference_csv.stdout,
                                                                    "127.63")
    assert _comparable(killed_failures, "127.62") == _comparable(reference_failures, "127.63")
    # 8+8+8+6+6+6: every scenario of the plan but already_connected and success fails.
    assert len(list(csv.DictReader(io.StringIO(reference_failures)))) == 42


def test_ctrl_c_then_resume_finishes_only_what_was_left(tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path)
    state = tmp_path / "state"
    # lab-0001 hangs in connect: the run is still going whenever the test looks.
    plan = ScenarioPlan(default=Scenario(), hosts=(("lab-0001", Scenario(ScenarioKind.HANG)),))
    with LabFleet.in_thread(tmp_path / "lab", hosts=16, plan=plan, subnet="127.62",
                            latency_s=0.5) as lab:
        proc = spawn_arcfleet(*onboard_args(lab, state, playbook, "--json", "--forks", "4"),
                              stderr_path=tmp_path / "first.err")
        lines: list[str] = []
        pump = collect_lines(proc, lines)
        try:
            # While it runs, nothing else may drive the same fleet from this store.
            while not (state / "arcfleet.db").exists() or not lines:
                if proc.poll() is not None:
                    break
                threading.Event().wait(0.05)
            inventory = str(lab.inventory_path)
            for args in (["onboard", "-i", inventory, "--resume"], ["rerun"],
                         ["onboard", "-i", inventory, "--limit", "@failed"]):
                busy = arcfleet(*args, "--state-dir", str(state))
                assert busy.returncode == 2 and "still running" in busy.stderr, busy.stderr
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 130
            pump.join(10)
        stopped = [json.loads(line)["host"] for line in lines if '"interrupted"' in line]
        finished = len(lines) - len(stopped)
        assert "lab-0001" in stopped and finished < 16

        lab.set_scenario("lab-0001", Scenario())

        resumed = arcfleet("onboard", "-i", str(lab.inventory_path), "--resume",
                           "--state-dir", str(state), "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert len(resumed.stdout.splitlines()) == 16 - finished
        assert set(connect_attempts(lab).values()) == {1}

        again = arcfleet("onboard", "-i", str(lab.inventory_path), "--resume",
                         "--state-dir", str(state))
        assert again.returncode == 2 and "finished; use rerun" in again.stderr
    report = arcfleet("report", "--format", "json", "--state-dir", str(state))
    assert report.stdout.strip() == "[]" and "every host is connected" in report.stderr

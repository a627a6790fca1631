"""`arcfleet rerun` and `onboard --limit @failed` against the lab, as an operator uses them.

A mixed fleet fails for three reasons; the test fixes them one at a time on the lab, and each
rerun must contact exactly the hosts still failing (the lab's command record proves the others
were not touched) until the failed set is empty.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from fleet.store import RunStore
from tests.run_support import (
    ROOT,
    arcfleet,
    arcfleet_on_path,
    contacted,
    failures_csv_of,
    onboard_args,
    rerun_command_of,
    run_id_of,
    spawn_arcfleet,
    write_playbook,
)

SUBNET = "127.62"
CREDENTIALS = ("lab-0003", "lab-0007")
NETWORK = ("lab-0005", "lab-0010")
PERMISSIONS = ("lab-0009",)


def _plan() -> ScenarioPlan:
    named = [(n, Scenario(ScenarioKind.WRONG_SECRET)) for n in CREDENTIALS]
    named += [(n, Scenario(ScenarioKind.LOGIN_UNREACHABLE)) for n in NETWORK]
    named += [(n, Scenario(ScenarioKind.RBAC_403)) for n in PERMISSIONS]
    named += [("lab-0002", Scenario(ScenarioKind.ALREADY_CONNECTED))]
    return ScenarioPlan(default=Scenario(), hosts=tuple(named))


def _failures(path: Path) -> list[str]:
    assert path.is_file(), path
    return [row["host"] for row in csv.DictReader(io.StringIO(
        path.read_text(encoding="utf-8"), newline=""))]


def _touched(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {name for name in after if after[name] != before[name]}


def _fix(lab: LabFleet, names: tuple[str, ...]) -> None:
    for name in names:
        lab.set_scenario(name, Scenario())


def test_reruns_touch_only_failed_hosts_until_none_is_left(tmp_path: Path) -> None:
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=12, plan=_plan(), subnet=SUBNET) as lab:
        # 1. The first run: five hosts fail for three reasons. The playbook is named relative
        # to the current directory; the reruns below start elsewhere.
        first = arcfleet(*onboard_args(lab, state, Path(os.path.relpath(playbook, ROOT))))
        assert first.returncode == 1, first.stderr
        root = run_id_of(first.stderr)
        csv_path = failures_csv_of(first.stderr)
        assert csv_path == state / "runs" / root / "failures.csv"
        assert _failures(csv_path) == sorted(CREDENTIALS + NETWORK + PERMISSIONS)
        printed_rerun = rerun_command_of(first.stderr)
        assert printed_rerun.startswith(f"arcfleet rerun {root} --state-dir ")

        # 2. The network is fixed: `rerun --category network` contacts only those two hosts.
        _fix(lab, NETWORK)
        before = contacted(lab)
        network = arcfleet("rerun", "--category", "network", "--state-dir", str(state))
        assert network.returncode == 0, network.stderr
        assert _touched(before, contacted(lab)) == set(NETWORK)
        rerun1 = run_id_of(network.stderr)
        assert rerun1 != root
        assert failures_csv_of(network.stderr) == state / "runs" / rerun1 / "failures.csv"
        assert _failures(state / "runs" / rerun1 / "failures.csv") == sorted(
            CREDENTIALS + PERMISSIONS)

        # 3. The secret is fixed: `onboard --limit @failed` does what rerun does.
        _fix(lab, CREDENTIALS)
        before = contacted(lab)
        limited = arcfleet(*onboard_args(lab, state, playbook, "--limit", "@failed"))
        assert limited.returncode == 1, limited.stderr  # the RBAC host still fails
        assert _touched(before, contacted(lab)) == set(CREDENTIALS + PERMISSIONS)
        rerun2 = run_id_of(limited.stderr)
        assert _failures(failures_csv_of(limited.stderr)) == list(PERMISSIONS)
        assert failures_csv_of(limited.stderr).parent.name == rerun2

        # 4. The role is granted: the summary's rerun command, verbatim, finishes the job.
        _fix(lab, PERMISSIONS)
        command = rerun_command_of(limited.stderr)
        assert command == printed_rerun  # the same root, whatever run printed it
        before = contacted(lab)
        last = subprocess.run(command, shell=True, capture_output=True, text=True,
                              env=arcfleet_on_path(tmp_path), cwd=tmp_path, timeout=120)
        assert last.returncode == 0, last.stderr
        assert _touched(before, contacted(lab)) == set(PERMISSIONS)
        assert "every host is connected" in last.stderr
        rerun3 = run_id_of(last.stderr)
        assert _failures(failures_csv_of(last.stderr)) == []

        # 5. Nothing left: rerun says so, exits 0 and contacts nobody.
        before = contacted(lab)
        idle = arcfleet("rerun", "--state-dir", str(state))
        assert idle.returncode == 0, idle.stderr
        assert "nothing to rerun" in idle.stderr
        assert _touched(before, contacted(lab)) == set()

    with RunStore.open(state, create=False) as store:
        runs = store.runs_under(root)
        assert [(r.id, r.kind, r.parent_run_id) for r in runs] == [
            (root, "onboard", None), (rerun1, "rerun", root), (rerun2, "rerun", root),
            (rerun3, "rerun", root)]
        assert store.hosts_to_rerun(root) == []

    # `runs` lists the run and its reruns; `show` a host's history across them.
    listed = arcfleet("runs", "--state-dir", str(state))
    assert listed.returncode == 0, listed.stderr
    for run_id in (root, rerun1, rerun2, rerun3):
        assert run_id in listed.stdout
    assert listed.stdout.count(root) == 4  # its own line and as the parent of three reruns
    shown = arcfleet("show", CREDENTIALS[0], "--state-dir", str(state))
    assert shown.returncode == 0, shown.stderr
    assert root in shown.stdout and rerun2 in shown.stdout and rerun1 not in shown.stdout
    assert "credentials" in shown.stdout and "connected" in shown.stdout

    # `report` without RUN_ID: the latest root with its reruns, each host once.
    report = arcfleet("report", "--format", "json", "--all", "--state-dir", str(state))
    assert report.returncode == 0, report.stderr
    hosts = {item["host"]: item for item in json.loads(report.stdout)}
    assert len(hosts) == 12
    assert {h["status"] for h in hosts.values()} == {"success"}
    assert {n: hosts[n]["run_id"] for n in NETWORK + CREDENTIALS + PERMISSIONS} == {
        **dict.fromkeys(NETWORK, rerun1), **dict.fromkeys(CREDENTIALS, rerun2),
        **dict.fromkeys(PERMISSIONS, rerun3)}
    assert hosts["lab-0001"]["run_id"] == root
    assert hosts["lab-0002"]["category"] == "already_connected"
    failed_only = arcfleet("report", "--format", "json", "--state-dir", str(state))
    assert json.loads(failed_only.stdout) == []
    assert "+ 3 reruns (" in failed_only.stderr


def test_rerun_without_any_run_is_a_one_line_error(tmp_path: Path) -> None:
    result = arcfleet("rerun", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no run recorded" in result.stderr


def test_rerun_and_resume_keep_the_mode_of_the_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    plan = ScenarioPlan(default=Scenario(), hosts=(
        ("lab-0002", Scenario(ScenarioKind.SUDO_PASSWORD)),
        ("lab-0003", Scenario(ScenarioKind.HANG))))
    with LabFleet.in_thread(tmp_path / "lab", hosts=3, plan=plan, subnet=SUBNET) as lab:
        inventory = str(lab.inventory_path)
        lab.set_scenario("lab-0003", Scenario())
        checked = arcfleet("preflight", "-i", inventory, "--state-dir", str(state))
        assert checked.returncode == 1, checked.stderr  # lab-0002's sudo wants a password
        # Every host is "not connected" after a preflight; its rerun is a preflight again.
        again = arcfleet("rerun", "--state-dir", str(state))
        assert again.returncode == 1, again.stderr
        assert "playbook preflight" in again.stderr
        assert lab.call(lambda: sum(len(h.connect_calls) for h in lab.hosts.values())) == 0

        # An onboard run dies with lab-0003 hanging in connect; `preflight --resume` must not
        # continue it (it would connect the rest).
        lab.set_scenario("lab-0003", Scenario(ScenarioKind.HANG))
        proc = spawn_arcfleet("onboard", "-i", inventory, "--state-dir", str(state), "--json",
                              "--connect-rate", "0")
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline()  # one host finished; lab-0003 hangs
        finally:
            proc.kill()
            proc.wait(30)
        before = contacted(lab)
        refused = arcfleet("preflight", "-i", inventory, "--resume", "--state-dir", str(state))
        assert refused.returncode == 2 and "preflight playbook" in refused.stderr, refused.stderr
        assert _touched(before, contacted(lab)) == set()

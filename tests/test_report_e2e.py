"""Reports from real lab runs: awkward text end to end, and `report` while a run writes."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from junitparser import Failure, JUnitXml

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from fleet.report import CSV_COLUMNS
from tests.run_support import arcfleet, onboard_args, spawn_arcfleet, write_playbook
from tests.test_report_formats import JsonHost

# What the lab's ARM says for the RBAC host: commas, both quote kinds, non-ASCII. The agent
# prints one line per message, so the newline comes from the operator's state directory (the
# transcript path in log_file).
ARM_TEXT = 'AuthorizationFailed: Rolle „Arc Onboarding" fehlt, "rg-größe" (日本語), o\'brien'
AWKWARD_DIR = 'zustand, "größe"\nzwei'


def test_awkward_text_from_a_real_run_survives_csv_json_and_junit(tmp_path: Path) -> None:
    plan = ScenarioPlan(default=Scenario(), hosts=(
        ("lab-0002", Scenario(ScenarioKind.AZCM, code="AZCM0042", message=ARM_TEXT)),))
    state = tmp_path / AWKWARD_DIR
    playbook = write_playbook(tmp_path)
    with LabFleet.in_thread(tmp_path / "lab", hosts=3, plan=plan, subnet="127.62") as lab:
        run = arcfleet(*onboard_args(lab, state, playbook, "--json"))
        assert run.returncode == 1, run.stderr
    printed = {item["host"]: item for item in map(json.loads, run.stdout.splitlines())}
    assert ARM_TEXT in printed["lab-0002"]["message"]

    csv_file, junit_file = tmp_path / "all.csv", tmp_path / "junit.xml"
    report = arcfleet("report", "--all", "--csv", str(csv_file), "--format", "junit",
                      "--output", str(junit_file), "--state-dir", str(state))
    assert report.returncode == 0, report.stderr
    as_json = arcfleet("report", "--all", "--format", "json", "--state-dir", str(state))
    assert as_json.returncode == 0, as_json.stderr

    # CSV: RFC 4180 round trip, exact header, the awkward cells intact.
    reader = csv.DictReader(io.StringIO(csv_file.read_text(encoding="utf-8"), newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    rows = {row["host"]: row for row in reader}
    assert list(rows) == ["lab-0001", "lab-0002", "lab-0003"]
    rbac = rows["lab-0002"]
    assert ARM_TEXT in rbac["message"]
    assert (rbac["category"], rbac["azcm_code"], rbac["exit_code"]) == (
        "permissions", "AZCM0042", "42")
    assert AWKWARD_DIR in rbac["log_file"] and rbac["log_file"].endswith("lab-0002.log")
    assert Path(rbac["log_file"]).is_file()

    # JSON: every object matches the typed schema; the same text.
    objects = json.loads(as_json.stdout)
    hosts = {item["host"]: JsonHost.model_validate(item) for item in objects}
    assert ARM_TEXT in hosts["lab-0002"].message and "\n" in hosts["lab-0002"].log_file
    assert {h.status for n, h in hosts.items() if n != "lab-0002"} == {"success"}

    # JUnit: parses; the failure carries the text; passing hosts are passing cases.
    suites = list(JUnitXml.fromfile(str(junit_file)))
    assert len(suites) == 1 and suites[0].tests == 3 and suites[0].failures == 1
    cases = {case.name: case for case in suites[0]}
    assert cases["lab-0001"].is_passed and cases["lab-0003"].is_passed
    failure = cases["lab-0002"].result[0]
    assert isinstance(failure, Failure) and failure.type == "permissions"
    assert ARM_TEXT in (failure.text or "") and AWKWARD_DIR in (failure.text or "")


def _summary_counts(stderr: str) -> dict[str, int]:
    line = next(line for line in stderr.splitlines() if re.match(r"\s+\w+: \d+", line))
    return {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", line)}


def test_report_while_a_200_host_run_writes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    playbook = write_playbook(tmp_path)
    plan = ScenarioPlan(default=Scenario(), spread=(Scenario(ScenarioKind.WRONG_SECRET),) * 20)
    with LabFleet.in_thread(tmp_path / "lab", hosts=200, plan=plan, subnet="127.62",
                            latency_s=0.3) as lab:
        proc = spawn_arcfleet(*onboard_args(lab, state, playbook, "--forks", "40"),
                              stdout=None)
        done_counts: list[int] = []
        try:
            while proc.poll() is None:
                if not (state / "arcfleet.db").exists():
                    continue
                result = arcfleet("report", "--format", "json", "--all",
                                  "--state-dir", str(state))
                if result.returncode == 2 and "no runs recorded" in result.stderr:
                    continue  # the store exists, the run is not recorded yet
                assert result.returncode == 0, result.stderr
                objects = json.loads(result.stdout)
                assert len(objects) == 200
                assert len({item["host"] for item in objects}) == 200
                for item in objects:
                    JsonHost.model_validate(item)
                waiting = [item for item in objects if item["finished_at"] == ""]
                for item in waiting:
                    assert item["status"] == "interrupted" and "still running" in item["cause"]
                done = 200 - len(waiting)
                assert not done_counts or done >= done_counts[-1], "outcomes went missing"
                done_counts.append(done)
                # The summary on stderr is of the same snapshot as the rows on stdout.
                counts = _summary_counts(result.stderr)
                statuses = [item["status"] for item in objects]
                assert counts == {s: statuses.count(s) for s in set(statuses)}
        finally:
            assert proc.wait(120) == 1
    assert any(0 < n < 200 for n in done_counts), f"no report saw a partial run: {done_counts}"
    final = arcfleet("report", "--format", "json", "--state-dir", str(state))
    assert len(json.loads(final.stdout)) == 20

"""CSV, JSON and JUnit reports and the summary, rendered from a real store."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr
from rich.console import Console

from fleet.azcm.diagnosis import Category
from fleet.report import (
    CSV_COLUMNS,
    render_csv,
    render_json,
    render_junit,
    report_rows,
    write_failures_csv,
    write_report,
)
from fleet.store import RunStore
from fleet.summary import summary
from tests.store_helpers import outcome, start

TRICKY = 'fatal: "quoted", comma,\nsecond line — Größe 日本語'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    opened = RunStore.open(tmp_path / "state")
    yield opened
    opened.close()


def _fill(store: RunStore) -> str:
    root = start(store, ["ok", "cred", "tricky", "formula", "skip", "lost", "win"])
    store.record_outcome(root, outcome("ok", Category.CONNECTED))
    store.record_outcome(root, outcome(
        "cred", Category.CREDENTIALS, code="AZCM0016", cause="secret expired",
        fix="create a new client secret", message="AADSTS7000222", exit_code=16, attempts=1,
        correlation_ids=("c-1",),
    ))
    store.record_outcome(root, outcome(
        "tricky", Category.NETWORK, code="AZCM0026", cause="proxy refused, \"x\"", fix="set proxy",
        message=TRICKY, remediations=("restart_agent_service", "wait_for_himds"), attempts=3,
        exit_code=None,
    ))
    store.record_outcome(root, outcome(
        "formula", Category.UNKNOWN, cause="=HYPERLINK(\"http://evil\")", fix="+1+1",
        message="@SUM(A1)", resource_id="-2+3",
    ))
    store.record_outcome(root, outcome("skip", Category.SKIPPED, cause="circuit breaker open",
                                       exit_code=None, attempts=0))
    store.host_started(root, "lost")
    store.record_outcome(root, outcome("win", Category.ALREADY_CONNECTED, transport="winrm",
                                       os_name="windows"))
    store.finish_run(root, "interrupted")
    return root


def _parse_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return list(reader)


def test_csv_header_is_exact(store: RunStore) -> None:
    text = render_csv(report_rows(store, _fill(store)))
    assert text.splitlines()[0] == (
        "host,address,transport,os,status,category,azcm_code,exit_code,cause,fix,attempts,"
        "remediations,message,correlation_id,resource_id,log_file,started_at,finished_at,"
        "duration_s,agent_version_before,agent_version_after,install"
    )


def test_csv_lists_hosts_not_connected_in_inventory_order(store: RunStore) -> None:
    rows = _parse_csv(render_csv(report_rows(store, _fill(store))))
    assert [r["host"] for r in rows] == ["cred", "tricky", "formula", "skip", "lost"]
    assert {r["status"] for r in rows} <= {"success", "failed", "skipped", "interrupted"}
    cred = rows[0]
    assert (cred["status"], cred["category"], cred["azcm_code"], cred["exit_code"]) == (
        "failed", "credentials", "AZCM0016", "16")
    assert cred["fix"] == "create a new client secret" and cred["correlation_id"] == "c-1"
    assert cred["duration_s"] == "2.500" and cred["log_file"] == "runs/x/cred.log"
    assert cred["started_at"] == "2026-11-26T01:00:00.000+00:00"


def test_csv_all_hosts(store: RunStore) -> None:
    rows = _parse_csv(render_csv(report_rows(store, _fill(store), all_hosts=True)))
    assert len(rows) == 7
    assert [r["status"] for r in rows if r["host"] in ("ok", "win")] == ["success", "success"]


def test_csv_quotes_commas_newlines_and_unicode_round_trip(store: RunStore) -> None:
    rows = _parse_csv(render_csv(report_rows(store, _fill(store))))
    tricky = next(r for r in rows if r["host"] == "tricky")
    assert tricky["message"] == TRICKY
    assert tricky["cause"] == 'proxy refused, "x"'
    assert tricky["remediations"] == "restart_agent_service;wait_for_himds"
    assert tricky["exit_code"] == "" and tricky["attempts"] == "3"


def test_csv_formula_guard(store: RunStore) -> None:
    rows = _parse_csv(render_csv(report_rows(store, _fill(store))))
    formula = next(r for r in rows if r["host"] == "formula")
    assert formula["cause"] == "'=HYPERLINK(\"http://evil\")"
    assert formula["fix"] == "'+1+1"
    assert formula["message"] == "'@SUM(A1)"
    assert formula["resource_id"] == "'-2+3"
    for row in rows:  # no text cell may start a formula
        for column, value in row.items():
            if column not in ("exit_code", "attempts", "duration_s"):
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (column, value)


def test_csv_formula_guard_covers_tab_and_cr(store: RunStore) -> None:
    root = start(store, ["t"])
    store.record_outcome(root, outcome("t", Category.UNKNOWN, cause="\t=1", fix="\r=2"))
    row = _parse_csv(render_csv(report_rows(store, root)))[0]
    assert row["cause"] == "'\t=1" and row["fix"] == "'\r=2"


def test_bom_option(store: RunStore, tmp_path: Path) -> None:
    root = _fill(store)
    with_bom, without = tmp_path / "bom.csv", tmp_path / "plain.csv"
    write_report(store, root, with_bom, fmt="csv", bom=True)
    write_report(store, root, without, fmt="csv")
    assert with_bom.read_bytes().startswith(b"\xef\xbb\xbfhost,address,")
    assert without.read_bytes().startswith(b"host,address,")
    assert _parse_csv(with_bom.read_text(encoding="utf-8-sig")) == _parse_csv(
        without.read_text(encoding="utf-8"))


def test_failures_csv_in_run_folder_is_private(store: RunStore) -> None:
    root = _fill(store)
    path = write_failures_csv(store, root)
    assert path == store.state_dir / "runs" / root / "failures.csv"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(_parse_csv(path.read_text(encoding="utf-8"))) == 5
    rerun = start(store, ["cred"], kind="rerun", parent_run_id=root)
    store.record_outcome(rerun, outcome("cred", Category.CONNECTED))
    rerun_path = write_failures_csv(store, root, run_id=rerun)
    assert rerun_path.parent == store.state_dir / "runs" / rerun
    assert len(_parse_csv(rerun_path.read_text(encoding="utf-8"))) == 4


def test_unfinished_host_is_reported_interrupted(store: RunStore) -> None:
    root = _fill(store)
    lost = next(r for r in report_rows(store, root) if r.host == "lost")
    assert (lost.status, lost.category, lost.attempts) == ("interrupted", "interrupted", 0)
    assert root in lost.cause and "interrupted" in lost.cause


def test_rerun_outcomes_replace_the_root_ones_in_reports(store: RunStore) -> None:
    root = _fill(store)
    rerun = start(store, ["cred", "lost"], kind="rerun", parent_run_id=root)
    store.record_outcome(rerun, outcome("cred", Category.CONNECTED))
    store.record_outcome(rerun, outcome("lost", Category.AUTH, cause="host key changed"))
    rows = {r.host: r for r in report_rows(store, root)}
    assert "cred" not in rows
    assert (rows["lost"].category, rows["lost"].run_id) == ("auth", rerun)


class JsonHost(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    host: StrictStr
    address: StrictStr
    transport: StrictStr
    os: StrictStr
    status: StrictStr
    category: StrictStr
    azcm_code: StrictStr | None
    exit_code: StrictInt | None
    cause: StrictStr
    fix: StrictStr
    attempts: StrictInt
    remediations: list[StrictStr]
    message: StrictStr
    correlation_id: StrictStr
    resource_id: StrictStr | None
    log_file: StrictStr
    started_at: StrictStr
    finished_at: StrictStr
    duration_s: StrictFloat | None
    agent_version_before: StrictStr
    agent_version_after: StrictStr
    install: StrictStr
    run_id: StrictStr


def test_json_objects_are_typed(store: RunStore) -> None:
    root = _fill(store)
    data = json.loads(render_json(report_rows(store, root, all_hosts=True)))
    assert isinstance(data, list) and len(data) == 7
    hosts = {item["host"]: JsonHost.model_validate(item) for item in data}
    assert list(data[0])[:22] == list(CSV_COLUMNS)
    assert hosts["tricky"].message == TRICKY
    assert hosts["tricky"].remediations == ["restart_agent_service", "wait_for_himds"]
    assert hosts["tricky"].exit_code is None and hosts["cred"].exit_code == 16
    assert hosts["cred"].duration_s == pytest.approx(2.5)
    assert hosts["lost"].duration_s is None and hosts["lost"].status == "interrupted"
    assert hosts["formula"].cause.startswith("=")  # the formula guard is for CSV only


def test_junit_parses_and_maps_statuses(store: RunStore, tmp_path: Path) -> None:
    root = _fill(store)
    path = tmp_path / "junit.xml"
    assert write_report(store, root, path, fmt="junit") == 7  # JUnit lists every host
    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1 and suites[0].name == f"arcfleet {root}"
    cases = {case.name: case for case in suites[0]}
    assert list(cases) == ["ok", "cred", "tricky", "formula", "skip", "lost", "win"]
    assert cases["ok"].is_passed and cases["win"].is_passed
    assert cases["win"].classname == "winrm.windows" and cases["ok"].classname == "ssh.linux"
    assert cases["cred"].time == pytest.approx(2.5)
    failure = cases["cred"].result[0]
    assert isinstance(failure, Failure)
    assert failure.type == "credentials"
    assert "credentials AZCM0016" in (failure.message or "")
    assert "fix: create a new client secret" in (failure.text or "")
    tricky = cases["tricky"].result[0]
    assert isinstance(tricky, Failure) and TRICKY in (tricky.text or "")
    assert isinstance(cases["skip"].result[0], Skipped)
    assert isinstance(cases["lost"].result[0], Failure)
    assert suites[0].tests == 7 and suites[0].failures == 4 and suites[0].skipped == 1


def test_junit_of_an_empty_run(store: RunStore) -> None:
    root = start(store, [])
    xml = JUnitXml.fromstring(render_junit(report_rows(store, root), suite_name="empty"))
    assert [suite.tests for suite in xml] == [0]


def test_summary_counts_causes_and_the_resume_command_after_an_interrupt(
    store: RunStore,
) -> None:
    root = _fill(store)  # the run ended interrupted (Ctrl-C)
    result = summary(store, root, state_dir=Path("/srv/arc state"))
    assert result.total == 7
    assert result.by_status == {"success": 2, "failed": 3, "skipped": 1, "interrupted": 1,
                                "ready": 0}
    assert result.by_category["credentials"] == 1
    # After Ctrl-C the command is the resume, and the interrupted host's fix names it too.
    resume = "arcfleet onboard -i inv.yaml --resume --state-dir '/srv/arc state'"
    assert result.rerun_command is None
    assert [step.command for step in result.next_steps] == [resume]
    lost = next(c for c in result.top_causes if c.category == "interrupted")
    assert lost.fix == f"resume the run: {resume}"
    text = result.as_text()
    assert "credentials AZCM0016: secret expired" in text
    assert "fix: create a new client secret" in text
    assert f"resume the run (hosts that finished are not redone): {resume}" in text
    assert "rerun" not in text.splitlines()[0]
    console = Console(record=True, width=200)
    console.print(result)
    rendered = console.export_text()
    assert "AZCM0016" in rendered and resume in rendered


def test_summary_of_a_finished_run_prints_the_rerun_command(store: RunStore) -> None:
    root = start(store, ["a", "b"])
    store.record_outcome(root, outcome("a", Category.NETWORK, cause="dns"))
    store.record_outcome(root, outcome("b", Category.CONNECTED))
    store.finish_run(root, "finished")
    result = summary(store, root, state_dir=Path("/srv/arc state"))
    assert result.rerun_command == f"arcfleet rerun {root} --state-dir '/srv/arc state'"
    assert f"rerun the hosts that are not connected: {result.rerun_command}" in result.as_text()


def test_summary_groups_hosts_by_category_and_code(store: RunStore) -> None:
    root = start(store, [f"h{i}" for i in range(5)])
    for i in range(3):
        store.record_outcome(root, outcome(f"h{i}", Category.PERMISSIONS, code="AZCM0042",
                                           cause="no role", fix="grant the role"))
    store.record_outcome(root, outcome("h3", Category.NETWORK, cause="dns"))
    store.record_outcome(root, outcome("h4", Category.CONNECTED))
    causes = summary(store, root).top_causes
    assert [(c.category, c.code, c.hosts) for c in causes] == [
        ("permissions", "AZCM0042", 3), ("network", None, 1)
    ]
    assert causes[0].fix == "grant the role"


def test_summary_default_state_dir_and_all_connected(store: RunStore) -> None:
    root = start(store, ["a"])
    store.record_outcome(root, outcome("a", Category.CONNECTED))
    result = summary(store, root, state_dir=Path(".arcfleet"))
    assert result.rerun_command is None and "every host is connected" in result.as_text()
    store.record_outcome(root, outcome("a", Category.NETWORK))
    assert summary(store, root, state_dir=Path(".arcfleet")).rerun_command == (
        f"arcfleet rerun {root}")

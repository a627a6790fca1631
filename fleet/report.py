"""Reports read from the run store: the per-host CSV, JSON, JUnit XML and the terminal summary.

Everything here reads the store, never the engine's memory, so ``arcfleet report`` after a crash
shows what the run left. Every text passes :func:`fleet.redact.redact` on the way out.

A report covers a *root* run and all its reruns/resumes: each root host appears once, with its
latest outcome. A host that never got an outcome (the run died, or is still running) appears as
``interrupted`` with a cause that says so.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleet.azcm.diagnosis import Category
from fleet.engine.outcome import HostStatus
from fleet.redact import redact
from fleet.store import OutcomeRow, RunStore

CSV_COLUMNS: Final = (
    "host", "address", "transport", "os", "status", "category", "azcm_code", "exit_code",
    "cause", "fix", "attempts", "remediations", "message", "correlation_id", "resource_id",
    "log_file", "started_at", "finished_at", "duration_s",
)
# Appended when the rows come from a shared store (hosts worked by site workers).
SHARED_COLUMNS: Final = ("site", "worker")
FORMATS: Final = ("csv", "json", "junit")
DEFAULT_STATE_DIR: Final = Path(".arcfleet")

# OWASP CSV injection: a cell starting with one of these is a formula (or becomes one) in
# Excel/LibreOffice/Sheets; a leading apostrophe makes it text.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_NUMERIC_COLUMNS: Final = frozenset({"exit_code", "attempts", "duration_s"})
_SUCCESS: Final = HostStatus.SUCCESS.value


# --------------------------------------------------------------------------- rows


def report_rows(store: RunStore, root_run_id: str, *, all_hosts: bool = False) -> list[OutcomeRow]:
    """The report's rows for a root run, in inventory order.

    Hosts whose latest outcome is success are left out unless ``all_hosts``. Hosts without any
    outcome get a synthesized ``interrupted`` row naming the run that left them unfinished.
    """
    final = store.final_outcomes(root_run_id)
    runs = store.runs_under(root_run_id)
    # The last run that planned each host decides why it is unfinished.
    last_planner: dict[str, tuple[str, str]] = {}
    for run in runs:
        for entry in store.run_hosts(run.id):
            last_planner[entry.host] = (run.id, run.status)
    rows = []
    for entry in store.run_hosts(root_run_id):
        row = final.get(entry.host)
        if row is None:
            run_id, run_status = last_planner.get(entry.host, (root_run_id, "unknown"))
            if run_status == "running":
                cause = f"no outcome yet: run {run_id} is still running"
            else:
                cause = f"no outcome: run {run_id} ended ({run_status}) before this host finished"
            row = OutcomeRow(
                host=entry.host, address=entry.address, transport=entry.transport, os=entry.os,
                status=HostStatus.INTERRUPTED.value, category=Category.INTERRUPTED.value,
                azcm_code=None, exit_code=None, cause=cause,
                fix="rerun it (arcfleet rerun): the agent state is checked before connecting",
                attempts=0, remediations=(), message="", correlation_id="", resource_id=None,
                log_file="", started_at=entry.started_at or "", finished_at="",
                duration_s=None, run_id=run_id,
            )
        if all_hosts or row.status != _SUCCESS:
            rows.append(row)
    return rows


def report_columns(rows: Sequence[OutcomeRow]) -> tuple[str, ...]:
    """The report's columns: :data:`SHARED_COLUMNS` appended when any row has a site."""
    shared = any(row.site or row.worker for row in rows)
    return CSV_COLUMNS + SHARED_COLUMNS if shared else CSV_COLUMNS


def _row_values(row: OutcomeRow, columns: Sequence[str] = CSV_COLUMNS) -> dict[str, object]:
    """The typed report fields of a row, redacted."""
    values: dict[str, object] = {}
    for column in columns:
        value = getattr(row, column)
        if isinstance(value, str):
            value = redact(value)
        elif isinstance(value, tuple):
            value = [redact(str(item)) for item in value]
        values[column] = value
    return values


# --------------------------------------------------------------------------- CSV


def _guard(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _csv_cell(column: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        text = ";".join(str(item) for item in value)
    elif isinstance(value, float):
        text = f"{value:.3f}"
    else:
        text = str(value)
    return text if column in _NUMERIC_COLUMNS else _guard(text)


def render_csv(rows: Sequence[OutcomeRow], *, bom: bool = False) -> str:
    """CSV text (RFC 4180, CRLF line ends); ``bom`` prepends U+FEFF so Excel reads UTF-8."""
    buffer = io.StringIO()
    if bom:
        buffer.write("\ufeff")
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
    columns = report_columns(rows)
    writer.writerow(columns)
    for row in rows:
        values = _row_values(row, columns)
        writer.writerow([_csv_cell(column, values[column]) for column in columns])
    return buffer.getvalue()


# --------------------------------------------------------------------------- JSON


def render_json(rows: Sequence[OutcomeRow]) -> str:
    """A JSON array, one object per host: the CSV fields typed, plus ``run_id``."""
    objects = []
    shared = report_columns(rows) != CSV_COLUMNS
    for row in rows:
        values = _row_values(row)
        values["run_id"] = row.run_id
        if shared:
            values.update(_row_values(row, SHARED_COLUMNS))
        objects.append(values)
    return json.dumps(objects, ensure_ascii=False, indent=2) + "\n"


# --------------------------------------------------------------------------- JUnit


def render_junit(rows: Sequence[OutcomeRow], *, suite_name: str, timestamp: str = "") -> str:
    """JUnit XML: one testsuite, one testcase per host (classname ``transport.os``)."""
    failures = sum(r.status in (HostStatus.FAILED.value, HostStatus.INTERRUPTED.value)
                   for r in rows)
    skipped = sum(r.status == HostStatus.SKIPPED.value for r in rows)
    total_time = sum(r.duration_s or 0.0 for r in rows)
    root = ET.Element("testsuites", name="arcfleet", tests=str(len(rows)),
                      failures=str(failures), errors="0", skipped=str(skipped),
                      time=f"{total_time:.3f}")
    suite = ET.SubElement(
        root, "testsuite", name=redact(suite_name), tests=str(len(rows)),
        failures=str(failures), errors="0", skipped=str(skipped), time=f"{total_time:.3f}",
    )
    if timestamp:
        suite.set("timestamp", timestamp)
    for row in rows:
        v = _row_values(row)
        case = ET.SubElement(
            suite, "testcase", classname=f"{v['transport']}.{v['os']}", name=str(v["host"]),
            time=f"{row.duration_s or 0.0:.3f}",
        )
        code = f" {v['azcm_code']}" if v["azcm_code"] else ""
        headline = f"{v['category']}{code}: {v['cause']}"
        if row.status == HostStatus.SKIPPED.value:
            ET.SubElement(case, "skipped", message=headline)
        elif row.status != _SUCCESS:
            failure = ET.SubElement(case, "failure", message=headline, type=str(v["category"]))
            failure.text = "\n".join(
                f"{label}: {value}"
                for label, value in (
                    ("category", v["category"]), ("code", v["azcm_code"] or ""),
                    ("cause", v["cause"]), ("fix", v["fix"]), ("evidence", v["message"]),
                    ("exit_code", "" if v["exit_code"] is None else v["exit_code"]),
                    ("attempts", v["attempts"]),
                    ("remediations", ";".join(row.remediations)),
                    ("correlation_id", v["correlation_id"]), ("log_file", v["log_file"]),
                    ("run_id", row.run_id),
                )
                if value not in ("", None)
            )
        if v["log_file"]:
            ET.SubElement(case, "system-out").text = f"transcript: {v['log_file']}"
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


# --------------------------------------------------------------------------- writing files


def render(rows: Sequence[OutcomeRow], fmt: str, *, suite_name: str = "arcfleet",
           timestamp: str = "", bom: bool = False) -> str:
    if fmt == "csv":
        return render_csv(rows, bom=bom)
    if fmt == "json":
        return render_json(rows)
    if fmt == "junit":
        return render_junit(rows, suite_name=suite_name, timestamp=timestamp)
    raise ValueError(f"unknown report format {fmt!r} (expected one of {FORMATS})")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8; a new file is created owner-only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # newline="" keeps the CSV's CRLF exactly as rendered.
    with open(fd, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def write_report(store: RunStore, root_run_id: str, path: Path, *, fmt: str = "csv",
                 all_hosts: bool = False, bom: bool = False) -> int:
    """Write one report file for a root run; return the number of host rows written.

    CSV and JSON list the hosts that did not end connected unless ``all_hosts``; JUnit always
    lists every host (a connected host is a passing test case).
    """
    rows = report_rows(store, root_run_id, all_hosts=all_hosts or fmt == "junit")
    run = store.get_run(root_run_id)
    write_private(path, render(rows, fmt, suite_name=f"arcfleet {root_run_id}",
                               timestamp=run.started_at if run else "", bom=bom))
    return len(rows)


def write_failures_csv(store: RunStore, root_run_id: str, *, run_id: str | None = None,
                       bom: bool = False) -> Path:
    """Write ``failures.csv`` (root hosts not connected, reruns included); return its path.

    It goes into the folder of ``run_id`` (the run just finished, e.g. a rerun), by default the
    root run's folder.
    """
    path = store.run_folder(run_id or root_run_id) / "failures.csv"
    write_report(store, root_run_id, path, fmt="csv", bom=bom)
    return path


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Cause:
    category: str
    code: str | None
    cause: str
    fix: str
    hosts: int
    example_host: str


@dataclass(frozen=True)
class Summary:
    """What an operator reads at the end of a run: counts, top causes, the rerun command."""

    root_run_id: str
    runs: tuple[str, ...]  # the root and its reruns, in order
    status: str  # of the latest run
    total: int
    by_status: dict[str, int]
    by_category: dict[str, int]
    top_causes: tuple[Cause, ...]
    rerun_command: str | None  # None when every host is connected

    def as_text(self) -> str:
        lines = [self._headline()]
        lines.append("  " + ", ".join(f"{k}: {n}" for k, n in self.by_status.items() if n))
        if self.by_category:
            lines.append("by category:")
            lines.extend(f"  {category:<18} {n}" for category, n in self.by_category.items())
        if self.top_causes:
            lines.append("top causes:")
            for cause in self.top_causes:
                code = f" {cause.code}" if cause.code else ""
                lines.append(f"  {cause.hosts:>4} x {cause.category}{code}: {cause.cause}")
                if cause.fix:
                    lines.append(f"         fix: {cause.fix}")
        lines.append(self._tail())
        return redact("\n".join(lines))

    def _headline(self) -> str:
        reruns = len(self.runs) - 1
        extra = f" + {reruns} rerun(s)" if reruns else ""
        return f"run {self.root_run_id}{extra} ({self.status}): {self.total} host(s)"

    def _tail(self) -> str:
        if self.rerun_command is None:
            return "every host is connected"
        return f"rerun the hosts that are not connected: {self.rerun_command}"

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [Text(redact(self._headline()), style="bold")]
        status_styles = {"success": "green", "failed": "red", "skipped": "yellow",
                         "interrupted": "magenta"}
        counts = Text("  ")
        for status, n in self.by_status.items():
            if n:
                counts.append(f"{status}: {n}  ", style=status_styles.get(status, ""))
        parts.append(counts)
        if self.by_category:
            table = Table(title="hosts by category", title_justify="left", show_edge=False)
            table.add_column("category")
            table.add_column("hosts", justify="right")
            for category, n in self.by_category.items():
                table.add_row(category, str(n))
            parts.append(table)
        if self.top_causes:
            causes = Table(title="top causes", title_justify="left", show_edge=False)
            causes.add_column("hosts", justify="right")
            causes.add_column("category / code", overflow="fold")
            causes.add_column("cause", overflow="fold")
            causes.add_column("fix", overflow="fold")
            for cause in self.top_causes:
                label = cause.category + (f" {cause.code}" if cause.code else "")
                causes.add_row(str(cause.hosts), label, redact(cause.cause), redact(cause.fix))
            parts.append(causes)
        parts.append(Text(redact(self._tail()), style="bold" if self.rerun_command else "green"))
        return Group(*parts)


def rerun_command(root_run_id: str, state_dir: Path | None = None,
                  store_url: str | None = None) -> str:
    command = f"arcfleet rerun {root_run_id}"
    if state_dir is not None and Path(state_dir) != DEFAULT_STATE_DIR:
        command += f" --state-dir {shlex.quote(str(state_dir))}"
    if store_url:  # a shared store's URL never holds a password (it is refused there)
        command += f" --store {shlex.quote(store_url)}"
    return command


def summary(store: RunStore, root_run_id: str, *, state_dir: Path | None = None,
            top: int = 5) -> Summary:
    """The summary of a root run and its reruns, from the store.

    ``print``/``console.print`` it (rich renderable) or call ``.as_text()``. ``state_dir`` is
    the one the operator used; the rerun command names it unless it is the default.
    """
    rows = report_rows(store, root_run_id, all_hosts=True)
    runs = store.runs_under(root_run_id)
    by_status = {status.value: 0 for status in HostStatus}
    by_status.update(Counter(row.status for row in rows))
    by_category = dict(Counter(row.category for row in rows).most_common())
    groups: dict[tuple[str, str | None], list[OutcomeRow]] = {}
    for row in rows:
        if row.status != _SUCCESS:
            groups.setdefault((row.category, row.azcm_code), []).append(row)
    ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0][0]))[:top]
    causes = []
    for (category, code), members in ranked:
        # The most frequent cause/fix wording within the group represents it.
        (cause, fix), _ = Counter((m.cause, m.fix) for m in members).most_common(1)[0]
        causes.append(Cause(category=category, code=code, cause=cause, fix=fix,
                            hosts=len(members), example_host=members[0].host))
    not_connected = any(row.status != _SUCCESS for row in rows)
    return Summary(
        root_run_id=root_run_id,
        runs=tuple(run.id for run in runs),
        status=runs[-1].status if runs else "unknown",
        total=len(rows),
        by_status=by_status,
        by_category=by_category,
        top_causes=tuple(causes),
        rerun_command=(
            rerun_command(root_run_id, state_dir, store.url) if not_connected else None
        ),
    )

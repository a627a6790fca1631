"""Reports read from the run store: the per-host CSV, JSON, JUnit XML and the terminal summary.

Everything here reads the store, never the engine's memory, so ``arcfleet report`` after a crash
shows what the run left. Every text passes :func:`fleet.redact.redact` on the way out.

A report covers a *root* run and all its reruns/resumes: each root host appears once, with its
latest outcome. A host that never got an outcome (the run died, or is still running) appears as
``interrupted`` with a cause that says so.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fleet.azcm.diagnosis import Category
from fleet.engine.outcome import HostStatus
from fleet.errors import InputError, Problem
from fleet.redact import redact
from fleet.store import OutcomeRow, RunStore
from fleet.text import clean, xml_safe

CSV_COLUMNS: Final = (
    "host", "address", "transport", "os", "status", "category", "azcm_code", "exit_code",
    "cause", "fix", "attempts", "remediations", "message", "correlation_id", "resource_id",
    "log_file", "started_at", "finished_at", "duration_s",
    # The install stage (appended, so readers of the older columns keep working).
    "agent_version_before", "agent_version_after", "install",
)
# Appended when the rows come from a shared store (hosts worked by site workers).
SHARED_COLUMNS: Final = ("site", "worker")
FORMATS: Final = ("csv", "json", "junit")
DEFAULT_STATE_DIR: Final = Path(".arcfleet")

# OWASP CSV injection: a cell starting with one of these is a formula (or becomes one) in
# Excel/LibreOffice/Sheets; a leading apostrophe makes it text.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_NUMERIC_COLUMNS: Final = frozenset({"exit_code", "attempts", "duration_s"})
# Hosts that need nothing more: connected (or disconnected, for offboard), or found ready by a
# preflight. They are left out of failures.csv and of reruns.
SETTLED: Final = frozenset({HostStatus.SUCCESS.value, HostStatus.READY.value})


# --------------------------------------------------------------------------- rows


def report_rows(store: RunStore, root_run_id: str, *, all_hosts: bool = False) -> list[OutcomeRow]:
    """The report's rows for a root run, in inventory order.

    Hosts whose latest outcome is settled (success, or ready after a preflight) are left out
    unless ``all_hosts``. Hosts without any
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
                fix="Resume the run (--resume); hosts that finished are not redone, and the "
                "agent state is read before anything is changed.",
                attempts=0, remediations=(), message="", correlation_id="", resource_id=None,
                log_file="", started_at=entry.started_at or "", finished_at="",
                duration_s=None, run_id=run_id,
            )
        if all_hosts or row.status not in SETTLED:
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
        # clean: a store written by an older arcfleet (or edited) may hold escape sequences.
        if isinstance(value, str):
            value = clean(redact(value), keep_cr=True)
        elif isinstance(value, tuple):
            value = [clean(redact(str(item)), single_line=True) for item in value]
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
        root, "testsuite", name=xml_safe(redact(suite_name)), tests=str(len(rows)),
        failures=str(failures), errors="0", skipped=str(skipped), time=f"{total_time:.3f}",
    )
    if timestamp:
        suite.set("timestamp", timestamp)
    for row in rows:
        # Characters XML 1.0 forbids (they come from hosts) would make the file unparseable.
        v = {k: xml_safe(x) if isinstance(x, str) else x for k, x in _row_values(row).items()}
        case = ET.SubElement(
            suite, "testcase", classname=f"{v['transport']}.{v['os']}", name=str(v["host"]),
            time=f"{row.duration_s or 0.0:.3f}",
        )
        code = f" {v['azcm_code']}" if v["azcm_code"] else ""
        headline = f"{v['category']}{code}: {v['cause']}"
        if row.status == HostStatus.SKIPPED.value:
            ET.SubElement(case, "skipped", message=headline)
        elif row.status not in SETTLED:
            failure = ET.SubElement(case, "failure", message=headline, type=str(v["category"]))
            failure.text = "\n".join(
                f"{label}: {value}"
                for label, value in (
                    ("category", v["category"]), ("code", v["azcm_code"] or ""),
                    ("cause", v["cause"]), ("fix", v["fix"]), ("evidence", v["message"]),
                    ("exit_code", "" if v["exit_code"] is None else v["exit_code"]),
                    ("attempts", v["attempts"]),
                    ("remediations", ";".join(xml_safe(redact(r)) for r in row.remediations)),
                    ("correlation_id", v["correlation_id"]), ("log_file", v["log_file"]),
                    ("run_id", xml_safe(row.run_id)),
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
    """Write ``text`` as UTF-8, owner-only (0600) whatever was there before.

    The text goes to a new temporary file (0600) in the same directory, which then replaces
    ``path`` by rename: an existing 0644 report ends 0600, a reader never sees half a file,
    and a symbolic link at ``path`` is refused rather than followed (it could point anywhere).
    """
    if path.is_symlink():
        raise InputError(Problem(str(path), None, None,
                                 "is a symbolic link; reports are not written through links"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # newline="" keeps the CSV's CRLF exactly as rendered.
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)  # mkstemp says 0600; a umask cannot widen it, be explicit
        os.replace(temporary, path)  # rename replaces a link made meanwhile, never follows it
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


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

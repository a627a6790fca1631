"""CLI commands that read the run store: report, runs, show."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleet.cli.state_option import store_location, store_options
from fleet.errors import InputError, Problem, StoreError
from fleet.redact import redact
from fleet.report import FORMATS, render, report_rows, write_private
from fleet.store import RunStore
from fleet.summary import summary
from fleet.text import clean


def _open_existing(state_dir: Path) -> RunStore:
    location = store_location(state_dir)
    try:
        return location.open(create=False)
    except StoreError as exc:
        if location.shared:  # an unusable --store is bad input: one line, exit 2
            raise InputError(Problem(file=location.describe(), host=None, field="--store",
                                     message=str(exc))) from None
        if not (state_dir / "arcfleet.db").exists():
            raise _no_runs(state_dir) from None
        raise exc


def _no_runs(state_dir: Path, detail: str = "no runs recorded yet") -> InputError:
    return InputError(Problem(file=str(state_dir), host=None, field=None, message=detail))


def _console(stderr: bool = False) -> Console:
    # Wide enough for ids and causes when not on a terminal (pipes, CI logs).
    return Console(stderr=stderr, width=None if sys.stdout.isatty() else 160,
                   highlight=False, soft_wrap=False)


def _resolve_root(store: RunStore, state_dir: Path, run_id: str | None) -> str:
    if run_id is None:
        latest = store.latest_run_id(root_only=True)
        if latest is None:
            raise _no_runs(state_dir)
        return latest
    resolved = store.resolve_run_id(run_id)
    record = store.get_run(resolved) if resolved else None
    if record is None:
        raise InputError(Problem(file=str(state_dir), host=None, field="RUN_ID",
                                 message=f"no run {redact(run_id)} in this store"))
    return record.root_run_id


@click.command("report")
@click.argument("run_id", required=False)
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the per-host CSV to FILE.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Report format for --output (or stdout when --output is not given).")
@click.option("--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report in --format (default csv) to FILE.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the HTML report (one self-contained file) to FILE.")
@click.option("--all", "all_hosts", is_flag=True,
              help="Include every host, not only those that did not end connected.")
@click.option("--bom", is_flag=True, help="Start CSV files with a UTF-8 BOM (for Excel).")
@store_options
def report_cmd(run_id: str | None, csv_file: Path | None, fmt: str | None,
               output: Path | None, html_file: Path | None, all_hosts: bool, bom: bool,
               state_dir: Path) -> None:
    """Report a run (default: the latest first run) with all its reruns, from the store.

    A RUN_ID of a rerun reports its root run. Always prints the summary; writes files when asked.
    """
    # One snapshot: while a run writes, the files, stdout and the summary show the same state.
    with _open_existing(state_dir) as store, store.snapshot():
        root = _resolve_root(store, state_dir, run_id)
        rows = report_rows(store, root, all_hosts=all_hosts)
        # JUnit always lists every host: a connected host is a passing test case.
        junit_rows = report_rows(store, root, all_hosts=True) if fmt == "junit" else rows
        run = store.get_run(root)
        started = run.started_at if run else ""
        to_stdout = fmt is not None and output is None
        if csv_file is not None:
            write_private(csv_file, render(rows, "csv", bom=bom))
        if html_file is not None:
            from fleet.report_html import write_html_report

            write_html_report(store, root, html_file, state_dir=state_dir)
        if output is not None or to_stdout:
            text = render(junit_rows, fmt or "csv", suite_name=f"arcfleet {root}",
                          timestamp=started, bom=bom)
            if output is not None:
                write_private(output, text)
            else:
                click.echo(text, nl=False)
        # With the report on stdout the summary goes to stderr, so stdout stays parseable.
        console = _console(stderr=to_stdout)
        # soft_wrap keeps the rerun command on one line on narrow terminals and in CI logs.
        # Every cause: this is where the run's summary sends the operator for the rest.
        console.print(summary(store, root, state_dir=state_dir, top=None), soft_wrap=True)
        _print_azure_checks(console, store, root)
        every_host = len(report_rows(store, root, all_hosts=True))
        for path, count in ((csv_file, len(rows)), (output, len(junit_rows)),
                            (html_file, every_host)):
            if path is not None:
                console.print(_plain(f"wrote {path} ({count} host row(s))"))


def _plain(text: str) -> Text:
    """Stored text (host-derived) for rich: plain Text, never markup, no escape sequences."""
    return Text(clean(redact(text), single_line=True))


def _print_azure_checks(console: Console, store: RunStore, root: str) -> None:
    """The target-level section: the Azure preflight rows of the latest run under ``root``
    that has any (docs/azure.md)."""
    from fleet.azure.record import checks_for, render_rows

    if store.url:  # the shared store keeps no Azure check rows yet (docs/azure.md)
        return
    for run in reversed(store.runs_under(root)):
        rows = checks_for(store.db_path, run.id)
        if rows:
            console.print(render_rows(rows, title=f"Azure preflight of run {run.id}:"),
                          markup=False, soft_wrap=True)
            return


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@click.command("runs")
@store_options
def runs_cmd(state_dir: Path) -> None:
    """List the recorded runs, oldest first."""
    with _open_existing(state_dir) as store:
        runs = store.list_runs()
        if not runs:
            raise _no_runs(state_dir)
        where = store.url or str(state_dir)
        table = Table(title=_plain(f"runs in {where}"), title_justify="left")
        for name in ("run", "kind", "parent", "started"):
            table.add_column(name, no_wrap=name in ("run", "parent"))
        for name in ("duration", "status", "hosts", "success", "ready", "failed", "skipped",
                     "interrupted", "unfinished"):
            table.add_column(name, justify="left" if name == "status" else "right")
        for run in runs:
            table.add_row(
                run.id, run.kind, run.parent_run_id or "-", run.started_at[:19].replace("T", " "),
                _duration(run.duration_s), run.status, str(run.hosts),
                str(run.counts.get("success", 0)), str(run.counts.get("ready", 0)),
                str(run.counts.get("failed", 0)),
                str(run.counts.get("skipped", 0)), str(run.counts.get("interrupted", 0)),
                str(run.unfinished),
            )
        _console().print(table)


@click.command("show")
@click.argument("host")
@store_options
def show_cmd(host: str, state_dir: Path) -> None:
    """One host's history across runs, with its transcript file(s)."""
    with _open_existing(state_dir) as store:
        history = store.host_history(host)
        if not history:
            raise InputError(Problem(file=str(state_dir), host=redact(host), field=None,
                                     message="no outcome recorded for this host"))
        console = _console()
        table = Table(title=_plain(f"history of {host}"), title_justify="left")
        for name in ("run", "kind", "status", "category", "code", "exit", "attempts",
                     "finished", "cause", "fix"):
            table.add_column(name, overflow="fold", no_wrap=name == "run")
        runs = {run.id: run for run in (store.get_run(r.run_id) for r in history) if run}
        for row in history:
            run = runs.get(row.run_id)
            table.add_row(
                *map(_plain, (
                    row.run_id, run.kind if run else "?", row.status, row.category,
                    row.azcm_code or "-", "-" if row.exit_code is None else str(row.exit_code),
                    str(row.attempts), row.finished_at[:19].replace("T", " "),
                    row.cause, row.fix,
                ))
            )
        console.print(table)
        for row in history:
            console.print(_plain(f"{row.run_id}: evidence: {row.message or '-'}"))
            for attempt in store.attempts_for(row.run_id, row.host):
                code = f" {attempt.azcm_code}" if attempt.azcm_code else ""
                console.print(_plain(
                    f"  #{attempt.seq} {attempt.stage} exit={attempt.exit_status}"
                    f" {attempt.category or ''}{code} ({attempt.duration_s:.1f}s):"
                    f" {attempt.command}"
                ))
            console.print(_plain(f"  transcript: {row.log_file or '-'}"))


COMMANDS: list[click.Command] = [report_cmd, runs_cmd, show_cmd]

"""``arcfleet codes``: look up AZCM codes and explain a pasted azcmagent output or log."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from fleet.azcm.catalog import CodeEntry, all_entries, meanings, normalize_code
from fleet.azcm.classifier import classify
from fleet.azcm.diagnosis import Diagnosis, Evidence
from fleet.errors import InputError, Problem
from fleet.redact import redact, redact_value

_KINDS = ("auto", "output", "log", "installer")


def _entry_dict(entry: CodeEntry) -> dict[str, Any]:
    return {
        "code": entry.code,
        "name": entry.name,
        "category": entry.category.value,
        "action": str(entry.action),
        "cause": entry.cause,
        "fix": entry.fix,
        "doc_url": entry.doc_url,
        "source": entry.source.value,
        "era": entry.era.value,
        "agents": entry.agents,
        "platform": entry.platform,
        "note": entry.note,
    }


def breaker_scope(diagnosis: Diagnosis) -> dict[str, str] | None:
    """The scope a breaker would count this verdict in (None: it never trips one).

    The engine keys it by the host's inventory target; here, from a saved output, the key is
    read from the message (ids an Entra or ARM answer names), '?' where it names none.
    """
    if not diagnosis.fail_run:
        return None
    from fleet.engine.breaker import ScopeTarget, scope_kind  # the engine's own keying

    extra = diagnosis.extra
    target = ScopeTarget(
        client_id=extra.get("client_id", ""), tenant_id=extra.get("tenant_id", ""),
        subscription_id=extra.get("subscription_id", ""),
        resource_group=extra.get("resource_group", ""),
    )
    kind = scope_kind(diagnosis)
    return {"kind": kind, "key": target.key(kind)}


def diagnosis_dict(diagnosis: Diagnosis) -> dict[str, Any]:
    """A Diagnosis as JSON-ready data, redacted."""
    data = asdict(diagnosis)
    data["category"] = diagnosis.category.value
    data["action"] = str(diagnosis.action)
    data["correlation_ids"] = list(diagnosis.correlation_ids)
    data["breaker_scope"] = breaker_scope(diagnosis)
    result: dict[str, Any] = redact_value(data)
    return result


def _console() -> Console:
    # A pipe or file gets a wide table rather than rich's 80-column default.
    width = None if sys.stdout.isatty() else 160
    return Console(highlight=False, soft_wrap=False, width=width)


def _explain_code(text: str, as_json: bool) -> None:
    rows = meanings(text)
    if not rows:
        raise InputError(
            Problem("<command line>", None, "code", f"unknown AZCM code {text!r} "
                    "(see `arcfleet codes --list`)")
        )
    if as_json:
        click.echo(json.dumps([_entry_dict(r) for r in rows], indent=2))
        return
    for row in rows:
        where = f"{row.source.value}, {row.era.value} meaning, agents {row.agents}"
        if row.platform:
            where += f", {row.platform}"
        click.echo(f"{row.code}  {row.name}  ({where})")
        click.echo(f"  category: {row.category.value}    action: {row.action}")
        click.echo(f"  cause:    {row.cause}")
        click.echo(f"  fix:      {row.fix}")
        if row.note:
            click.echo(f"  note:     {row.note}")
        click.echo(f"  docs:     {row.doc_url}")
        click.echo("")


def _list(as_json: bool) -> None:
    entries = all_entries()
    if as_json:
        click.echo(json.dumps([_entry_dict(e) for e in entries], indent=2))
        return
    table = Table(title="AZCM codes", show_lines=False)
    for column in ("Code", "Name", "Category", "Action", "Meaning", "Agents"):
        table.add_column(column, overflow="fold")
    for e in entries:
        meaning = e.era.value + (f" ({e.platform})" if e.platform else "")
        table.add_row(e.code, e.name, e.category.value, str(e.action), meaning, e.agents)
    _console().print(table)


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8", errors="replace"), "<stdin>"
    file = Path(path)
    try:
        return file.read_bytes().decode("utf-8", errors="replace"), file.name
    except OSError as exc:
        raise InputError(Problem(path, None, None, f"cannot read: {exc.strerror}")) from None


def _kind(name: str, text: str, kind: str) -> str:
    if kind != "auto":
        return kind
    if name.endswith(".log"):
        return "log"
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return "output"
        if isinstance(data, dict) and "status" in data and "resourceId" not in data:
            return "installer"
    return "output"


def _explain_file(
    path: str, exit_code: int | None, agent_version: str | None, kind: str, as_json: bool,
    run_started: datetime | None = None, clock_skew_s: float | None = None,
) -> None:
    text, name = _read(path)
    kind = _kind(name, text, kind)
    common: dict[str, Any] = {"agent_version": agent_version, "run_started": run_started,
                              "clock_skew_s": clock_skew_s}
    if kind == "log":
        evidence = Evidence(exit_code, log_tail=text, **common)
    elif kind == "installer":
        evidence = Evidence(exit_code, installer_output=text, **common)
    else:
        evidence = Evidence(exit_code, stdout=text, **common)
    diagnosis = classify(evidence)  # the engine's own call: one code path
    if as_json:
        click.echo(json.dumps(diagnosis_dict(diagnosis), indent=2))
        return
    console = _console()
    rows: list[tuple[str, str]] = [
        ("input", f"{name} (read as {kind})"),
        ("category", diagnosis.category.value),
        ("action", str(diagnosis.action)),
        ("code", diagnosis.code or "-"),
        ("name", diagnosis.name),
        ("cause", diagnosis.cause),
        ("fix", diagnosis.fix),
        ("evidence", diagnosis.evidence_line),
        ("rule", diagnosis.rule),
    ]
    if diagnosis.correlation_ids:
        rows.append(("correlation ids", ", ".join(diagnosis.correlation_ids)))
    if diagnosis.resource_id:
        rows.append(("resource id", diagnosis.resource_id))
    if diagnosis.retry_after_s is not None:
        rows.append(("retry after", f"{diagnosis.retry_after_s:g} s"))
    if diagnosis.doc_url:
        rows.append(("docs", diagnosis.doc_url))
    scope = breaker_scope(diagnosis)
    if scope is not None:
        rows.append(("breaker scope", f"{scope['kind']}: {scope['key']}"))
    for key, value in sorted(diagnosis.extra.items()):
        rows.append((key, value))
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows:
        # markup off: output text is data, and may contain [brackets]
        table.add_row(label, redact(value))
    with console.capture() as captured:
        console.print(table, markup=False)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


@click.command("codes")
@click.argument("code", required=False)
@click.option("--list", "list_all", is_flag=True, help="Print the whole catalog.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--explain", "explain", metavar="FILE",
    help="Classify a saved console output, azcmagent.log or installer JSON ('-' = stdin).",
)
@click.option("--exit-code", type=int, default=None, help="The exit status of that run.")
@click.option("--agent-version", default=None, help="The agent version, when known.")
@click.option(
    "--run-started", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    default=None, help="When that run started (UTC unless an offset is given): older log lines "
    "are history.",
)
@click.option("--clock-skew", type=float, default=None,
              help="The host's clock minus real time, in seconds, when known.")
@click.option(
    "--as", "kind", type=click.Choice(_KINDS), default="auto", show_default=True,
    help="How to read FILE (auto: *.log is a log, installer JSON is detected).",
)
def codes_command(
    code: str | None,
    list_all: bool,
    as_json: bool,
    explain: str | None,
    exit_code: int | None,
    agent_version: str | None,
    run_started: datetime | None,
    clock_skew: float | None,
    kind: str,
) -> None:
    """Explain AZCM codes, list the catalog, or diagnose a saved output.

    \b
      arcfleet codes AZCM0064             every meaning of one code, by agent version
      arcfleet codes --list [--json]      the whole catalog
      arcfleet codes --explain out.txt --exit-code 41
    """
    if explain is not None:
        if run_started is not None and run_started.tzinfo is None:
            run_started = run_started.replace(tzinfo=UTC)
        _explain_file(explain, exit_code, agent_version, kind, as_json, run_started, clock_skew)
    elif list_all:
        _list(as_json)
    elif code is not None:
        if normalize_code(code) is None:
            raise InputError(
                Problem("<command line>", None, "code", f"not an AZCM code: {code!r} "
                        "(expected e.g. AZCM0041 or 41)")
            )
        _explain_code(code, as_json)
    else:
        raise click.UsageError("give a CODE, --list or --explain FILE")


COMMANDS: list[click.Command] = [codes_command]

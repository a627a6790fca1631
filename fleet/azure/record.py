"""Azure check rows in the run store, and their table on the terminal.

The rows live in the run store's database in a table of their own (``azure_checks``), created
on first use, so the store's schema and its migrations are untouched. Every text is redacted
before it is written, like everything else in the store.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.azure.checks import CheckResult
from fleet.errors import StoreError
from fleet.redact import redact

_SCHEMA = """
CREATE TABLE IF NOT EXISTS azure_checks (
    run_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    check_name TEXT NOT NULL,
    scope TEXT NOT NULL,
    status TEXT NOT NULL,
    category TEXT,
    cause TEXT NOT NULL,
    fix TEXT NOT NULL,
    doc_url TEXT NOT NULL,
    hosts TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
)
"""


@dataclass(frozen=True)
class CheckRow:
    run_id: str
    check: str
    scope: str
    status: str
    category: str | None
    cause: str
    fix: str
    doc_url: str
    hosts: tuple[str, ...]
    detail: dict[str, str]


@contextlib.contextmanager
def _connect(db_path: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn = sqlite3.connect(db_path, timeout=15, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path}: {exc}") from exc
    try:
        conn.execute("PRAGMA busy_timeout = 15000")
        conn.execute(_SCHEMA)
        yield conn
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path}: {exc}") from exc
    finally:
        conn.close()


def record_checks(db_path: Path | None, run_id: str, results: Sequence[CheckResult]) -> None:
    """Append ``results`` to the run's check rows (one transaction)."""
    if db_path is None:  # a shared PostgreSQL store keeps no check rows yet (terminal and log do)
        return
    with _connect(db_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        start = conn.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM azure_checks "
                             "WHERE run_id = ?", (run_id,)).fetchone()[0]
        conn.executemany(
            "INSERT INTO azure_checks (run_id, position, check_name, scope, status, category,"
            " cause, fix, doc_url, hosts, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, start + i, r.check.value, redact(r.scope), r.status.value,
              r.category.value if r.category else None, redact(r.cause), redact(r.fix),
              r.doc_url, json.dumps(list(r.hosts)),
              json.dumps({k: redact(v) for k, v in r.detail.items()}))
             for i, r in enumerate(results)],
        )
        conn.execute("COMMIT")


def checks_for(db_path: Path, run_id: str) -> list[CheckRow]:
    """The check rows of one run, in the order they were recorded."""
    if not db_path.exists():
        return []
    with _connect(db_path) as conn:
        rows = conn.execute(
            "SELECT run_id, check_name, scope, status, category, cause, fix, doc_url, hosts,"
            " detail FROM azure_checks WHERE run_id = ? ORDER BY position", (run_id,)
        ).fetchall()
    return [CheckRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(json.loads(r[8])),
                     dict(json.loads(r[9]))) for r in rows]


def _hosts_text(hosts: Sequence[str]) -> str:
    if len(hosts) <= 3:
        return ", ".join(hosts)
    return f"{len(hosts)} hosts ({hosts[0]} .. {hosts[-1]})"


def render_checks(results: Sequence[CheckResult]) -> str:
    """Plain lines for the terminal: one per check, failed ones with their fix."""
    return render_rows([CheckRow("", r.check.value, r.scope, r.status.value,
                                 r.category.value if r.category else None, r.cause, r.fix,
                                 r.doc_url, r.hosts, r.detail) for r in results])


def render_rows(rows: Sequence[CheckRow],
                title: str = "Azure preflight (from this jump host):") -> str:
    lines = [title]
    for r in rows:
        what = f"  {r.status:<8} {r.check:<18} {r.scope}"
        if r.hosts:
            what += f"  [{_hosts_text(r.hosts)}]"
        lines.append(what)
        if r.status in ("failed", "warning", "not_done", "fixed") and r.cause:
            lines.append(f"           cause: {r.cause}")
            if r.fix and r.status != "fixed":
                lines.append(f"           fix: {r.fix}")
    return redact("\n".join(lines))

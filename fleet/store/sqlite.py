"""The SQLite backend: a durable journal of runs, hosts, attempts and outcomes in one file.

One database file, ``<state_dir>/arcfleet.db``, in WAL mode so a report can read while a run
writes. Every call that records something is one transaction committed before it returns, so a
run killed at any moment loses at most the steps that were in flight. Every text goes through
:func:`fleet.redact.redact` before it reaches the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol

from fleet.engine.outcome import Attempt, HostOutcome, HostStatus
from fleet.errors import StoreError
from fleet.redact import redact
from fleet.store.records import (
    RUN_KINDS,
    RUN_STATUSES,
    RUNS_DIR,
    AttemptRow,
    HostEntry,
    OutcomeRow,
    RunRecord,
    RunSummary,
    make_private_dir,
    new_run_id,
    utc_iso,
)
from fleet.store.records import dumps as _dumps
from fleet.store.records import opt as _opt
from fleet.store.records import parse_iso as _parse_iso
from fleet.store.records import pid_alive as _pid_alive
from fleet.store.records import private_umask as _private_umask
from fleet.store.sqlite_schema import migrate

DB_NAME: Final = "arcfleet.db"
BUSY_TIMEOUT_MS: Final = 15_000


class SqlCursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SqlConnection(Protocol):
    """What the store's statements need of a connection (sqlite3's, or the PostgreSQL one's
    adapter in :mod:`fleet.store.postgres`)."""

    def execute(self, sql: str, params: Sequence[object] = (), /) -> SqlCursor: ...

    def executemany(self, sql: str, params: Sequence[Sequence[object]], /) -> SqlCursor: ...


# --------------------------------------------------------------------------- the store


class RunStore:
    """The durable record of runs. Thread-safe: one connection guarded by a lock."""

    url: str | None = None  # a shared store's URL (never with a password); None here

    def __init__(self, state_dir: Path, conn: sqlite3.Connection) -> None:
        self.state_dir = state_dir
        self.db_path = state_dir / DB_NAME
        self._conn = conn
        self._lock = threading.RLock()
        self._host = socket.gethostname()

    # ---- opening

    @classmethod
    def open(cls, state_dir: Path, *, create: bool = True,
             synchronous: str = "NORMAL") -> RunStore:
        """Open (creating and migrating as needed) the store in ``state_dir``.

        With ``create=False`` a missing store is a :class:`StoreError` and nothing is created.
        ``synchronous`` is SQLite's setting: NORMAL (default) or FULL (also survives power loss).
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise StoreError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        state_dir = Path(state_dir)
        db_path = state_dir / DB_NAME
        if not create and not db_path.exists():
            raise StoreError(f"{state_dir}: no run store here (no runs recorded yet)")
        try:
            if create:
                make_private_dir(state_dir)
                make_private_dir(state_dir / RUNS_DIR)
            # The -wal and -shm files take the database file's mode; the umask covers the
            # moment before the database file exists.
            with _private_umask():
                conn = sqlite3.connect(
                    db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                    check_same_thread=False,
                )
                try:
                    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if str(mode).lower() != "wal":
                        raise StoreError(f"{db_path}: cannot switch to WAL mode (got {mode})")
                    # NORMAL in WAL mode survives a killed process (the WAL is in the OS cache);
                    # only a power loss can drop the last commits. bench/store_sync.py measures.
                    conn.execute(f"PRAGMA synchronous = {synchronous}")
                    conn.execute("PRAGMA foreign_keys = ON")
                    migrate(conn)
                except BaseException:
                    conn.close()
                    raise
            if db_path.exists():
                db_path.chmod(0o600)
        except sqlite3.Error as exc:
            raise StoreError(f"{db_path}: {exc}") from exc
        except OSError as exc:  # the directory cannot be created or tightened
            raise StoreError(f"{exc.filename or state_dir}: {exc.strerror or exc}") from exc
        return cls(state_dir, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[SqlConnection]:
        """One committed transaction; sqlite errors become StoreError."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.db_path}: {exc}") from exc

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside the block see one state of the store (one read transaction), so a
        report and its summary agree while a run is writing. No writes inside."""
        with self._lock:
            try:
                self._conn.execute("BEGIN DEFERRED")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.db_path}: {exc}") from exc
            try:
                yield
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            try:
                cursor = self._conn.execute(sql, params)
                cursor.row_factory = sqlite3.Row
                return list(cursor.fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"{self.db_path}: {exc}") from exc

    def run_folder(self, run_id: str) -> Path:
        return self.state_dir / RUNS_DIR / run_id

    # ---- writing

    def start_run(
        self,
        *,
        kind: str,
        command_line: list[str],
        inventory_paths: list[str],
        inventory_digest: str,
        playbook: str,
        options: dict[str, object],
        hosts: list[tuple[str, str, str, str]],
        parent_run_id: str | None = None,
    ) -> RunRecord:
        """Record a new run and its planned hosts (all pending); create its folder."""
        if kind not in RUN_KINDS:
            raise StoreError(f"unknown run kind {kind!r} (expected one of {sorted(RUN_KINDS)})")
        repeats = kind in ("rerun", "resume")
        if repeats != (parent_run_id is not None):
            raise StoreError(
                f"a {kind} run {'needs' if repeats else 'takes no'} parent_run_id"
                " (only rerun and resume repeat an earlier run)"
            )
        root_run_id: str | None = None
        if parent_run_id is not None:
            parent = self.get_run(parent_run_id)
            if parent is None:
                raise StoreError(f"parent run {parent_run_id} is not in {self.db_path}")
            root_run_id = parent.root_run_id
        started = utc_iso()
        for _ in range(20):
            run_id = new_run_id()
            try:
                with self._write() as conn:
                    conn.execute(
                        "INSERT INTO runs (id, parent_run_id, root_run_id, kind, started_at,"
                        " status, command_line, inventory_paths, inventory_digest, playbook,"
                        " options, pid, hostname) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?,"
                        " ?, ?, ?)",
                        (
                            run_id, parent_run_id, root_run_id or run_id, kind, started,
                            _dumps(list(command_line)), _dumps(list(inventory_paths)),
                            redact(inventory_digest), redact(playbook), _dumps(options),
                            os.getpid(), self._host,
                        ),
                    )
                    conn.executemany(
                        "INSERT INTO run_hosts (run_id, host, position, address, transport, os)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (run_id, redact(name), index, redact(address), redact(transport),
                             redact(os_name))
                            for index, (name, address, transport, os_name) in enumerate(hosts)
                        ],
                    )
            except StoreError as exc:
                if isinstance(exc.__cause__, sqlite3.IntegrityError) and "runs.id" in str(exc):
                    continue  # two runs in the same second drew the same suffix
                raise
            make_private_dir(self.run_folder(run_id))
            record = self.get_run(run_id)
            assert record is not None
            return record
        raise StoreError("could not allocate a unique run id")

    def host_started(self, run_id: str, host: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE run_hosts SET state = 'in_flight', started_at = ?"
                " WHERE run_id = ? AND host = ? AND state != 'done'",
                (utc_iso(), run_id, redact(host)),
            )

    def record_attempt(self, run_id: str, host: str, attempt: Attempt) -> None:
        self.record_attempts(run_id, [(host, attempt)])

    def record_attempts(self, run_id: str, attempts: Sequence[tuple[str, Attempt]]) -> None:
        """Attempts of any hosts, in their order, in one committed transaction."""
        with self._write() as conn:
            for host, attempt in attempts:
                self._insert_attempt(conn, run_id, host, attempt)

    @staticmethod
    def _insert_attempt(conn: SqlConnection, run_id: str, host: str, attempt: Attempt) -> None:
        diagnosis = attempt.diagnosis
        seq = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM attempts WHERE run_id = ? AND host = ?",
            (run_id, redact(host)),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO attempts (run_id, host, seq, stage, command, exit_status, category,"
            " azcm_code, duration_s, remediation, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, redact(host), seq, redact(attempt.stage), redact(attempt.command),
                attempt.exit_status,
                diagnosis.category.value if diagnosis else None,
                _opt(diagnosis.code) if diagnosis else None,
                float(attempt.duration_s), _opt(attempt.remediation),
                utc_iso(attempt.started_at),
            ),
        )

    def record_outcome(self, run_id: str, outcome: HostOutcome) -> None:
        """Store a host's outcome and mark it done; committed before this returns."""
        d = outcome.diagnosis
        host = redact(outcome.host)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO outcomes (run_id, host, address, transport, os, status,"
                " category, azcm_code, exit_code, cause, fix, message, correlation_id,"
                " resource_id, attempts, remediations, transcript_file, started_at, finished_at,"
                " duration_s, rule, action, agent_version_before, agent_version_after, install)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?)",
                (
                    run_id, host, redact(outcome.address), redact(outcome.transport),
                    redact(outcome.os), outcome.status.value, d.category.value, _opt(d.code),
                    outcome.exit_code, redact(d.cause), redact(d.fix), redact(d.evidence_line),
                    redact(" ".join(d.correlation_ids)), _opt(d.resource_id), outcome.attempts,
                    _dumps(list(outcome.remediations)), redact(outcome.transcript_file),
                    utc_iso(outcome.started_at), utc_iso(outcome.finished_at),
                    outcome.duration_s, redact(d.rule), str(d.action),
                    _opt(outcome.agent_version_before), _opt(outcome.agent_version_after),
                    redact(outcome.install),
                ),
            )
            updated = conn.execute(
                "UPDATE run_hosts SET state = 'done' WHERE run_id = ? AND host = ?",
                (run_id, host),
            ).rowcount
            if not updated:  # a host the plan did not list: keep the store consistent
                position = conn.execute(
                    "SELECT COALESCE(MAX(position), -1) + 1 FROM run_hosts WHERE run_id = ?",
                    (run_id,),
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO run_hosts (run_id, host, position, address, transport, os,"
                    " state, started_at) VALUES (?, ?, ?, ?, ?, ?, 'done', ?)",
                    (run_id, host, position, redact(outcome.address),
                     redact(outcome.transport), redact(outcome.os),
                     utc_iso(outcome.started_at)),
                )

    def finish_run(self, run_id: str, status: str) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(
                f"unknown run status {status!r} (expected one of {sorted(RUN_STATUSES)})"
            )
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                (status, utc_iso(), run_id),
            )

    # ---- reading

    def _effective_status(self, row: sqlite3.Row) -> str:
        status = str(row["status"])
        if (
            status == "running"
            and row["pid"] is not None
            and row["hostname"] == self._host
            and not _pid_alive(int(row["pid"]))
        ):
            return "crashed"
        return status

    def _run_record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"],
            folder=self.run_folder(row["id"]),
            kind=row["kind"],
            parent_run_id=row["parent_run_id"],
            root_run_id=row["root_run_id"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            status=self._effective_status(row),
            command_line=json.loads(row["command_line"]),
            inventory_paths=json.loads(row["inventory_paths"]),
            inventory_digest=row["inventory_digest"],
            playbook=row["playbook"],
            options=json.loads(row["options"]),
        )

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return self._run_record(rows[0]) if rows else None

    def resolve_run_id(self, prefix: str) -> str | None:
        """The run whose id is ``prefix`` or, failing that, the only one starting with it."""
        if self.get_run(prefix) is not None:
            return prefix
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._read("SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\'", (escaped + "%",))
        return str(rows[0]["id"]) if len(rows) == 1 else None

    def latest_run_id(self, root_only: bool = True) -> str | None:
        where = "WHERE parent_run_id IS NULL" if root_only else ""
        rows = self._read(f"SELECT id FROM runs {where} ORDER BY seq DESC LIMIT 1")
        return str(rows[0]["id"]) if rows else None

    def runs_under(self, root_run_id: str) -> list[RunRecord]:
        """The root run and every rerun/resume under it, in run order."""
        rows = self._read(
            "SELECT * FROM runs WHERE root_run_id = ? ORDER BY seq", (root_run_id,)
        )
        return [self._run_record(row) for row in rows]

    def list_runs(self) -> list[RunSummary]:
        runs = self._read("SELECT * FROM runs ORDER BY seq")
        counts = self._read(
            "SELECT run_id, status, COUNT(*) AS n FROM outcomes GROUP BY run_id, status"
        )
        planned = self._read(
            "SELECT h.run_id, COUNT(*) AS n,"
            " SUM(CASE WHEN o.host IS NULL THEN 1 ELSE 0 END) AS unfinished FROM run_hosts h"
            " LEFT JOIN outcomes o ON o.run_id = h.run_id AND o.host = h.host"
            " GROUP BY h.run_id"
        )
        by_run: dict[str, dict[str, int]] = {}
        for row in counts:
            by_run.setdefault(row["run_id"], {})[row["status"]] = int(row["n"])
        sizes = {row["run_id"]: (int(row["n"]), int(row["unfinished"] or 0)) for row in planned}
        result = []
        for row in runs:
            started = _parse_iso(row["started_at"])
            finished = _parse_iso(row["finished_at"])
            duration = (finished - started).total_seconds() if started and finished else None
            per_status = {status.value: 0 for status in HostStatus}
            per_status.update(by_run.get(row["id"], {}))
            hosts, unfinished = sizes.get(row["id"], (0, 0))
            result.append(
                RunSummary(
                    id=row["id"], kind=row["kind"], parent_run_id=row["parent_run_id"],
                    root_run_id=row["root_run_id"], started_at=row["started_at"],
                    finished_at=row["finished_at"], duration_s=duration,
                    status=self._effective_status(row), hosts=hosts, counts=per_status,
                    unfinished=unfinished,
                )
            )
        return result

    def run_hosts(self, run_id: str) -> list[HostEntry]:
        rows = self._read(
            "SELECT * FROM run_hosts WHERE run_id = ? ORDER BY position", (run_id,)
        )
        return [
            HostEntry(
                host=row["host"], address=row["address"], transport=row["transport"],
                os=row["os"], state=row["state"], started_at=row["started_at"],
            )
            for row in rows
        ]

    @staticmethod
    def _outcome_row(row: Any) -> OutcomeRow:
        return OutcomeRow(
            host=row["host"], address=row["address"], transport=row["transport"], os=row["os"],
            status=row["status"], category=row["category"], azcm_code=row["azcm_code"],
            exit_code=row["exit_code"], cause=row["cause"], fix=row["fix"],
            attempts=int(row["attempts"]),
            remediations=tuple(str(r) for r in json.loads(row["remediations"])),
            message=row["message"], correlation_id=row["correlation_id"],
            resource_id=row["resource_id"], log_file=row["transcript_file"],
            started_at=row["started_at"], finished_at=row["finished_at"],
            duration_s=row["duration_s"], run_id=row["run_id"],
            # Sites and workers are kept by the shared (PostgreSQL) store only. keys(): `in`
            # on an sqlite3.Row searches its values.
            site=row["site"] or "" if "site" in row.keys() else "",  # noqa: SIM118
            worker=row["worker"] or "" if "worker" in row.keys() else "",  # noqa: SIM118
            agent_version_before=row["agent_version_before"] or "",
            agent_version_after=row["agent_version_after"] or "",
            install=row["install"] or "",
        )

    def final_outcomes(self, root_run_id: str) -> dict[str, OutcomeRow]:
        """Each root host's latest outcome across the root run and its reruns/resumes.

        Latest means from the latest run (run order), then the latest ``finished_at``. Hosts
        with no outcome anywhere are absent. The dict follows the root run's host order.
        """
        rows = self._read(
            "SELECT o.* FROM outcomes o JOIN runs r ON r.id = o.run_id"
            " WHERE r.root_run_id = ? ORDER BY r.seq, o.finished_at",
            (root_run_id,),
        )
        latest: dict[str, OutcomeRow] = {}
        for row in rows:
            latest[row["host"]] = self._outcome_row(row)  # later rows overwrite earlier ones
        return {
            entry.host: latest[entry.host]
            for entry in self.run_hosts(root_run_id)
            if entry.host in latest
        }

    def hosts_to_rerun(
        self, root_run_id: str, categories: set[str] | None = None
    ) -> list[str]:
        """Root hosts not (already) connected at last look, in the root run's order.

        Hosts that never got an outcome (pending or in flight when a run died) are included
        only when ``categories`` is None.
        """
        final = self.final_outcomes(root_run_id)
        result = []
        for entry in self.run_hosts(root_run_id):
            row = final.get(entry.host)
            if row is None:
                if categories is None:
                    result.append(entry.host)
            elif row.status != HostStatus.SUCCESS.value and (
                categories is None or row.category in categories
            ):
                result.append(entry.host)
        return result

    def unfinished_hosts(self, run_id: str) -> tuple[list[str], list[str]]:
        """(in_flight, pending) hosts of ``run_id`` that did not finish in it.

        Unfinished: no outcome (the run died), or an ``interrupted`` outcome (Ctrl-C recorded
        one for every host it stopped or never started). In flight: the host had started.
        """
        rows = self._read(
            "SELECT h.host, h.state, h.started_at FROM run_hosts h LEFT JOIN outcomes o"
            " ON o.run_id = h.run_id AND o.host = h.host"
            " WHERE h.run_id = ? AND (o.host IS NULL OR o.status = ?) ORDER BY h.position",
            (run_id, HostStatus.INTERRUPTED.value),
        )
        in_flight = [row["host"] for row in rows if row["started_at"] is not None]
        pending = [row["host"] for row in rows if row["started_at"] is None]
        return in_flight, pending

    def host_history(self, host: str) -> list[OutcomeRow]:
        rows = self._read(
            "SELECT o.* FROM outcomes o JOIN runs r ON r.id = o.run_id"
            " WHERE o.host = ? ORDER BY r.seq, o.finished_at",
            (redact(host),),
        )
        return [self._outcome_row(row) for row in rows]

    def attempts_for(self, run_id: str, host: str) -> list[AttemptRow]:
        rows = self._read(
            "SELECT * FROM attempts WHERE run_id = ? AND host = ? ORDER BY seq",
            (run_id, redact(host)),
        )
        return [
            AttemptRow(
                run_id=row["run_id"], host=row["host"], seq=row["seq"], stage=row["stage"],
                command=row["command"], exit_status=row["exit_status"],
                category=row["category"], azcm_code=row["azcm_code"],
                duration_s=row["duration_s"], remediation=row["remediation"],
                started_at=row["started_at"],
            )
            for row in rows
        ]

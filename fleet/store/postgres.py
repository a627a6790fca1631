"""The PostgreSQL backend: one run store shared by the jump hosts of a fleet (psycopg 3).

The statements are the SQLite backend's (this class inherits its reads and most writes); what
differs is the connection (one psycopg connection in autocommit mode, each write one explicit
transaction committed before the call returns), the upsert of an outcome, and what only a shared
store has: sites, and workers that claim hosts with ``SELECT ... FOR UPDATE SKIP LOCKED`` and
hold a lease on each host they work, renewed while they work. The database's clock decides when
a lease expired, so workers' clocks need not agree.

psycopg is imported here only; this module is imported only when a ``postgresql://`` store is
used. The connection string shown anywhere is :func:`~fleet.store.locate.redact_dsn`'s.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from fleet.engine.outcome import HostOutcome
from fleet.errors import StoreError
from fleet.redact import redact
from fleet.store.locate import redact_dsn
from fleet.store.postgres_schema import migrate, schema_version
from fleet.store.records import (
    RUN_KINDS,
    RUNS_DIR,
    OutcomeRow,
    RunRecord,
    make_private_dir,
    new_run_id,
    utc_iso,
)
from fleet.store.records import dumps as _dumps
from fleet.store.records import opt as _opt
from fleet.store.sqlite import RunStore, SqlCursor

CONNECT_TIMEOUT_S = 15
_CREATE_LOCK = 0x61726367  # advisory lock key: workers joining or creating a claimed run


class LeaseLost(StoreError):
    """This worker's lease on a host expired and another worker claimed it: its result for that
    host is dropped (the other worker's counts)."""


@dataclass(frozen=True)
class Claim:
    host: str
    started_before: bool  # an earlier worker had started it (resume rules apply)
    claims: int  # times claimed, this one included


class _Transaction:
    """The store's statements on a psycopg connection: ``?`` placeholders become ``%s``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = (), /) -> SqlCursor:
        return self._conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, params: Sequence[Sequence[object]], /) -> SqlCursor:
        cursor = self._conn.cursor()
        cursor.executemany(sql.replace("?", "%s"), params)
        return cursor


class PostgresRunStore(RunStore):
    """The shared run store. Thread-safe: one connection guarded by a lock."""

    def __init__(self, url: str, state_dir: Path, conn: psycopg.Connection[Any]) -> None:
        self.state_dir = state_dir
        self.url: str | None = redact_dsn(url)
        self.db_path = Path(redact_dsn(url))  # named in messages, as the SQLite file is
        self._pg = conn
        self._lock = threading.RLock()
        self._host = socket.gethostname()
        self._worker = f"{self._host}:{os.getpid()}"  # who records, in a run without claims

    @classmethod
    def connect(cls, url: str, *, password: str | None = None) -> psycopg.Connection[Any]:
        extra: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S,
                                 "application_name": "arcfleet"}
        if password is not None:
            extra["password"] = password
        try:
            return psycopg.connect(url, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise StoreError(f"{redact_dsn(url)}: {redact(_first_line(exc))}") from None

    @classmethod
    def open(  # type: ignore[override]
        cls, url: str, state_dir: Path, *, password: str | None = None, create: bool = True
    ) -> PostgresRunStore:
        """Connect and bring the schema up to date (``create=False``: an empty database is a
        :class:`StoreError` and nothing is created)."""
        conn = cls.connect(url, password=password)
        try:
            if not create and schema_version(conn) == 0:
                raise StoreError(f"{redact_dsn(url)}: no run store here (no runs recorded yet)")
            migrate(conn)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"{redact_dsn(url)}: {redact(_first_line(exc))}") from None
        except BaseException:
            conn.close()
            raise
        state_dir = Path(state_dir)
        if create:
            try:
                make_private_dir(state_dir / RUNS_DIR)
            except OSError as exc:
                conn.close()
                raise StoreError(f"{exc.filename or state_dir}: {exc.strerror or exc}") from exc
        return cls(url, state_dir, conn)

    def close(self) -> None:
        with self._lock:
            self._pg.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[_Transaction]:
        with self._lock:
            try:
                with self._pg.transaction():
                    yield _Transaction(self._pg)
            except psycopg.Error as exc:
                raise StoreError(f"{self.db_path}: {redact(_first_line(exc))}") from exc

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._lock:
            try:
                with self._pg.transaction():
                    self._pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    yield
            except psycopg.Error as exc:
                raise StoreError(f"{self.db_path}: {redact(_first_line(exc))}") from exc

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            try:
                cursor = self._pg.cursor(row_factory=dict_row)
                cursor.execute(sql.replace("?", "%s"), params)
                return list(cursor.fetchall())
            except psycopg.Error as exc:
                raise StoreError(f"{self.db_path}: {redact(_first_line(exc))}") from exc

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
        sites: Mapping[str, str] | None = None,
    ) -> RunRecord:
        """Record a new run and its planned hosts. With ``sites`` (host -> site) the run is
        worked by workers that claim hosts; it has no owning process (``pid`` is NULL) and
        is finished by the worker that records its last host."""
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
        run_id = new_run_id()
        site_of = dict(sites or {})
        if sites is None and root_run_id is not None:  # a rerun keeps its hosts' sites
            site_of = self.host_sites(root_run_id)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, parent_run_id, root_run_id, kind, started_at, status,"
                " command_line, inventory_paths, inventory_digest, playbook, options, pid,"
                " hostname) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, parent_run_id, root_run_id or run_id, kind, utc_iso(),
                    _dumps(list(command_line)), _dumps(list(inventory_paths)),
                    redact(inventory_digest), redact(playbook), _dumps(options),
                    None if sites is not None else os.getpid(), self._host,
                ),
            )
            conn.executemany(
                "INSERT INTO run_hosts (run_id, host, position, address, transport, os, site)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, redact(name), index, redact(address), redact(transport),
                     redact(os_name), redact(site_of.get(name, "")))
                    for index, (name, address, transport, os_name) in enumerate(hosts)
                ],
            )
        make_private_dir(self.run_folder(run_id))
        record = self.get_run(run_id)
        assert record is not None
        return record

    def record_outcome(self, run_id: str, outcome: HostOutcome, *,
                       worker: str | None = None) -> None:
        """Store a host's outcome and mark it done. With ``worker``, only while that worker
        holds the host (else :class:`LeaseLost`, nothing written)."""
        d = outcome.diagnosis
        host = redact(outcome.host)
        with self._write() as conn:
            if worker is not None:
                holder = conn.execute(
                    "SELECT worker FROM run_hosts WHERE run_id = ? AND host = ? FOR UPDATE",
                    (run_id, host),
                ).fetchone()
                if holder is None or holder[0] != worker:
                    raise LeaseLost(f"{host}: the lease of worker {worker} expired")
            conn.execute("DELETE FROM outcomes WHERE run_id = ? AND host = ?", (run_id, host))
            conn.execute(
                "INSERT INTO outcomes (run_id, host, address, transport, os, status,"
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
                "UPDATE run_hosts SET state = 'done', lease_until = NULL,"
                " worker = COALESCE(worker, ?) WHERE run_id = ? AND host = ?",
                (worker or self._worker, run_id, host),
            ).rowcount
            if not updated:  # a host the plan did not list: keep the store consistent
                conn.execute(
                    "INSERT INTO run_hosts (run_id, host, position, address, transport, os,"
                    " state, started_at, worker) SELECT ?, ?,"
                    " COALESCE(MAX(position), -1) + 1, ?, ?, ?, 'done', ?, ? FROM run_hosts"
                    " WHERE run_id = ?",
                    (run_id, host, redact(outcome.address), redact(outcome.transport),
                     redact(outcome.os), utc_iso(outcome.started_at), worker or self._worker,
                     run_id),
                )

    # ---- claims (one run, many workers)

    def join_or_start_claimed_run(
        self,
        *,
        kind: str,
        command_line: list[str],
        inventory_paths: list[str],
        inventory_digest: str,
        playbook: str,
        options: dict[str, object],
        hosts: list[tuple[str, str, str, str]],
        site: str,
        site_hosts: list[str],
    ) -> RunRecord:
        """The running claimed run of ``kind`` (the latest), or a new one of ``hosts``; then
        ``site_hosts`` belong to ``site`` in it (added if the run lacks them; a host already
        given to another site stays there). One worker at a time, under an advisory lock, so
        workers starting together create one run."""
        lock_key = _CREATE_LOCK
        with self._lock:
            try:
                self._pg.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
            except psycopg.Error as exc:
                raise StoreError(f"{self.db_path}: {redact(_first_line(exc))}") from exc
            try:
                rows = self._read(
                    "SELECT id FROM runs WHERE parent_run_id IS NULL AND pid IS NULL"
                    " AND status = 'running' AND kind = ? ORDER BY seq DESC LIMIT 1",
                    (kind,),
                )
                if rows:
                    run_id = str(rows[0]["id"])
                else:
                    run_id = self.start_run(
                        kind=kind, command_line=command_line, inventory_paths=inventory_paths,
                        inventory_digest=inventory_digest, playbook=playbook, options=options,
                        hosts=hosts, sites=dict.fromkeys(site_hosts, site),
                    ).id
                wanted = set(site_hosts)
                with self._write() as conn:
                    conn.executemany(
                        "INSERT INTO run_hosts (run_id, host, position, address, transport,"
                        " os, site) SELECT ?, ?, COALESCE(MAX(position), -1) + 1, ?, ?, ?, ?"
                        " FROM run_hosts WHERE run_id = ?"
                        " ON CONFLICT (run_id, host) DO UPDATE SET site = EXCLUDED.site"
                        " WHERE run_hosts.site = ''",
                        [
                            (run_id, redact(name), redact(address), redact(transport),
                             redact(os_name), redact(site), run_id)
                            for name, address, transport, os_name in hosts
                            if name in wanted
                        ],
                    )
            finally:
                with contextlib.suppress(psycopg.Error):
                    self._pg.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
        make_private_dir(self.run_folder(run_id))
        record = self.get_run(run_id)
        assert record is not None
        return record

    def claim_hosts(self, run_id: str, site: str | None, worker: str, *, limit: int,
                    lease_s: float) -> list[Claim]:
        """Up to ``limit`` unfinished hosts of ``site`` (None: any) that no live lease holds,
        in plan order, now held by ``worker`` for ``lease_s`` seconds. Rows another worker is
        claiming at this moment are skipped, not waited for."""
        with self._write() as conn:
            rows = conn.execute(
                "WITH picked AS (SELECT host FROM run_hosts WHERE run_id = ?"
                " AND (CAST(? AS TEXT) IS NULL OR site = ?) AND state <> 'done'"
                " AND (worker IS NULL OR lease_until IS NULL OR lease_until < now())"
                " ORDER BY position LIMIT ? FOR UPDATE SKIP LOCKED)"
                " UPDATE run_hosts h SET worker = ?, claims = h.claims + 1,"
                " lease_until = now() + make_interval(secs => ?)"
                " FROM picked WHERE h.run_id = ? AND h.host = picked.host"
                " RETURNING h.host, h.started_at, h.claims, h.position",
                (run_id, site, site, limit, worker, float(lease_s), run_id),
            ).fetchall()
        rows.sort(key=lambda row: int(row[3]))
        return [Claim(host=row[0], started_before=row[1] is not None, claims=int(row[2]))
                for row in rows]

    def renew_leases(self, run_id: str, worker: str, lease_s: float) -> int:
        """Extend every lease ``worker`` holds in ``run_id``; the number still held."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE run_hosts SET lease_until = now() + make_interval(secs => ?)"
                " WHERE run_id = ? AND worker = ? AND state <> 'done'"
                " AND lease_until IS NOT NULL",
                (float(lease_s), run_id, worker),
            ).rowcount

    def release_host(self, run_id: str, worker: str, host: str) -> None:
        """Give a host back unfinished (the worker stops before working it)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE run_hosts SET lease_until = NULL, worker = NULL"
                " WHERE run_id = ? AND host = ? AND worker = ? AND state <> 'done'",
                (run_id, redact(host), worker),
            )

    def site_unfinished(self, run_id: str, site: str | None) -> int:
        rows = self._read(
            "SELECT COUNT(*) AS n FROM run_hosts WHERE run_id = ? AND state <> 'done'"
            " AND (CAST(? AS TEXT) IS NULL OR site = ?)",
            (run_id, site, site),
        )
        return int(rows[0]["n"])

    def finish_if_complete(self, run_id: str) -> bool:
        """Mark a claimed run finished once every host of every site is done."""
        with self._write() as conn:
            return bool(conn.execute(
                "UPDATE runs SET status = 'finished', finished_at = ? WHERE id = ?"
                " AND status = 'running' AND NOT EXISTS (SELECT 1 FROM run_hosts"
                " WHERE run_id = ? AND state <> 'done')",
                (utc_iso(), run_id, run_id),
            ).rowcount)

    def host_sites(self, run_id: str) -> dict[str, str]:
        rows = self._read("SELECT host, site FROM run_hosts WHERE run_id = ?", (run_id,))
        return {row["host"]: row["site"] for row in rows}

    # ---- reading: outcomes carry the host's site and the worker that finished it

    def final_outcomes(self, root_run_id: str) -> dict[str, OutcomeRow]:
        rows = self._read(
            "SELECT o.*, h.site, h.worker FROM outcomes o JOIN runs r ON r.id = o.run_id"
            " LEFT JOIN run_hosts h ON h.run_id = o.run_id AND h.host = o.host"
            " WHERE r.root_run_id = ? ORDER BY r.seq, o.finished_at",
            (root_run_id,),
        )
        latest: dict[str, OutcomeRow] = {}
        for row in rows:
            latest[row["host"]] = self._outcome_row(row)
        return {
            entry.host: latest[entry.host]
            for entry in self.run_hosts(root_run_id)
            if entry.host in latest
        }

    def host_history(self, host: str) -> list[OutcomeRow]:
        rows = self._read(
            "SELECT o.*, h.site, h.worker FROM outcomes o JOIN runs r ON r.id = o.run_id"
            " LEFT JOIN run_hosts h ON h.run_id = o.run_id AND h.host = o.host"
            " WHERE o.host = ? ORDER BY r.seq, o.finished_at",
            (redact(host),),
        )
        return [self._outcome_row(row) for row in rows]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""The SQLite backend's schema, as versioned migrations (``PRAGMA user_version``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Final

from fleet.errors import StoreError

# --------------------------------------------------------------------------- schema migrations
# MIGRATIONS[i] takes a database at user_version i to i + 1, inside one transaction. Statements
# run one by one (never executescript, which commits on its own).


def _migrate_v1(conn: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE runs (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            parent_run_id TEXT REFERENCES runs(id),
            root_run_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            command_line TEXT NOT NULL,
            inventory_paths TEXT NOT NULL,
            inventory_digest TEXT NOT NULL,
            playbook TEXT NOT NULL,
            options TEXT NOT NULL,
            pid INTEGER,
            hostname TEXT
        )""",
        "CREATE INDEX runs_root ON runs(root_run_id, seq)",
        """CREATE TABLE run_hosts (
            run_id TEXT NOT NULL REFERENCES runs(id),
            host TEXT NOT NULL,
            position INTEGER NOT NULL,
            address TEXT NOT NULL,
            transport TEXT NOT NULL,
            os TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            started_at TEXT,
            PRIMARY KEY (run_id, host)
        )""",
        """CREATE TABLE outcomes (
            run_id TEXT NOT NULL REFERENCES runs(id),
            host TEXT NOT NULL,
            address TEXT NOT NULL,
            transport TEXT NOT NULL,
            os TEXT NOT NULL,
            status TEXT NOT NULL,
            category TEXT NOT NULL,
            azcm_code TEXT,
            exit_code INTEGER,
            cause TEXT NOT NULL,
            fix TEXT NOT NULL,
            message TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            resource_id TEXT,
            attempts INTEGER NOT NULL,
            remediations TEXT NOT NULL,
            transcript_file TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            duration_s REAL NOT NULL,
            rule TEXT NOT NULL,
            action TEXT NOT NULL,
            PRIMARY KEY (run_id, host)
        )""",
        "CREATE INDEX outcomes_host ON outcomes(host)",
        """CREATE TABLE attempts (
            run_id TEXT NOT NULL REFERENCES runs(id),
            host TEXT NOT NULL,
            seq INTEGER NOT NULL,
            stage TEXT NOT NULL,
            command TEXT NOT NULL,
            exit_status INTEGER,
            category TEXT,
            azcm_code TEXT,
            duration_s REAL NOT NULL,
            remediation TEXT,
            started_at TEXT NOT NULL,
            PRIMARY KEY (run_id, host, seq)
        )""",
    ]
    for statement in statements:
        conn.execute(statement)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """The install stage: agent version before/after and what the stage did, per host."""
    for statement in INSTALL_COLUMNS:
        conn.execute(statement)


#: v2 of the SQLite store and v3 of the PostgreSQL one (the same columns)
INSTALL_COLUMNS: Final = (
    "ALTER TABLE outcomes ADD COLUMN agent_version_before TEXT",
    "ALTER TABLE outcomes ADD COLUMN agent_version_after TEXT",
    "ALTER TABLE outcomes ADD COLUMN install TEXT NOT NULL DEFAULT ''",
)

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: Final[tuple[Migration, ...]] = (_migrate_v1, _migrate_v2)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring ``conn`` (autocommit mode) to ``len(migrations)``; return the resulting version.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction and re-reads the version inside it,
    so two processes opening a fresh store at once do not both apply a step.
    """
    target = len(migrations)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > target:
                raise StoreError(
                    f"the run store has schema version {version}, newer than this arcfleet "
                    f"understands ({target}); use a newer arcfleet or another --state-dir"
                )
            if version == target:
                conn.execute("COMMIT")
                return version
            migrations[version](conn)
            # PRAGMA takes no parameters; the value is an int we computed.
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

"""The PostgreSQL backend's schema, as versioned migrations.

The version lives in ``arcfleet_schema``. Each step runs in one transaction holding an advisory
lock, so jump hosts that migrate at the same moment apply every step once. Timestamps are ISO
8601 text in UTC, as in SQLite, so both backends hand back the same records; lease deadlines are
``timestamptz`` because the database's clock (never a worker's) decides when a lease expired.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from fleet.errors import StoreError
from fleet.store.sqlite_schema import INSTALL_COLUMNS

if TYPE_CHECKING:
    import psycopg

# Any fixed number: the key of the advisory lock migrations hold ("arcf").
_MIGRATION_LOCK: Final = 0x61726366

_V1: Final[tuple[str, ...]] = (
    """CREATE TABLE runs (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
        duration_s DOUBLE PRECISION,
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
        duration_s DOUBLE PRECISION NOT NULL,
        remediation TEXT,
        started_at TEXT NOT NULL,
        PRIMARY KEY (run_id, host, seq)
    )""",
)

# v2: sites and workers. A host belongs to a site; a worker claims it with a lease it renews.
_V2: Final[tuple[str, ...]] = (
    "ALTER TABLE run_hosts ADD COLUMN site TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE run_hosts ADD COLUMN worker TEXT",
    "ALTER TABLE run_hosts ADD COLUMN lease_until TIMESTAMPTZ",
    "ALTER TABLE run_hosts ADD COLUMN claims INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX run_hosts_claim ON run_hosts(run_id, site, state, position)",
)

# v3: the install stage (agent version before/after, what the stage did), as in SQLite v2.
_V3: Final[tuple[str, ...]] = INSTALL_COLUMNS

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's version; 0 for an empty database."""
    row = conn.execute("SELECT to_regclass('arcfleet_schema') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT version FROM arcfleet_schema").fetchone()
    return int(found[0]) if found else 0


def migrate(
    conn: psycopg.Connection[Any],
    migrations: Sequence[Sequence[str]] = MIGRATIONS,
) -> tuple[int, int]:
    """Bring the database to ``len(migrations)``; return (version before, version after).

    ``conn`` is in autocommit mode; each step is its own transaction under the advisory lock.
    """
    target = len(migrations)
    before: int | None = None
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS arcfleet_schema (version INTEGER NOT NULL)")
            version = schema_version(conn)
            if before is None:
                before = version
            if version > target:
                raise StoreError(
                    f"the run store has schema version {version}, newer than this arcfleet "
                    f"understands ({target}); use a newer arcfleet"
                )
            if version == target:
                return before, version
            for statement in migrations[version]:
                conn.execute(statement)
            conn.execute("DELETE FROM arcfleet_schema")
            conn.execute("INSERT INTO arcfleet_schema (version) VALUES (%s)", (version + 1,))

"""The run store: a durable journal of runs, hosts, attempts and outcomes.

Two backends behind one interface (:class:`StoreBackend`): SQLite, one file per jump host and
the default (:class:`RunStore`), and PostgreSQL, one database shared by the jump hosts of a
fleet that spans network segments (:mod:`fleet.store.postgres`, imported only when used).
"""

from __future__ import annotations

from fleet.store.base import RunStoreSink, StoreBackend
from fleet.store.records import (
    HOST_STATES,
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
from fleet.store.sqlite import BUSY_TIMEOUT_MS, DB_NAME, RunStore
from fleet.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, Migration, migrate

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DB_NAME",
    "HOST_STATES",
    "MIGRATIONS",
    "RUNS_DIR",
    "RUN_KINDS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "AttemptRow",
    "HostEntry",
    "Migration",
    "OutcomeRow",
    "RunRecord",
    "RunStore",
    "RunStoreSink",
    "RunSummary",
    "StoreBackend",
    "make_private_dir",
    "migrate",
    "new_run_id",
    "utc_iso",
]

"""The run store's interface, which every backend implements, and the engine's sink onto it.

Run model: a *first* run (onboard, preflight, offboard) is its own root. A ``rerun`` or ``resume``
names the run it repeats as its parent and shares the parent's root. The final state of a fleet
is each root host's latest outcome across the root and all runs under it.

Backends: :class:`fleet.store.sqlite.RunStore` (one file per jump host, the default) and
:class:`fleet.store.postgres.PostgresRunStore` (one database shared by many jump hosts). Both keep
run folders (transcripts, failures.csv, run log) under the local ``state_dir``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Protocol

from fleet.engine.outcome import Attempt, HostOutcome
from fleet.store.records import AttemptRow, HostEntry, OutcomeRow, RunRecord, RunSummary


class StoreBackend(Protocol):
    """What the CLI, the engine's sink and the reports use of a run store.

    Every call that records something is one transaction committed before it returns.
    """

    state_dir: Path

    def close(self) -> None: ...

    def __enter__(self) -> StoreBackend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads inside the block see one state of the store."""
        ...

    def run_folder(self, run_id: str) -> Path: ...

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
    ) -> RunRecord: ...

    def host_started(self, run_id: str, host: str) -> None: ...

    def record_attempt(self, run_id: str, host: str, attempt: Attempt) -> None: ...

    def record_outcome(self, run_id: str, outcome: HostOutcome) -> None: ...

    def finish_run(self, run_id: str, status: str) -> None: ...

    # ---- reading

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def resolve_run_id(self, prefix: str) -> str | None: ...

    def latest_run_id(self, root_only: bool = True) -> str | None: ...

    def runs_under(self, root_run_id: str) -> list[RunRecord]: ...

    def list_runs(self) -> list[RunSummary]: ...

    def run_hosts(self, run_id: str) -> list[HostEntry]: ...

    def final_outcomes(self, root_run_id: str) -> dict[str, OutcomeRow]: ...

    def hosts_to_rerun(
        self, root_run_id: str, categories: set[str] | None = None
    ) -> list[str]: ...

    def unfinished_hosts(self, run_id: str) -> tuple[list[str], list[str]]: ...

    def host_history(self, host: str) -> list[OutcomeRow]: ...

    def attempts_for(self, run_id: str, host: str) -> list[AttemptRow]: ...


class RunStoreSink:
    """The durable :class:`~fleet.engine.outcome.OutcomeSink`: every call is one commit."""

    def __init__(self, store: StoreBackend, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def host_started(self, host: str) -> None:
        self.store.host_started(self.run_id, host)

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        self.store.record_attempt(self.run_id, host, attempt)

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        self.store.record_outcome(self.run_id, outcome)


__all__ = ["RunStoreSink", "StoreBackend"]

"""The run store's interface, which every backend implements, and the engine's sink onto it.

Run model: a *first* run (onboard, preflight, offboard) is its own root. A ``rerun`` or ``resume``
names the run it repeats as its parent and shares the parent's root. The final state of a fleet
is each root host's latest outcome across the root and all runs under it.

Backends: :class:`fleet.store.sqlite.RunStore` (one file per jump host, the default) and
:class:`fleet.store.postgres.PostgresRunStore` (one database shared by many jump hosts). Both keep
run folders (transcripts, failures.csv, run log) under the local ``state_dir``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Protocol

from fleet.engine.outcome import Attempt, HostOutcome
from fleet.store.records import AttemptRow, HostEntry, OutcomeRow, RunRecord, RunSummary
from fleet.turn_end import AtTurnEnd


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

    def record_attempts(self, run_id: str, attempts: Sequence[tuple[str, Attempt]]) -> None: ...

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
    """The durable :class:`~fleet.engine.outcome.OutcomeSink`.

    A host start and an outcome are committed before the call returns (a printed outcome is in
    the store). Attempts recorded during one turn of the event loop are committed together at
    the end of that turn: a host script's records arrive in bursts, and hundreds of hosts' in
    one turn, so one commit serves them all, and a crash loses at most what arrived in the turn
    it died in (as if it had died a moment earlier). Without a running loop every attempt is
    committed at once.
    """

    def __init__(self, store: StoreBackend, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._pending: list[tuple[str, Attempt]] = []
        self._turn_end = AtTurnEnd(self._flush_soon)

    def host_started(self, host: str) -> None:
        self.flush()
        self.store.host_started(self.run_id, host)

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        self._pending.append((host, attempt))
        self._turn_end.request()

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        self.flush()  # the attempts first: the store keeps their order
        self.store.record_outcome(self.run_id, outcome)

    def flush(self) -> None:
        """Commit the attempts not yet committed (a failure keeps them, and raises)."""
        pending, self._pending = self._pending, []
        if pending:
            try:
                self.store.record_attempts(self.run_id, pending)
            except BaseException:
                self._pending = pending + self._pending
                raise

    def _flush_soon(self) -> None:
        # A store error here would only reach the loop's handler (a traceback on the
        # terminal): the attempts stay pending; the next start or outcome commits them again
        # and raises if the store still fails.
        with contextlib.suppress(Exception):
            self.flush()


__all__ = ["RunStoreSink", "StoreBackend"]

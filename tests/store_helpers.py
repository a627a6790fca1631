"""Synthesised engine results for store and report tests (the engine is not under test here).

Also runnable as a child process: ``python -m tests.store_helpers write STATE_DIR COUNT`` starts a
run of COUNT hosts and records them one by one, printing ``committed <host>`` after each outcome
is committed, so a parent can kill it at any moment and check what survived. An optional
PAUSE_AT makes it print ``paused`` after that many hosts and wait for a line on stdin.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleet.azcm.diagnosis import FAIL_HOST, NONE, Action, ActionKind, Category, Diagnosis
from fleet.engine.outcome import Attempt, HostOutcome
from fleet.store import RunStore

T0 = datetime(2026, 11, 26, 1, 0, 0, tzinfo=UTC)


def diagnosis(
    category: Category,
    *,
    code: str | None = None,
    cause: str = "",
    fix: str = "",
    message: str = "",
    correlation_ids: tuple[str, ...] = (),
    resource_id: str | None = None,
) -> Diagnosis:
    action: Action = NONE if category.is_success else FAIL_HOST
    if category is Category.THROTTLED:
        action = Action(ActionKind.RETRY)
    return Diagnosis(
        category=category, action=action, code=code, cause=cause, fix=fix,
        evidence_line=message, correlation_ids=correlation_ids, resource_id=resource_id,
        rule="test",
    )


def outcome(
    host: str,
    category: Category = Category.CONNECTED,
    *,
    code: str | None = None,
    cause: str = "",
    fix: str = "",
    message: str = "",
    attempts: int = 1,
    remediations: tuple[str, ...] = (),
    exit_code: int | None = 0,
    transcript_file: str = "",
    start: datetime = T0,
    seconds: float = 2.5,
    transport: str = "ssh",
    os_name: str = "linux",
    correlation_ids: tuple[str, ...] = (),
    resource_id: str | None = None,
) -> HostOutcome:
    return HostOutcome(
        host=host,
        address=f"127.0.9.{abs(hash(host)) % 200 + 1}",
        transport=transport,
        os=os_name,
        diagnosis=diagnosis(
            category, code=code, cause=cause, fix=fix, message=message,
            correlation_ids=correlation_ids, resource_id=resource_id,
        ),
        started_at=start,
        finished_at=start + timedelta(seconds=seconds),
        attempts=attempts,
        remediations=remediations,
        exit_code=exit_code,
        transcript_file=transcript_file or f"runs/x/{host}.log",
    )


def attempt(command: str = "azcmagent connect --config /tmp/x.json", *,
            exit_status: int | None = 0, category: Category | None = None) -> Attempt:
    return Attempt(
        stage="connect", command=command, exit_status=exit_status, duration_s=1.25,
        started_at=T0, diagnosis=diagnosis(category) if category else None,
    )


def host_tuples(names: list[str]) -> list[tuple[str, str, str, str]]:
    return [(name, f"127.0.9.{i + 1}", "ssh", "linux") for i, name in enumerate(names)]


def start(store: RunStore, names: list[str], *, kind: str = "onboard",
          parent_run_id: str | None = None) -> str:
    record = store.start_run(
        kind=kind, command_line=["arcfleet", kind, "-i", "inv.yaml"],
        inventory_paths=["inv.yaml"], inventory_digest="sha256:0", playbook="default",
        options={"forks": 10}, hosts=host_tuples(names), parent_run_id=parent_run_id,
    )
    return record.id


def _write(state_dir: Path, count: int, pause_at: int = -1) -> None:
    names = [f"h{i:05d}" for i in range(count)]
    with RunStore.open(state_dir) as store:
        run_id = start(store, names)
        print(f"run {run_id}", flush=True)
        for index, name in enumerate(names):
            if index == pause_at:  # hold with the store open until the parent says go
                print("paused", flush=True)
                sys.stdin.readline()
            store.host_started(run_id, name)
            store.record_attempt(run_id, name, attempt())
            store.record_outcome(run_id, outcome(name, Category.NETWORK, cause="no route"))
            print(f"committed {name}", flush=True)
        store.finish_run(run_id, "finished")
        print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        _write(Path(sys.argv[2]), int(sys.argv[3]), *(int(a) for a in sys.argv[4:5]))

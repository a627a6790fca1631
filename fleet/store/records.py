"""Run-store records and the helpers every backend shares (timestamps, ids, JSON, redaction)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from fleet.redact import redact, redact_value

RUNS_DIR: Final = "runs"

RUN_KINDS: Final = frozenset(
    {"onboard", "preflight", "offboard", "install", "rerun", "resume"}
)
RUN_STATUSES: Final = frozenset({"running", "finished", "interrupted", "crashed"})
HOST_STATES: Final = ("pending", "in_flight", "done")

_PRIVATE_UMASK: Final = 0o077


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RunRecord:
    id: str
    folder: Path  # state_dir/runs/<id>/: transcripts, failures.csv, run log
    kind: str
    parent_run_id: str | None
    root_run_id: str
    started_at: str
    finished_at: str | None
    status: str  # running | finished | interrupted | crashed (a dead writer reads as crashed)
    command_line: list[str]
    inventory_paths: list[str]
    inventory_digest: str
    playbook: str
    options: dict[str, object]


@dataclass(frozen=True)
class RunSummary:
    id: str
    kind: str
    parent_run_id: str | None
    root_run_id: str
    started_at: str
    finished_at: str | None
    duration_s: float | None
    status: str
    hosts: int
    counts: dict[str, int]  # HostStatus value -> hosts of this run with that outcome
    unfinished: int  # hosts of this run without an outcome


@dataclass(frozen=True)
class OutcomeRow:
    """One host's outcome as stored; the fields are the report columns plus ``run_id``."""

    host: str
    address: str
    transport: str
    os: str
    status: str
    category: str
    azcm_code: str | None
    exit_code: int | None
    cause: str
    fix: str
    attempts: int
    remediations: tuple[str, ...]
    message: str
    correlation_id: str
    resource_id: str | None
    log_file: str
    started_at: str
    finished_at: str
    duration_s: float | None
    run_id: str = ""
    site: str = ""  # the host's site (shared store; empty otherwise)
    worker: str = ""  # the worker that finished it (shared store; empty otherwise)
    agent_version_before: str = ""  # what preflight found ("" = no agent or not read)
    agent_version_after: str = ""
    install: str = ""  # installed | upgraded | failed | would_install | uninstalled | ""


@dataclass(frozen=True)
class AttemptRow:
    run_id: str
    host: str
    seq: int
    stage: str
    command: str
    exit_status: int | None
    category: str | None
    azcm_code: str | None
    duration_s: float
    remediation: str | None
    started_at: str


@dataclass(frozen=True)
class HostEntry:
    """A host as planned in a run."""

    host: str
    address: str
    transport: str
    os: str
    state: str
    started_at: str | None = None


# --------------------------------------------------------------------------- helpers


def utc_iso(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with milliseconds; naive datetimes are taken as UTC."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def jsonable(value: object) -> Any:
    """Options as JSON: unknown types (Path, enums, sets) become strings or lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def dumps(value: object) -> str:
    # Redact the values first (escaping in JSON could hide a secret from a textual pass), then
    # the text once more for anything that slipped through.
    return redact(json.dumps(redact_value(jsonable(value)), ensure_ascii=False, sort_keys=True))


def opt(text: str | None) -> str | None:
    return None if text is None else redact(text)


def new_run_id(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    old = os.umask(_PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) owner-only; tighten it if it already exists."""
    with private_umask():
        path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)

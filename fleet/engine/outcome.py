"""What the engine produces for each host: attempts as they happen, one outcome at the end.

The engine hands both to an :class:`OutcomeSink` the moment they are known; the run store is the
durable sink, the live display and ``--json`` printer are others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from fleet.azcm.diagnosis import Category, Diagnosis


class HostStatus(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    READY = "ready"  # preflight: every check passed; the onboard would connect it

    @classmethod
    def for_category(cls, category: Category) -> HostStatus:
        if category.is_success:
            return cls.SUCCESS
        if category is Category.SKIPPED:
            return cls.SKIPPED
        if category is Category.READY:
            return cls.READY
        if category is Category.INTERRUPTED:
            return cls.INTERRUPTED
        return cls.FAILED

    @property
    def settled(self) -> bool:
        """Nothing more to do for the host: the run reached its goal, or a preflight found it
        ready. Settled hosts make exit status 0 and are left out of failures and reruns."""
        return self in (HostStatus.SUCCESS, HostStatus.READY)


@dataclass(frozen=True)
class Attempt:
    """One step run on a host: a command (or a transport action) and what it produced."""

    stage: str  # preflight | connect | verify | collect | remediate | disconnect
    command: str  # as sent; secrets never appear in commands
    exit_status: int | None
    duration_s: float
    started_at: datetime
    diagnosis: Diagnosis | None = None
    remediation: str | None = None  # the remediation this step applied, if any
    stdout: str = ""
    stderr: str = ""
    truncated_bytes: int = 0  # output dropped by the transport's cap (OUTPUT_CAP_BYTES)
    # The --config file the command read, credentials masked (agent_config.shown_config).
    config: str = ""


@dataclass(frozen=True)
class HostOutcome:
    host: str
    address: str
    transport: str
    os: str
    diagnosis: Diagnosis
    started_at: datetime
    finished_at: datetime
    attempts: int = 0  # connect attempts made
    remediations: tuple[str, ...] = ()
    exit_code: int | None = None  # of the last azcmagent command
    transcript_file: str = ""
    steps: tuple[Attempt, ...] = field(default=(), repr=False)
    # The install stage: the agent version preflight found and the one the host ended with,
    # and what the stage did (installed, upgraded, failed, would_install, uninstalled, "").
    agent_version_before: str | None = None
    agent_version_after: str | None = None
    install: str = ""

    @property
    def category(self) -> Category:
        return self.diagnosis.category

    @property
    def status(self) -> HostStatus:
        return HostStatus.for_category(self.diagnosis.category)

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class OutcomeSink(Protocol):
    """Receives results as they happen. Implementations must not raise on ordinary input."""

    def host_started(self, host: str) -> None: ...

    def attempt_recorded(self, host: str, attempt: Attempt) -> None: ...

    def outcome_recorded(self, outcome: HostOutcome) -> None: ...

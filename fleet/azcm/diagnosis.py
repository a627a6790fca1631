"""The vocabulary of outcomes: categories, actions, and the Diagnosis every host ends with.

Categories (a fixed vocabulary; reports and the CSV use exactly these strings):

``connected``          azcmagent connected the host and verification agrees.
``already_connected``  the host was already connected to the requested target; nothing was done.
``invalid_input``      azcmagent rejected its arguments or configuration (bad region, GUID, tag).
``credentials``        Entra ID refused the service principal (wrong/expired secret, unknown app
                       or tenant).
``permissions``        ARM refused the request: missing role assignment, unregistered provider.
``network``            the host could not reach an Azure endpoint (DNS, proxy, firewall, TLS).
``throttled``          ARM answered 429; retried after ``Retry-After``.
``agent_service``      the local agent services (himds, arcproxy) are not answering.
``elevation``          the command was not run as root / local Administrator.
``resource_conflict``  the machine or its Azure resource is bound to something else (already
                       connected elsewhere, name taken).
``stale_resource``     the Azure resource is gone or broken while local state still points at it.
``host_prerequisite``  the host itself lacks something (TPM, disk, OS support, certificate store).
``agent_missing``      azcmagent is not installed on the host (transport-level finding).
``unreachable``        no session could be opened to the host (refused, no route, DNS, timeout).
``auth``               the host refused our login or its host key did not verify.
``timeout``            a command passed its deadline and was stopped on the host.
``interrupted``        the operator stopped the run (Ctrl-C) before the host finished, or
                       azcmagent itself was interrupted (AZCM0011; retried).
``skipped``            arcfleet chose not to start the host (circuit breaker, limit, resume).
``unknown``            no rule matched; the Diagnosis carries the raw evidence.
``disconnected``       (offboard only) the host was disconnected, or was not connected.
``ready``              (preflight only) every check passed and the host is not connected: the
                       onboard would connect it (``extra["onboard_would"]``).

The six ``agent_missing`` .. ``skipped`` describe the transport and the run rather than azcmagent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Category(StrEnum):
    CONNECTED = "connected"
    ALREADY_CONNECTED = "already_connected"
    INVALID_INPUT = "invalid_input"
    CREDENTIALS = "credentials"
    PERMISSIONS = "permissions"
    NETWORK = "network"
    THROTTLED = "throttled"
    AGENT_SERVICE = "agent_service"
    ELEVATION = "elevation"
    RESOURCE_CONFLICT = "resource_conflict"
    STALE_RESOURCE = "stale_resource"
    HOST_PREREQUISITE = "host_prerequisite"
    AGENT_MISSING = "agent_missing"
    UNREACHABLE = "unreachable"
    AUTH = "auth"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"
    DISCONNECTED = "disconnected"
    READY = "ready"

    @property
    def is_success(self) -> bool:
        return self in (Category.CONNECTED, Category.ALREADY_CONNECTED, Category.DISCONNECTED)


class ActionKind(StrEnum):
    NONE = "none"
    RETRY = "retry"
    REMEDIATE = "remediate"
    FAIL_HOST = "fail_host"
    FAIL_RUN = "fail_run"


class Remediation(StrEnum):
    """Named fixes the engine knows how to apply before retrying."""

    RESTART_AGENT_SERVICE = "restart_agent_service"
    RERUN_ELEVATED = "rerun_elevated"
    DISCONNECT_LOCAL = "disconnect_force_local_only"
    REFRESH_TOKEN = "refresh_token"
    WAIT_FOR_HIMDS = "wait_for_himds"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    remediation: Remediation | None = None

    def __str__(self) -> str:
        if self.kind is ActionKind.REMEDIATE and self.remediation:
            return f"remediate:{self.remediation.value}"
        return self.kind.value

    @classmethod
    def parse(cls, text: str) -> Action:
        if text.startswith("remediate:"):
            return cls(ActionKind.REMEDIATE, Remediation(text.split(":", 1)[1]))
        return cls(ActionKind(text))


NONE = Action(ActionKind.NONE)
RETRY = Action(ActionKind.RETRY)
FAIL_HOST = Action(ActionKind.FAIL_HOST)
FAIL_RUN = Action(ActionKind.FAIL_RUN)


@dataclass(frozen=True)
class Evidence:
    """What one run of a command on a host left behind, as input to the classifier."""

    exit_status: int | None
    stdout: str = ""
    stderr: str = ""
    log_tail: str = ""
    installer_output: str | None = None  # the install script's --output JSON, when present
    agent_version: str | None = None
    # When this run started (host or jump-host clock, UTC): azcmagent.log lines older than this
    # belong to earlier runs and are history, not this run's verdict.
    run_started: datetime | None = None
    # Host clock minus jump-host clock, in seconds, when preflight measured it (`date -u` /
    # Get-Date). A large skew turns certificate-validity and token-time errors into a clock fix.
    clock_skew_s: float | None = None


@dataclass(frozen=True)
class Diagnosis:
    """An outcome an operator can act on without opening the host."""

    category: Category
    action: Action
    code: str | None = None  # "AZCM0041"; None when no code applies
    name: str = ""  # the code's short name, or a rule's name
    cause: str = ""
    fix: str = ""
    doc_url: str = ""
    evidence_line: str = ""  # the line that decided the diagnosis (redacted by writers)
    correlation_ids: tuple[str, ...] = ()
    resource_id: str | None = None
    retry_after_s: float | None = None
    rule: str = ""  # which rule matched: "pattern:<name>", "code", "exit", "transport", ...
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def fail_run(self) -> bool:
        return self.action.kind is ActionKind.FAIL_RUN

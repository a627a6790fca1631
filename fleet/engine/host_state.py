"""What a host run knows and decides with: the agent's state, progress an interrupted run left,
and the diagnoses the engine makes itself (split from :mod:`fleet.engine.host_run`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fleet.azcm.diagnosis import Action, ActionKind, Category, Diagnosis
from fleet.engine.outcome import Attempt, OutcomeSink
from fleet.engine.pacing import TokenBucket
from fleet.engine.playbook import Playbook
from fleet.engine.sp_certificate import SpCertificate
from fleet.inventory.model import ResolvedHost
from fleet.transport.base import CommandResult


@dataclass
class AgentState:
    """What ``azcmagent show --json`` said."""

    status: str = ""
    resource_id: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.status.lower() == "connected" and bool(self.resource_id)

    @classmethod
    def parse(cls, text: str) -> AgentState | None:
        start = text.find("{")
        if start < 0:
            return None
        try:
            body = json.loads(text[start : text.rfind("}") + 1])
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        lowered = {str(k).lower(): v for k, v in body.items()}
        return cls(
            status=str(lowered.get("status") or ""),
            resource_id=str(lowered.get("resourceid") or ""),
            fields=lowered,
        )

    def matches(self, host: ResolvedHost) -> bool:
        """Connected to the target the inventory asks for (case-insensitive, as ARM ids are)."""
        expected = host.azure.expected_resource_id(host.name)
        if expected is not None:
            return self.resource_id.lower() == expected.lower()
        wanted = {
            "subscriptionid": host.azure.subscription_id,
            "resourcegroup": host.azure.resource_group,
            "tenantid": host.azure.tenant_id,
            "location": host.azure.location,
        }
        return all(
            str(self.fields.get(key, "")).lower() == value.lower()
            for key, value in wanted.items()
            if value
        )


class HostFinished(Exception):
    """Internal: the host has its final diagnosis; unwinds the state machine."""

    def __init__(self, diagnosis: Diagnosis) -> None:
        super().__init__(diagnosis.category.value)
        self.diagnosis = diagnosis


@dataclass(frozen=True)
class ScriptedConnect:
    """A connect the host script already ran (with its verify), for the retry loop to take."""

    result: CommandResult
    diagnosis: Diagnosis
    verify: CommandResult | None


@dataclass(frozen=True)
class EarlierProgress:
    """What an interrupted (or killed) run had done to a host, for the run that resumes it.

    A resume continues the host rather than starting over: connect attempts whose result was
    recorded count against the retry budget, remediations already applied are not applied
    again, and a connect that finished just before the crash is recognised, not repeated.
    The outcome's ``attempts`` still counts this run's connects (their results are the ones it
    reports), except for a host the interrupted run connected: that run's connects made it.
    """

    launched: int = 0  # connect attempts started (their private --config dir was made)
    finished: int = 0  # connect attempts whose result was recorded
    last_exit: int | None = None  # of the last recorded azcmagent connect
    remediations: tuple[str, ...] = ()

    @classmethod
    def of(cls, steps: Sequence[Attempt], make_private_dir: str) -> EarlierProgress:
        launched = finished = 0
        last_exit: int | None = None
        remediations: list[str] = []
        for step in steps:
            if step.stage == "connect" and step.command == make_private_dir:
                launched += 1
            elif step.stage == "connect":
                finished += 1
                last_exit = step.exit_status
            if step.remediation and step.remediation not in remediations:
                remediations.append(step.remediation)
        return cls(launched, finished, last_exit, tuple(remediations))



def strip_internal(diagnosis: Diagnosis) -> Diagnosis:
    if "remediated" not in diagnosis.extra:
        return diagnosis
    extra = {k: v for k, v in diagnosis.extra.items() if k != "remediated"}
    return replace(diagnosis, extra=extra)


def no_private_dir(stderr: str) -> Diagnosis:
    return Diagnosis(
        category=Category.HOST_PREREQUISITE,
        action=Action(ActionKind.FAIL_HOST),
        name="no private temporary directory",
        cause="mktemp could not create a private directory for the --config file",
        fix="check that /tmp (or the Windows temp folder) exists and is writable",
        evidence_line=stderr.strip()[-300:],
        rule="host:mktemp",
    )


def preflight_ready(
    agent_version: str | None, proxy_note: str = "", proxy_fields: dict[str, str] | None = None
) -> Diagnosis:
    """Every preflight check passed and the agent is not connected: onboard would connect it.
    ``proxy_note``/``proxy_fields``: the agent's proxy against the inventory's
    (:func:`fleet.azcm.agent_config.proxy_report`)."""
    proxy = f"; {proxy_note}" if proxy_note else ""
    return Diagnosis(
        category=Category.READY,
        action=Action(ActionKind.NONE),
        name="ready",
        cause=f"ready: reachable, elevated, agent {agent_version or 'present'}, not connected"
        f"{proxy}; onboard would connect it (nothing was changed)",
        fix="arcfleet onboard --limit @ready connects the hosts this preflight found ready",
        rule="preflight:ready",
        extra={"onboard_would": "connect", **(proxy_fields or {})},
    )


def installed(result: str, agent_version: str | None) -> Diagnosis:
    """The install playbook's end: the agent is there (installed now or before); no connect."""
    done = {"installed": "installed", "upgraded": "upgraded"}.get(result)
    cause = (f"agent {agent_version or ''} {done} by this run" if done
             else f"agent {agent_version or ''} already present; nothing installed")
    return Diagnosis(
        category=Category.READY,
        action=Action(ActionKind.NONE),
        name="agent installed",
        cause=" ".join(cause.split()),
        fix="arcfleet onboard connects these hosts",
        rule="install",
        extra={"onboard_would": "connect"},
    )


def disconnected(cause: str) -> Diagnosis:
    return Diagnosis(
        category=Category.DISCONNECTED,
        action=Action(ActionKind.NONE),
        name="disconnected",
        cause=cause,
        rule="offboard",
    )


@dataclass
class HostContext:
    """What one host run needs from the fleet run."""

    playbook: Playbook
    sink: OutcomeSink
    pacer: TokenBucket
    sp_secret: str | None
    transcript_file: str = ""
    # The service principal's certificate (file bytes) when it authenticates with one.
    sp_certificate: SpCertificate | None = None
    # Token mode: mints or reuses an ARM access token for the host's service principal, which
    # then goes into the --config file instead of the secret (sp_secret is None).
    access_token: Callable[[], Awaitable[str]] | None = None
    # Steps an interrupted run recorded for this host (resume only), oldest first.
    earlier_steps: tuple[Attempt, ...] = ()
    # At most ``forks`` agent operations (connect, disconnect) run at once; hosts beyond that
    # are opened and preflighted meanwhile, so a freed slot starts the next connect at once.
    agent_slots: asyncio.Semaphore | None = None
    # Why this host must not start an agent operation now (breaker open, run interrupted).
    stop_reason: Callable[[], Diagnosis | None] = lambda: None
    # Told each time an agent operation starts (the runner paces its prepare-ahead on it).
    agent_started: Callable[[], None] = lambda: None

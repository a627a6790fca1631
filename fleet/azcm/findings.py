"""Diagnoses for what the transport and the engine observe themselves (no azcmagent output).

The engine calls these instead of building :class:`Diagnosis` by hand, so every host that fails
before or around azcmagent still ends with a category, an action, a cause and a fix.
"""

from __future__ import annotations

from fleet.azcm.catalog import CONNECT_URL, DISCONNECT_URL, MANAGE_URL, PREREQ_URL, TROUBLESHOOT_URL
from fleet.azcm.diagnosis import FAIL_HOST, NONE, RETRY, Category, Diagnosis

_TRANSPORT = "transport"
_RUN = "run"


def unreachable(reason: str) -> Diagnosis:
    """No SSH/WinRM session could be opened (refused, no route, DNS, connect timeout)."""
    return Diagnosis(
        Category.UNREACHABLE, RETRY, name="host unreachable",
        cause=f"arcfleet could not open a session to the host: {reason}",
        fix="Check the address, port and firewall from the jump host; the host may be down.",
        evidence_line=reason, rule=_TRANSPORT,
    )


def auth_failed(reason: str) -> Diagnosis:
    """The host refused our login (key, password, Kerberos/NTLM)."""
    return Diagnosis(
        Category.AUTH, FAIL_HOST, name="login refused",
        cause=f"The host refused arcfleet's login: {reason}",
        fix="Check the user, key or password in the inventory and that the account may log in.",
        evidence_line=reason, rule=_TRANSPORT,
    )


def host_key_rejected(reason: str) -> Diagnosis:
    """The SSH host key did not match known_hosts (or the WinRM certificate did not verify)."""
    return Diagnosis(
        Category.AUTH, FAIL_HOST, name="host key rejected",
        cause=f"The host's identity could not be verified: {reason}",
        fix="Confirm the host was not replaced, then update known_hosts (or its certificate "
        "trust) for it.", evidence_line=reason, rule=_TRANSPORT,
    )


def timed_out(stage: str, seconds: float) -> Diagnosis:
    """A command passed its deadline and was stopped."""
    return Diagnosis(
        Category.TIMEOUT, RETRY, name=f"{stage} timed out",
        cause=f"The {stage} step did not finish within {seconds:g} s and was stopped.",
        fix="Retry; if the host is just slow raise the timeout, otherwise check its network to "
        "Azure (a connect waits on Azure endpoints).",
        evidence_line=f"{stage}: deadline {seconds:g} s passed", rule=_RUN,
        extra={"stage": stage, "timeout_s": f"{seconds:g}"},
    )


def agent_missing(detail: str) -> Diagnosis:
    """azcmagent is not installed (or not on PATH) on the host."""
    return Diagnosis(
        Category.AGENT_MISSING, FAIL_HOST, name="agent not installed",
        cause="azcmagent is not installed on the host (or not where arcfleet looked).",
        fix="Let arcfleet install it: the playbook's `install` setting (`install: missing`, the "
        "onboard default, or `arcfleet install` for the install alone; docs/install.md), or "
        "install it with Microsoft's install script; then rerun the host.",
        doc_url=MANAGE_URL, evidence_line=detail,
        rule=_TRANSPORT,
    )


def elevation_required(detail: str) -> Diagnosis:
    """Commands could not run as root/Administrator (sudo wants a password, or not root)."""
    return Diagnosis(
        Category.ELEVATION, FAIL_HOST, name="elevation required",
        cause="Commands on the host could not run as root / Administrator (for example sudo "
        "asked for a password).",
        fix="Allow the login user passwordless sudo (NOPASSWD) and set become for the host, or "
        "log in as root, or as an Administrator over WinRM.", doc_url=PREREQ_URL,
        evidence_line=detail, rule=_TRANSPORT,
    )


def interrupted() -> Diagnosis:
    """The operator stopped the run before this host finished."""
    return Diagnosis(
        Category.INTERRUPTED, NONE, name="interrupted",
        cause="The run was stopped (Ctrl-C) before this host finished.",
        fix="Resume the run; hosts that finished are not redone.", rule=_RUN,
    )


def skipped(reason: str) -> Diagnosis:
    """arcfleet chose not to start the host."""
    return Diagnosis(
        Category.SKIPPED, NONE, name="skipped", cause=f"arcfleet did not start this host: {reason}",
        fix="Fix the cause named above and rerun the failed/skipped hosts.",
        evidence_line=reason, rule=_RUN,
    )


def connected(resource_id: str | None) -> Diagnosis:
    """The host is connected and verification agrees."""
    return Diagnosis(
        Category.CONNECTED, NONE, name="connected", cause="The machine is connected to Azure Arc.",
        resource_id=resource_id, rule=_RUN,
    )


def already_connected(resource_id: str | None) -> Diagnosis:
    """The host was already connected to the requested target; nothing was done."""
    return Diagnosis(
        Category.ALREADY_CONNECTED, NONE, name="already connected",
        cause="The machine was already connected to the requested subscription, resource group "
        "and region; nothing was changed.", resource_id=resource_id, rule=_RUN,
    )


def resource_conflict_elsewhere(current: str, wanted: str) -> Diagnosis:
    """The agent is connected, but to another target than the inventory asks for."""
    return Diagnosis(
        Category.RESOURCE_CONFLICT, FAIL_HOST, code="AZCM0067", name="connected elsewhere",
        cause=f"The machine is already connected to {current}, not to {wanted}.",
        fix="If it should move, disconnect it first (`azcmagent disconnect`, or "
        "--force-local-only when the old resource is gone) and rerun; arcfleet does this only "
        "when the run's policy allows it.", doc_url=DISCONNECT_URL, evidence_line=current,
        resource_id=current if current.startswith("/subscriptions/") else None, rule=_RUN,
        extra={"current": current, "wanted": wanted},
    )


def verify_failed(detail: str) -> Diagnosis:
    """connect reported success but ``azcmagent show`` does not agree."""
    return Diagnosis(
        Category.UNKNOWN, FAIL_HOST, name="verification failed",
        cause="azcmagent connect looked successful, but the agent's own status does not show "
        "the machine connected to the requested target.",
        fix="Run `azcmagent show` on the host and compare; rerun the host once the agent "
        "settles.", doc_url=CONNECT_URL, evidence_line=detail, rule="verify",
        extra={"raw": detail},
    )


__all__ = [
    "agent_missing",
    "already_connected",
    "auth_failed",
    "connected",
    "elevation_required",
    "host_key_rejected",
    "interrupted",
    "resource_conflict_elsewhere",
    "skipped",
    "timed_out",
    "unreachable",
    "verify_failed",
]


def step_failed(reason: str) -> Diagnosis:
    """A step on the host failed in a way no other finding names (e.g. a file could not be
    written over WinRM), or arcfleet itself failed on this host: the host ends, the run goes on."""
    return Diagnosis(
        Category.UNKNOWN, FAIL_HOST, name="step failed",
        cause=f"arcfleet could not complete a step on this host: {reason}",
        fix="Read the host's transcript; fix what it names, then rerun the host.",
        doc_url=TROUBLESHOOT_URL, evidence_line=reason, rule=_RUN,
    )

"""Whether the install stage touches a host, decided from what preflight found.

``install`` in the playbook:

``missing``        (default) install only where azcmagent is not found; a set ``minimum_version``
                   also upgrades agents older than it.
``always-latest``  install where missing and run the installer on every host whose agent is not
                   ``desired_version`` (the installer upgrades in place; without a desired version
                   it installs the newest the repository has).
``never``          never install; a host without the agent ends ``agent_missing``.

A host whose agent already satisfies the policy is not touched: no install step appears in its
transcript.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleet.azcm.catalog import parse_version


class InstallPolicy(StrEnum):
    MISSING = "missing"
    ALWAYS_LATEST = "always-latest"
    NEVER = "never"


class InstallAction(StrEnum):
    NONE = "none"  # leave the agent as it is
    INSTALL = "install"  # no agent: install it
    UPGRADE = "upgrade"  # an agent older than wanted: run the installer over it


@dataclass(frozen=True)
class InstallDecision:
    action: InstallAction
    reason: str

    @property
    def touches_host(self) -> bool:
        return self.action is not InstallAction.NONE


def _older(version: str, than: str) -> bool | None:
    mine, wanted = parse_version(version), parse_version(than)
    if mine is None or wanted is None:
        return None
    # "1.50" asks for 1.50.x: compare only as many parts as the wanted version gives.
    return mine[: len(wanted)] < wanted


def _matches(version: str, wanted: str) -> bool:
    mine, want = parse_version(version), parse_version(wanted)
    return mine is not None and want is not None and mine[: len(want)] == want


def decide(
    policy: InstallPolicy,
    present_version: str | None,
    *,
    agent_found: bool,
    desired_version: str | None = None,
    minimum_version: str | None = None,
) -> InstallDecision:
    """What the install stage does on one host. ``present_version`` is what ``azcmagent
    version`` printed (None when the agent is missing or printed no version)."""
    if policy is InstallPolicy.NEVER:
        if not agent_found:
            return InstallDecision(InstallAction.NONE, "agent missing; install: never")
        return InstallDecision(InstallAction.NONE, "install: never")
    if not agent_found:
        return InstallDecision(InstallAction.INSTALL, "agent not installed")
    if present_version is None:
        # An agent that does not say its version is not replaced on a guess.
        return InstallDecision(InstallAction.NONE, "agent present, version unknown")
    if policy is InstallPolicy.ALWAYS_LATEST:
        if desired_version is not None:
            if _matches(present_version, desired_version):
                return InstallDecision(
                    InstallAction.NONE, f"agent {present_version} is the desired version"
                )
            return InstallDecision(
                InstallAction.UPGRADE, f"agent {present_version}, desired {desired_version}"
            )
        return InstallDecision(
            InstallAction.UPGRADE, f"agent {present_version}; install: always-latest"
        )
    if minimum_version is not None and _older(present_version, minimum_version):
        return InstallDecision(
            InstallAction.UPGRADE, f"agent {present_version} is older than {minimum_version}"
        )
    return InstallDecision(InstallAction.NONE, f"agent {present_version} present")

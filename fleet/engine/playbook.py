"""Playbooks: the workflow and the policy of a run, as data.

A playbook says what to do to each host (``mode``), how hard to try (attempts, backoff,
deadlines), which documented fixes may be applied automatically, when to stop starting new hosts
(the circuit breaker), and how fast to start connects (pacing). CLI flags override it.
"""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet.azcm.diagnosis import Remediation
from fleet.engine.install_policy import InstallPolicy
from fleet.errors import PlaybookError, Problem
from fleet.inventory.yamlio import describe_yaml_error


class Mode(StrEnum):
    ONBOARD = "onboard"  # preflight, connect, verify
    PREFLIGHT = "preflight"  # checks only, changes nothing
    OFFBOARD = "offboard"  # disconnect
    INSTALL = "install"  # preflight and the install stage only (image pipelines)


_VERSION_PATTERN = r"^\d{1,4}(\.\d{1,6}){1,3}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backoff(_Strict):
    initial_s: float = Field(2.0, gt=0)
    max_s: float = Field(60.0, gt=0)
    multiplier: float = Field(2.0, ge=1)


class Deadlines(_Strict):
    connect_timeout_s: float = Field(15.0, gt=0)  # opening the SSH/WinRM session
    command_s: float = Field(60.0, gt=0)  # any preflight, verify or cleanup command
    agent_connect_s: float = Field(660.0, gt=0)  # azcmagent connect itself (10 min inside)
    host_s: float = Field(1800.0, gt=0)  # everything for one host, retries included


class Breaker(_Strict):
    # Hosts of one scope (service principal, subscription, resource group) failing with the same
    # fail_run cause before no new host of that scope is started; 0 disables.
    threshold: int = Field(3, ge=0)
    # ... and they must be at least this share of the scope's hosts started so far.
    share: float = Field(0.2, ge=0, le=1)


class Pacing(_Strict):
    forks: int = Field(50, ge=1, le=5000)
    # Token bucket for starting `azcmagent connect` (each one is ARM writes). ARM allows a burst
    # of 200 and 10 writes/s per service principal; stay well inside. rate 0 = unpaced.
    connect_rate_per_s: float = Field(5.0, ge=0)
    connect_burst: int = Field(100, ge=1)


class Playbook(_Strict):
    name: str
    description: str = ""
    mode: Mode = Mode.ONBOARD
    attempts: int = Field(4, ge=1, le=50)  # azcmagent connect attempts per host
    backoff: Backoff = Backoff()
    deadlines: Deadlines = Deadlines()
    remediations: tuple[Remediation, ...] = (
        Remediation.RESTART_AGENT_SERVICE,
        Remediation.WAIT_FOR_HIMDS,
    )
    # Replace a connection to another target (disconnect, then connect). Off by default: an
    # existing connection may belong to someone else.
    allow_reconnect: bool = False
    # Use `sudo -n` on hosts whose inventory did not set become, when azcmagent needs root.
    escalate_with_sudo: bool = False
    verify: bool = True
    # How long to wait for himds to answer (`azcmagent show`) after AZCM0064/0061/0065/0066.
    himds_wait_s: float = Field(120.0, ge=0, le=3600)
    log_tail_bytes: int = Field(65536, ge=1024, le=10 * 1024 * 1024)
    breaker: Breaker = Breaker()
    pacing: Pacing = Pacing()
    # The install stage (docs/install.md). A version goes into the install script's argv on
    # the host: digits and dots only.
    install: InstallPolicy = InstallPolicy.MISSING
    desired_version: str | None = Field(None, pattern=_VERSION_PATTERN)
    minimum_version: str | None = Field(None, pattern=_VERSION_PATTERN)
    # Offline: a directory on the jump host (see `arcfleet agent bundle`); None = hosts
    # download from Microsoft.
    agent_bundle: str | None = None
    # Refuse a bundle whose MSI's Authenticode signature did not verify (osslsigncode).
    agent_bundle_require_signed: bool = False
    # A transient install failure (package lock, download, msiexec 1618) is retried, with
    # backoff, until this much time has passed since the first try.
    install_retry_s: float = Field(600.0, ge=0, le=7200)
    install_s: float = Field(900.0, gt=0)  # one run of the install script or msiexec
    install_tempdir: str | None = Field(None, pattern=r"^/[A-Za-z0-9._/-]{0,200}$")
    # Offboard: after disconnecting, remove the agent package.
    uninstall: bool = False

    def allows(self, remediation: Remediation) -> bool:
        return remediation in self.remediations


BUILTIN = ("onboard", "preflight", "offboard", "reconnect", "install")


def _builtin_text(name: str) -> str:
    return resources.files("fleet.engine").joinpath("playbooks", f"{name}.yaml").read_text("utf-8")


def load_playbook(ref: str | Path | None) -> Playbook:
    """A playbook by built-in name (``onboard``) or by file path; default ``onboard``."""
    label = str(ref) if ref is not None else "onboard"
    try:
        if ref is None or str(ref) in BUILTIN:
            text = _builtin_text(label)
        else:
            text = Path(ref).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookError(Problem(label, None, None, f"cannot read playbook: {exc}")) from None
    return parse_playbook(text, label)


def parse_playbook(text: str, label: str) -> Playbook:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # One line: PyYAML's own text spans several lines and quotes the file.
        raise PlaybookError(Problem(label, None, None, describe_yaml_error(exc))) from None
    except RecursionError:
        raise PlaybookError(Problem(label, None, None, "YAML nesting is too deep")) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise PlaybookError(Problem(label, None, None, f"unreadable value: {exc}")) from None
    if not isinstance(raw, dict):
        raise PlaybookError(Problem(label, None, None, "a playbook is a YAML mapping"))
    try:
        return Playbook.model_validate(raw)
    except ValidationError as exc:
        problems = [
            Problem(label, None, ".".join(str(p) for p in err["loc"]) or None, err["msg"])
            for err in exc.errors()
        ]
        raise PlaybookError(problems) from None

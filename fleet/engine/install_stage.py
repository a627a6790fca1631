"""The install stage of a host run: install or upgrade the agent, then let the host go on.

A mixin of :class:`fleet.engine.host_run.HostRun` (like :mod:`fleet.engine.host_run_script`).
Preflight finds the agent and its version; :mod:`fleet.engine.install_policy` decides; this module
runs the installer, reads its verdict, retries what is transient, proves the agent answers
(``azcmagent version``), waits for himds (a fresh install is the common case of AZCM0064), and
hands back to the state machine, which looks at the host again and connects it.

Linux runs Microsoft's ``install_linux_azcmagent.sh`` with ``--output`` (the verdict is that JSON,
not the exit status); Windows runs ``msiexec`` on an uploaded MSI (offline) or Microsoft's
``install_windows_azcmagent.ps1`` (online). Every file the stage puts on a host lives in a private
directory made for it, removed in every outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from fleet.azcm.catalog import INSTALL_URL, MANAGE_URL
from fleet.azcm.commands import AgentCommands
from fleet.azcm.commands_linux import LinuxAgentCommands
from fleet.azcm.diagnosis import FAIL_HOST, ActionKind, Category, Diagnosis
from fleet.azcm.install_linux import (
    PACKAGE_LOG_CODES,
    PACKAGE_LOGS,
    PACKAGE_NAME,
    LinuxInstall,
    package_kind,
    verdict,
)
from fleet.azcm.install_windows import (
    MSIEXEC_OK,
    WindowsInstall,
    msiexec_verdict,
    script_verdict,
    uninstall_script,
)
from fleet.engine import remediation
from fleet.engine.host_state import AgentState, HostContext, HostFinished, preflight_ready
from fleet.engine.install_bundle import AgentBundle, BundleFile, load_bundle
from fleet.engine.install_policy import InstallAction, InstallDecision, InstallPolicy, decide
from fleet.engine.outcome import Attempt
from fleet.engine.playbook import Mode, Playbook
from fleet.inventory.model import OsFamily, ResolvedHost
from fleet.transport.base import CommandResult, Transport

_VERSION = re.compile(r"\d+\.\d+\.\d+(?:\.\d+)?")
_STAGE = "install"
_Once = Callable[[], Awaitable[Diagnosis | None]]
#: how each package manager removes the agent (the first one found on the host is used)
PACKAGE_REMOVALS = (
    ("apt-get", "apt-get remove -y azcmagent"),
    ("dnf", "dnf -y remove azcmagent"),
    ("zypper", "zypper --non-interactive remove azcmagent"),
)
#: what the ``install`` report column says per host
INSTALLED, UPGRADED, FAILED = "installed", "upgraded", "failed"
WOULD_INSTALL, WOULD_UPGRADE, UNINSTALLED = "would_install", "would_upgrade", "uninstalled"


def _now() -> datetime:
    return datetime.now(UTC)


class InstallStage:
    # Provided by HostRun.
    host: ResolvedHost
    transport: Transport
    commands: AgentCommands
    playbook: Playbook
    ctx: HostContext
    _agent_version: str | None
    _agent_path: str
    # Read by the outcome (report columns agent_version_before/after, install).
    _version_before: str | None = None
    _version_after: str | None = None
    _install_result: str = ""
    # The first look of a run whose policy may upgrade a present agent only looks (the
    # one-session script would otherwise connect the old agent before the upgrade).
    _looking_before_upgrade: bool = False

    def _record(self, attempt: Attempt) -> None:
        raise NotImplementedError

    async def _run(
        self, stage: str, command: str, *, timeout_s: float | None = None,
        remediation: str | None = None,
    ) -> CommandResult:
        raise NotImplementedError

    async def _exec(
        self, stage: str, command: str, *, timeout_s: float | None = None,
        remediation: str | None = None,
    ) -> tuple[CommandResult, Attempt]:
        raise NotImplementedError

    async def _make_private_dir(self, stage: str) -> str:
        raise NotImplementedError

    def _backoff_s(self, attempt_number: int, diagnosis: Diagnosis | None) -> float:
        raise NotImplementedError

    async def _look(self) -> tuple[str, AgentState | None]:
        """Preflight: elevation, the agent, its version and state (raises agent_missing)."""
        raise NotImplementedError

    # -- deciding --------------------------------------------------------------------------

    def _decide(self, *, found: bool) -> InstallDecision:
        return decide(
            self.playbook.install, self._agent_version if found else None, agent_found=found,
            desired_version=self.playbook.desired_version,
            minimum_version=self.playbook.minimum_version,
        )

    async def _look_and_install(self) -> tuple[str, AgentState | None]:
        """Preflight, with the install stage where the policy wants it; then preflight again."""
        mode = self.playbook.mode
        playbook = self.playbook
        self._looking_before_upgrade = mode is Mode.ONBOARD and (
            playbook.install is InstallPolicy.ALWAYS_LATEST
            or (playbook.install is InstallPolicy.MISSING and playbook.minimum_version is not None)
        )
        try:
            agent, state = await self._look()
        except HostFinished as finished:
            if finished.diagnosis.category is not Category.AGENT_MISSING or mode is Mode.OFFBOARD:
                raise
            decision = self._decide(found=False)
            if not decision.touches_host:
                raise HostFinished(_missing_not_installed(finished.diagnosis)) from None
            if mode is Mode.PREFLIGHT:
                self._install_result = WOULD_INSTALL
                raise HostFinished(_would(decision)) from None
            await self._install(decision)
            self._looking_before_upgrade = False
            agent, state = await self._look()
            self._version_after = self._agent_version
            return agent, state
        finally:
            self._looking_before_upgrade = False
        self._version_before = self._version_after = self._agent_version
        decision = self._decide(found=True)
        if not decision.touches_host or mode is Mode.OFFBOARD:
            return agent, state
        if mode is Mode.PREFLIGHT:
            self._install_result = WOULD_UPGRADE
            return agent, state
        await self._install(decision)
        if getattr(self, "_pending", None) is None:  # (the first look only looked, see above)
            agent, state = await self._look()  # the upgraded agent, as connect will see it
        self._version_after = self._agent_version
        return agent, state

    # -- uninstalling (offboard, uninstall: true) -------------------------------------------

    async def _uninstall(self, disconnected: Diagnosis) -> Diagnosis:
        """Remove the agent package after a disconnect; the host's outcome says so."""
        if self.host.os is OsFamily.WINDOWS:
            result = await self._run("uninstall", uninstall_script(),
                                     timeout_s=self.playbook.install_s)
            removed = result.exit_status in MSIEXEC_OK
        else:
            commands = self.commands
            assert isinstance(commands, LinuxAgentCommands)
            result = None
            for probe, remove in PACKAGE_REMOVALS:
                found = await self._run("uninstall", f"command -v {probe}")
                if found.exit_status == 0:
                    result = await self._run("uninstall", commands.elevated(remove),
                                             timeout_s=self.playbook.install_s)
                    break
            removed = result is not None and result.exit_status == 0
        if not removed:
            self._install_result = FAILED
            detail = "no apt-get, dnf or zypper found" if result is None else (
                f"exit {result.exit_status}: {(result.stderr or result.stdout).strip()[-300:]}")
            return replace(
                disconnected, category=Category.HOST_PREREQUISITE, action=FAIL_HOST,
                name="uninstall failed",
                cause=f"Disconnected, but removing the agent package failed ({detail}).",
                fix="Remove the package on the host by hand (apt-get/dnf/zypper remove "
                "azcmagent, or msiexec /x on Windows), or rerun the host.",
                evidence_line=detail, rule="uninstall",
            )
        self._install_result = UNINSTALLED
        self._version_after = None
        return replace(disconnected, cause=f"{disconnected.cause}; the agent package was removed")

    # -- installing ------------------------------------------------------------------------

    async def _install(self, decision: InstallDecision) -> None:
        """Install (or upgrade) the agent, prove it answers, wait for himds. Raises
        HostFinished with the installer's diagnosis when it fails for good."""
        proxy = self.host.azure.proxy_url
        if proxy and "@" in proxy:
            # The install scripts take the proxy on their command line: a URL with a password
            # in it would be in the host's process list.
            self._install_result = FAILED
            raise HostFinished(_proxy_with_credentials())
        bundle = (
            load_bundle(self.playbook.agent_bundle,
                        require_signed=self.playbook.agent_bundle_require_signed)
            if self.playbook.agent_bundle else None
        )
        try:
            if self.host.os is OsFamily.WINDOWS:
                await self._install_windows(bundle)
            else:
                await self._install_linux(bundle)
            agent = await self._installed_agent()
        except HostFinished:
            self._install_result = FAILED
            raise
        self._install_result = UPGRADED if decision.action is InstallAction.UPGRADE else INSTALLED
        self._agent_path = agent
        if not await remediation.wait_for_himds(
            self._run, self.commands, agent, limit_s=self.playbook.himds_wait_s
        ):
            # Connect will say what is wrong (AZCM0064 and its fix) in the agent's own words.
            return

    async def _installed_agent(self) -> str:
        """Success is an agent that answers ``azcmagent version``, whatever the installer
        said (a PowerShell ``return`` leaves $LASTEXITCODE alone)."""
        located = await self._run(_STAGE, self.commands.locate_agent())
        paths = [line.strip() for line in located.stdout.splitlines() if line.strip()]
        if located.exit_status != 0 or not paths:
            raise HostFinished(_not_answering("the agent is not found after the install"))
        version = await self._run(_STAGE, self.commands.version(paths[0]))
        match = _VERSION.search(version.stdout)
        if version.exit_status != 0 or match is None:
            raise HostFinished(_not_answering(f"`azcmagent version` exited {version.exit_status}"))
        self._agent_version = match.group(0)
        return paths[0]

    async def _retrying(self, once: _Once) -> None:
        """Run one install try until it succeeds; transient failures (RETRY) again with
        backoff while ``install_retry_s`` lasts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.playbook.install_retry_s
        number = 0
        while True:
            number += 1
            diagnosis = await once()
            if diagnosis is None:
                return
            wait = self._backoff_s(number, diagnosis)
            if diagnosis.action.kind is not ActionKind.RETRY or loop.time() + wait > deadline:
                raise HostFinished(replace(diagnosis, action=FAIL_HOST))
            await asyncio.sleep(wait)

    async def _upload(self, path: str, item: BundleFile) -> None:
        started = _now()
        data = item.data()
        await self.transport.put_file(path, data, private=True)
        self._record(
            Attempt(
                stage=_STAGE, command=f"upload {item.name} -> {path}", exit_status=0,
                duration_s=(_now() - started).total_seconds(), started_at=started,
                stdout=f"{len(data)} bytes, sha256 {item.sha256}"
                + (f", Authenticode: {item.signature}" if item.signature else "") + "\n",
            )
        )

    async def _private_dir(self) -> str:
        return await self._make_private_dir(_STAGE)

    async def _remove(self, workdir: str) -> None:
        command = self.commands.remove_dir(workdir)
        if isinstance(self.commands, LinuxAgentCommands):
            command = self.commands.elevated(command)  # the installer wrote into it as root
        with contextlib.suppress(HostFinished):
            await asyncio.shield(self._run("cleanup", command))

    async def _install_linux(self, bundle: AgentBundle | None) -> None:
        commands = self.commands
        assert isinstance(commands, LinuxAgentCommands)
        workdir = await self._private_dir()
        try:
            job = LinuxInstall(
                workdir, proxy_url=self.host.azure.proxy_url,
                desired_version=self.playbook.desired_version,
                offline_package=bundle is not None, tempdir=self.playbook.install_tempdir,
            )
            if bundle is not None:
                dpkg = await self._run(_STAGE, "command -v dpkg")
                kind = package_kind(dpkg.exit_status == 0)
                script, package = bundle.first("linux-script"), bundle.first(kind)
                if script is None or package is None:
                    raise HostFinished(_bundle_lacks(f"install_linux_azcmagent.sh and a .{kind}"))
                await self._upload(job.script_path, script)
                await self._upload(f"{workdir}/{PACKAGE_NAME}", package)
            else:
                fetched = await self._run(_STAGE, job.download_command())
                if fetched.exit_status != 0:
                    raise HostFinished(_download_failed(fetched))

            async def once() -> Diagnosis | None:
                stale = shlex.quote(job.output_path)  # a verdict is only this run's
                await self._run(_STAGE, commands.elevated(f"rm -f -- {stale}"))
                result, attempt = await self._exec(
                    _STAGE, commands.elevated(job.command()), timeout_s=self.playbook.install_s
                )
                output = await self._run(_STAGE, commands.elevated(job.read_output_command()))
                diagnosis = verdict(
                    output.stdout if output.exit_status == 0 else "", result.stdout,
                    result.stderr, result.exit_status,
                )
                self._record(replace(attempt, diagnosis=diagnosis))
                if diagnosis is not None and diagnosis.code in PACKAGE_LOG_CODES:
                    for log in PACKAGE_LOGS:  # the package manager's own words, in the transcript
                        await self._run(_STAGE, commands.read_tail(log, 8192))
                return diagnosis

            await self._retrying(once)
        finally:
            await self._remove(workdir)

    async def _install_windows(self, bundle: AgentBundle | None) -> None:
        workdir = await self._private_dir()
        try:
            job = WindowsInstall(workdir, proxy_url=self.host.azure.proxy_url,
                                 offline_msi=bundle is not None)
            if bundle is not None:
                msi = bundle.first("msi")
                if msi is None:
                    raise HostFinished(_bundle_lacks("an .msi"))
                await self._upload(job.msi_path, msi)

            async def once() -> Diagnosis | None:
                if bundle is not None:
                    result, attempt = await self._exec(
                        _STAGE, job.msiexec_script(), timeout_s=self.playbook.install_s
                    )
                    log = await self._run(_STAGE, job.log_errors_script())
                    diagnosis = msiexec_verdict(result.exit_status, log.stdout)
                else:
                    result, attempt = await self._exec(
                        _STAGE, job.script_run(), timeout_s=self.playbook.install_s
                    )
                    output = await self._run(_STAGE, job.read_output_script())
                    diagnosis = script_verdict(output.stdout)
                self._record(replace(attempt, diagnosis=diagnosis))
                return diagnosis

            await self._retrying(once)
        finally:
            await self._remove(workdir)


def _missing_not_installed(found: Diagnosis) -> Diagnosis:
    return replace(
        found,
        fix="The playbook says `install: never`. Install the agent (docs/install.md), or run "
        "with `install: missing` (the onboard default) so arcfleet installs it, then rerun.",
    )


def _would(decision: InstallDecision) -> Diagnosis:
    ready = preflight_ready(None)
    return replace(
        ready,
        cause=f"ready: reachable and elevated; {decision.reason}: onboard would install the "
        "agent, then connect (nothing was changed)",
        extra={**ready.extra, "onboard_would": "install, connect"},
    )


def _not_answering(detail: str) -> Diagnosis:
    return Diagnosis(
        Category.AGENT_MISSING, FAIL_HOST, name="install did not take",
        cause=f"The installer reported success but the agent does not answer: {detail}.",
        fix="Read the install step in the transcript and the installer log on the host; "
        "rerun the host.", doc_url=MANAGE_URL, evidence_line=detail, rule="installer",
        extra={"stage": _STAGE},
    )


def _bundle_lacks(what: str) -> Diagnosis:
    return Diagnosis(
        Category.INVALID_INPUT, FAIL_HOST, name="agent bundle incomplete",
        cause=f"The agent bundle has no file for this host: it needs {what}.",
        fix="Add the file to the bundle directory (check it with `arcfleet agent bundle "
        "--from DIR`), then rerun the host.", doc_url=INSTALL_URL, rule="installer",
        extra={"stage": _STAGE},
    )


def _download_failed(result: CommandResult) -> Diagnosis:
    line = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return Diagnosis(
        Category.NETWORK, FAIL_HOST, name="install script download failed",
        cause="The host could not download Microsoft's install script.",
        fix="Allow the host to reach aka.ms and the agent download endpoints (or set "
        "azure.proxy_url), or install offline with an agent bundle (docs/install.md).",
        doc_url=INSTALL_URL, evidence_line=line[-1][:300] if line else "", rule="installer",
        extra={"stage": _STAGE},
    )


def _proxy_with_credentials() -> Diagnosis:
    return Diagnosis(
        Category.INVALID_INPUT, FAIL_HOST, name="proxy URL with credentials",
        cause="azure.proxy_url carries a user name or password, and the install script takes "
        "the proxy on its command line, where every user of the host can read it.",
        fix="Use a proxy that needs no credentials in the URL, or install the agent offline "
        "with an agent bundle (docs/install.md).", rule="installer", extra={"stage": _STAGE},
    )


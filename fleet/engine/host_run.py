"""The per-host state machine: preflight -> connect (retry, remediate) -> verify -> collect.

One :class:`HostRun` works one host over one transport session. Every command becomes an
:class:`~fleet.engine.outcome.Attempt` handed to the sink the moment it finishes; the host ends
with exactly one :class:`~fleet.engine.outcome.HostOutcome`, whatever happens (including
cancellation), and the private ``--config`` directory is removed in every outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import structlog
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, stop_after_delay

from fleet.azcm import findings
from fleet.azcm.agent_config import (
    PROXY_URL,
    agent_settings,
    disconnect_config,
    proxy_report,
    shown_config,
)
from fleet.azcm.classifier import classify
from fleet.azcm.commands import AgentCommands, ScriptCommands, ScriptMode, connect_config
from fleet.azcm.diagnosis import Action, ActionKind, Category, Diagnosis, Evidence, Remediation
from fleet.engine import remediation
from fleet.engine.host_run_script import ScriptedPath
from fleet.engine.host_script import script_capable
from fleet.engine.host_state import (
    AgentState,
    EarlierProgress,
    HostContext,
    HostFinished,
    ScriptedConnect,
    disconnected,
    installed,
    no_private_dir,
    preflight_ready,
    strip_internal,
)
from fleet.engine.install_stage import InstallStage
from fleet.engine.outcome import Attempt, HostOutcome
from fleet.engine.playbook import Mode
from fleet.errors import (
    ArcfleetError,
    ConnectionDropped,
    HostAuthFailed,
    HostUnreachable,
    SecretUnavailable,
    TransportError,
)
from fleet.inventory.model import ResolvedHost
from fleet.transport.base import CommandResult, Transport

# Re-exported: callers import these from here, as before the split.
__all__ = ["AgentState", "EarlierProgress", "HostContext", "HostFinished", "HostRun"]

log = structlog.get_logger("fleet.engine")

_VERSION = re.compile(r"\d+\.\d+\.\d+(?:\.\d+)?")


def _now() -> datetime:
    return datetime.now(UTC)


class HostRun(ScriptedPath, InstallStage):
    def __init__(
        self,
        host: ResolvedHost,
        transport: Transport,
        commands: AgentCommands,
        context: HostContext,
        *,
        elevated_commands: AgentCommands | None = None,
    ) -> None:
        self.host = host
        self.transport = transport
        self.commands = commands
        self.ctx = context
        self.playbook = context.playbook
        self._elevated_commands = elevated_commands
        self._started = _now()
        self._steps: list[Attempt] = []
        self._earlier = EarlierProgress.of(context.earlier_steps, commands.make_private_dir())
        self._remediations: list[str] = list(self._earlier.remediations)
        self._connect_attempts = 0
        self._last_exit: int | None = self._earlier.last_exit
        self._agent_version: str | None = None
        self._agent_path = "azcmagent"
        self._pending: ScriptedConnect | None = None
        # Host clock minus jump-host clock (s), read by the host script's clock step: the
        # classifier reads time-window failures as a clock problem when it is large.
        self._clock_skew_s: float | None = None
        # The agent settings (proxy) went in (by the host script or _apply_settings), and the
        # proxy the agent reported in preflight (None: not asked).
        self._settings_applied = False
        self._configured_proxy: str | None = None

    # -- recording -----------------------------------------------------------------------

    def _record(self, attempt: Attempt) -> None:
        self._steps.append(attempt)
        d = attempt.diagnosis
        log.info(
            "step",
            host=self.host.name,
            stage=attempt.stage,
            command=attempt.command,
            exit_status=attempt.exit_status,
            duration_s=round(attempt.duration_s, 3),
            category=d.category.value if d else None,
            azcm_code=d.code if d else None,
            remediation=attempt.remediation,
        )
        self.ctx.sink.attempt_recorded(self.host.name, attempt)

    async def _run(
        self,
        stage: str,
        command: str,
        *,
        timeout_s: float | None = None,
        remediation: str | None = None,
    ) -> CommandResult:
        result, attempt = await self._exec(
            stage, command, timeout_s=timeout_s, remediation=remediation
        )
        self._record(attempt)
        return result

    async def _exec(
        self,
        stage: str,
        command: str,
        *,
        timeout_s: float | None = None,
        remediation: str | None = None,
    ) -> tuple[CommandResult, Attempt]:
        """Run a command; the caller records the attempt (so it can carry a diagnosis). A
        command past its deadline is recorded here and ends the host."""
        started = _now()
        deadline = timeout_s or self.playbook.deadlines.command_s
        result = await self.transport.run(command, timeout_s=deadline)
        attempt = Attempt(
            stage=stage,
            command=command,
            exit_status=result.exit_status,
            duration_s=result.duration_s,
            started_at=started,
            remediation=remediation,
            stdout=result.stdout,
            stderr=result.stderr,
            truncated_bytes=result.truncated_bytes,
        )
        if result.timed_out:
            timed_out = findings.timed_out(stage, deadline)
            self._record(replace(attempt, diagnosis=timed_out))
            raise HostFinished(timed_out)
        return result, attempt

    def _outcome(self, diagnosis: Diagnosis) -> HostOutcome:
        return HostOutcome(
            host=self.host.name,
            address=self.host.address,
            transport=self.host.transport.value,
            os=self.host.os.value,
            diagnosis=diagnosis,
            started_at=self._started,
            finished_at=_now(),
            attempts=self._connect_attempts,
            remediations=tuple(self._remediations),
            exit_code=self._last_exit,
            transcript_file=self.ctx.transcript_file,
            steps=tuple(self._steps),
            agent_version_before=self._version_before,
            agent_version_after=self._version_after or self._agent_version,
            install=self._install_result,
        )

    # -- the state machine ---------------------------------------------------------------

    async def execute(self) -> HostOutcome:
        """Run the playbook on the host; always returns an outcome, never raises (but
        re-raises cancellation after recording nothing: the runner records interruption)."""
        self.ctx.sink.host_started(self.host.name)
        try:
            async with asyncio.timeout(self.playbook.deadlines.host_s):
                diagnosis = await self._execute()
        except HostFinished as finished:
            diagnosis = finished.diagnosis
        except TimeoutError:
            diagnosis = findings.timed_out("host", self.playbook.deadlines.host_s)
        except HostAuthFailed as exc:
            diagnosis = (
                findings.host_key_rejected(exc.reason)
                if "host key" in exc.reason
                else findings.auth_failed(exc.reason)
            )
        except HostUnreachable as exc:
            diagnosis = findings.unreachable(exc.reason)
        except ConnectionDropped as exc:
            diagnosis = findings.unreachable(f"connection dropped: {exc.reason}")
        except SecretUnavailable as exc:
            diagnosis = findings.auth_failed(str(exc))
        except TransportError as exc:  # any other failure of a step on the host
            diagnosis = findings.step_failed(exc.reason)
        except Exception as exc:  # a bug or an answer nobody foresaw costs one host, not the run
            log.error("host run failed", host=self.host.name, exc_info=True)
            diagnosis = findings.step_failed(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            await self._close()
        return self._outcome(diagnosis)

    async def _close(self) -> None:
        with contextlib.suppress(ArcfleetError, OSError, asyncio.CancelledError):
            await asyncio.shield(self.transport.close())

    def _scripted(self) -> bool:
        """The one-session path: one script per host runs the whole common path."""
        if self.ctx.sp_certificate is not None and not getattr(
            self.commands, "script_carries_certificate", False
        ):
            # This OS's script takes only the config on stdin: the certificate needs the
            # step-by-step path, which uploads it into the private directory.
            return False
        return self.playbook.mode is not Mode.OFFBOARD and script_capable(
            self.transport, self.commands
        )

    async def _execute(self) -> Diagnosis:
        await self.transport.open()
        agent, state = await self._look_and_install()
        mode = self.playbook.mode
        if mode is Mode.OFFBOARD:
            return await self._offboard(agent, state)
        if mode is Mode.INSTALL:
            return installed(self._install_result, self._agent_version)
        if state is not None and state.connected:
            if state.matches(self.host) and self._earlier.launched:
                # The interrupted run's last connect finished before the crash (the agent
                # reports Connected only after a successful connect): that run connected it.
                # Connecting again would only earn AZCM0067.
                self._connect_attempts = self._earlier.launched
                self._last_exit = 0
                return findings.connected(state.resource_id)
            if state.matches(self.host):
                return findings.already_connected(state.resource_id)
            wanted = self.host.azure.expected_resource_id(self.host.name) or "(inventory target)"
            if mode is Mode.PREFLIGHT or not self.playbook.allow_reconnect:
                return findings.resource_conflict_elsewhere(state.resource_id, wanted)
            await self._disconnect(agent, force_local_only=False)
        if mode is Mode.PREFLIGHT:
            if self._configured_proxy is None:  # the step-by-step path: ask now
                got = await self._run("preflight", self.commands.config_get(agent, PROXY_URL))
                self._configured_proxy = got.stdout.strip() if got.exit_status == 0 else None
            return preflight_ready(self._agent_version, *proxy_report(self.host,
                                                                      self._configured_proxy))
        await self._apply_settings(agent)
        return await self._connect_with_retries(agent)

    async def _apply_settings(self, agent: str) -> None:
        """``azcmagent config set`` for each agent setting (the proxy) before the first connect;
        the host ends at the first that fails (a connect without its proxy would only fail)."""
        if self._settings_applied:
            return
        for key, value in agent_settings(self.host):
            result = await self._run("connect", self.commands.config_set(agent, key, value))
            if result.exit_status != 0:
                raise HostFinished(self._setting_failed(key, result))
        self._settings_applied = True

    async def _look(self) -> tuple[str, AgentState | None]:
        if self._scripted():
            return await self._scripted_start()
        agent = await self._preflight()
        return agent, await self._agent_state(agent)

    async def _preflight(self) -> str:
        result = await self._run("preflight", self.commands.check_elevation())
        if not self.commands.is_elevated(result):
            self._elevate_or_finish(result)  # ends the host, or switches to sudo: look again
            return await self._preflight()
        located = await self._run("preflight", self.commands.locate_agent())
        paths = [line.strip() for line in located.stdout.splitlines() if line.strip()]
        if located.exit_status != 0 or not paths:
            raise HostFinished(findings.agent_missing(located.stderr.strip() or "not on PATH"))
        agent = self._agent_path = paths[0]
        version = await self._run("preflight", self.commands.version(agent))
        match = _VERSION.search(version.stdout)
        self._agent_version = match.group(0) if match else None
        return agent

    async def _agent_state(self, agent: str) -> AgentState | None:
        for _ in range(2):
            result = await self._run("preflight", self.commands.show_json(agent))
            state = AgentState.parse(result.stdout) if result.exit_status == 0 else None
            if state is not None:
                return state
            diagnosis = classify(self._evidence(result))
            if not await self._remediate(diagnosis):
                return None  # connect will say what is wrong, with the agent's own words
        return None

    # -- the one-session path ------------------------------------------------------------

    def _evidence(
        self, result: CommandResult, log_tail: str = "", run_started: datetime | None = None
    ) -> Evidence:
        return Evidence(
            exit_status=result.exit_status,
            stdout=result.stdout,
            stderr=result.stderr,
            log_tail=log_tail,
            agent_version=self._agent_version,
            run_started=run_started,
            clock_skew_s=self._clock_skew_s,
        )

    # -- connect -------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        diagnosis: Diagnosis = state.outcome.result() if state.outcome else None  # type: ignore[assignment]
        if diagnosis is not None and diagnosis.extra.get("remediated") == "yes":
            return 0.5  # the fix was applied; try again at once
        return self._backoff_s(state.attempt_number, diagnosis)

    def _backoff_s(self, attempt_number: int, diagnosis: Diagnosis | None) -> float:
        if diagnosis is not None and diagnosis.retry_after_s:
            # The server said when to come back: sooner would be throttled again. Only the host
            # deadline (stop_after_delay) bounds it, not our own backoff ceiling.
            # Jitter above it, so throttled hosts do not all come back in the same second.
            return float(diagnosis.retry_after_s) * random.uniform(1.0, 1.2)
        backoff = self.playbook.backoff
        ceiling = min(backoff.max_s, backoff.initial_s * backoff.multiplier ** (attempt_number - 1))
        return random.uniform(0, ceiling)  # full jitter: spreads a fleet's retries apart

    @staticmethod
    def _should_retry(diagnosis: Diagnosis) -> bool:
        return (
            diagnosis.action.kind is ActionKind.RETRY or diagnosis.extra.get("remediated") == "yes"
        )

    async def _connect_with_retries(self, agent: str) -> Diagnosis:
        retrying = AsyncRetrying(
            # A resumed host has already used part of its budget in the interrupted run.
            stop=stop_after_attempt(max(1, self.playbook.attempts - self._earlier.finished))
            | stop_after_delay(self.playbook.deadlines.host_s),
            wait=self._wait,
            retry=lambda state: bool(
                state.outcome
                and not state.outcome.failed
                and self._should_retry(state.outcome.result())
            ),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True,
        )
        diagnosis: Diagnosis | None = None
        async for attempt in retrying:
            with attempt:
                diagnosis = await self._connect_once(agent)
            if attempt.retry_state.outcome is None or not attempt.retry_state.outcome.failed:
                attempt.retry_state.set_result(diagnosis)
        assert diagnosis is not None
        return strip_internal(diagnosis)

    async def _connect_once(self, agent: str) -> Diagnosis:
        verified: CommandResult | None = None
        if self._scripted():
            if self._pending is None:
                await self._script(ScriptMode.FORCE)
            if self._pending is None:
                raise HostFinished(findings.step_failed("the host script did not run connect"))
            pending, self._pending = self._pending, None
            self._connect_attempts += 1
            diagnosis, verified = pending.diagnosis, pending.verify
        else:
            self._connect_attempts += 1
            _result, diagnosis = await self._run_with_config(
                "connect", lambda config: self.commands.connect(agent, config, self.host)
            )
        if diagnosis.category is Category.CONNECTED or diagnosis.extra.get("needs_verify"):
            # Exit 0 without success text: only the agent's own state can say what happened.
            return await self._verify(agent, diagnosis, verified)
        if diagnosis.code == "AZCM0067":
            # Connected already (maybe by a connect that finished before a crash): check where.
            state = await self._agent_state(agent)
            if state is not None and state.connected and state.matches(self.host):
                return findings.already_connected(state.resource_id)
            if state is not None:  # Expired/Disconnected but holding a resource id: stale
                allowed = self.playbook.allows(Remediation.DISCONNECT_LOCAL)
                stale = remediation.stale_resource(
                    diagnosis, state.status, state.resource_id, allowed
                )
                diagnosis = stale or diagnosis
        if diagnosis.action.kind is ActionKind.REMEDIATE and await self._remediate(diagnosis):
            return replace(diagnosis, extra={**diagnosis.extra, "remediated": "yes"})
        if diagnosis.action.kind is ActionKind.REMEDIATE:
            # The fix is not allowed or was already tried: the host fails with the fix to apply.
            return replace(diagnosis, action=Action(ActionKind.FAIL_HOST))
        return diagnosis

    async def _run_with_config(
        self, stage: str, build: Callable[[str], str]
    ) -> tuple[CommandResult, Diagnosis]:
        """Upload the --config file to a fresh private directory, run the agent command that
        ``build`` makes from its path, classify it (with the log tail on failure), and remove
        the directory in every outcome. The attempt reaches the sinks with its diagnosis."""
        # Token mode: minted (or reused) before the directory exists, so a refusal leaves none.
        token = await self.ctx.access_token() if self.ctx.access_token else None
        private_dir = await self._make_private_dir(stage)
        config = self.commands.config_path(private_dir)
        certificate = None if token is not None else self.ctx.sp_certificate
        cert_path = (
            self.commands.private_file(private_dir, certificate.file_name) if certificate else None
        )
        make = disconnect_config if stage == "disconnect" else connect_config
        content = make(self.host, self.ctx.sp_secret, cert_path, access_token=token)
        try:
            if certificate is not None and cert_path is not None:
                # Into the same private directory, so it goes with it in every outcome.
                await self.transport.put_file(cert_path, certificate.data, private=True)
            await self.transport.put_file(config, content, private=True)
            async with self.ctx.agent_slots or contextlib.nullcontext():
                # Checked with the slot in hand: the breaker may have opened while we waited.
                stop = self.ctx.stop_reason()
                if stop is not None:
                    raise HostFinished(stop)
                await self.ctx.pacer.acquire()
                self.ctx.agent_started()
                started = _now()
                result, attempt = await self._exec(
                    stage, build(config), timeout_s=self.playbook.deadlines.agent_connect_s
                )
            self._last_exit = result.exit_status
            diagnosis: Diagnosis | None = None
            try:
                log_tail = await self._collect_log() if result.exit_status != 0 else ""
                diagnosis = classify(self._evidence(result, log_tail, started))
            finally:
                self._record(
                    replace(attempt, diagnosis=diagnosis, config=shown_config(content))
                )
        finally:
            await self._remove_private_dir(private_dir)
        return result, diagnosis

    async def _make_private_dir(self, stage: str) -> str:
        """The private directory for the --config file; the host fails (nothing is written)
        when it cannot be made: a config file anywhere else could be read by others."""
        making = asyncio.ensure_future(self._run(stage, self.commands.make_private_dir()))
        try:
            # Shielded: a cancel (Ctrl-C) must not cut the answer that names the directory the
            # host may have made already, or nobody could remove it.
            made = await asyncio.shield(making)
        except asyncio.CancelledError:
            await self._remove_made_dir(making)
            raise
        return self._private_dir_of(made)

    def _private_dir_of(self, made: CommandResult) -> str:
        private_dir = made.stdout.strip().splitlines()[-1] if made.stdout.strip() else ""
        if made.exit_status != 0 or not private_dir:
            raise HostFinished(no_private_dir(made.stderr))
        if isinstance(self.commands, ScriptCommands) and not self.commands.is_private_dir(
            private_dir
        ):
            # A path from the host goes into rm -rf and a file write: only ever the one we
            # asked mktemp for (issue 16 item 9).
            raise HostFinished(
                findings.step_failed(f"unexpected private directory {private_dir[:80]!r}")
            )
        return private_dir

    async def _remove_made_dir(self, making: asyncio.Future[CommandResult]) -> None:
        """Cancelled while the host made the directory: wait (bounded) for its path, then
        remove it, so no config directory outlives an interrupted run."""
        with contextlib.suppress(Exception):
            await asyncio.wait({making}, timeout=self.playbook.deadlines.command_s)
            if making.done() and not making.cancelled() and making.exception() is None:
                await self._remove_private_dir(self._private_dir_of(making.result()))

    async def _remove_private_dir(self, private_dir: str) -> None:
        """Remove the config directory even while the host task is being cancelled."""
        command = self.commands.remove_dir(private_dir)
        cleanup = asyncio.ensure_future(self._run("cleanup", command))
        try:
            await asyncio.shield(cleanup)
        except asyncio.CancelledError:
            await asyncio.wait({cleanup}, timeout=self.playbook.deadlines.command_s)
            raise
        except (HostFinished, ArcfleetError):
            pass  # reported by the outcome; the transcript holds the failed rm

    async def _collect_log(self) -> str:
        try:
            return await self.transport.read_tail(
                self.commands.log_path, self.playbook.log_tail_bytes, elevated=True
            )
        except ArcfleetError:
            return ""

    async def _verify(
        self, agent: str, connected: Diagnosis, verified: CommandResult | None = None
    ) -> Diagnosis:
        if not self.playbook.verify and connected.category is Category.CONNECTED:
            return connected
        # The host script ran show --json right after its connect; otherwise ask now.
        result = verified or await self._run("verify", self.commands.show_json(agent))
        state = AgentState.parse(result.stdout)
        if state is not None and state.connected and state.matches(self.host):
            return findings.connected(state.resource_id)
        detail = (
            f"show says status={state.status!r} resourceId={state.resource_id!r}"
            if state
            else f"show --json gave no state (exit {result.exit_status})"
        )
        return findings.verify_failed(detail)

    async def _remediate(self, diagnosis: Diagnosis) -> bool:
        """Apply the diagnosis's named fix once per host per run, if the playbook allows it."""
        remedy = diagnosis.action.remediation
        if diagnosis.action.kind is not ActionKind.REMEDIATE or remedy is None:
            return False
        if remedy.value in self._remediations or not self.playbook.allows(remedy):
            return False
        self._remediations.append(remedy.value)
        if remedy is Remediation.RESTART_AGENT_SERVICE:
            result = await self._run(
                "remediate", self.commands.restart_agent_service(), remediation=remedy.value
            )
            return result.exit_status == 0
        if remedy is Remediation.WAIT_FOR_HIMDS:
            return await remediation.wait_for_himds(
                self._run, self.commands, self._agent_path, limit_s=self.playbook.himds_wait_s
            )
        if remedy is Remediation.DISCONNECT_LOCAL:
            return await self._disconnect(None, force_local_only=True)
        return False

    async def _disconnect(self, agent: str | None, *, force_local_only: bool) -> bool:
        agent = agent or "azcmagent"
        if force_local_only:
            result = await self._run(
                "remediate",
                self.commands.disconnect(agent, None, force_local_only=True),
                remediation=Remediation.DISCONNECT_LOCAL.value,
            )
            return result.exit_status == 0
        result, diagnosis = await self._run_with_config(
            "disconnect",
            lambda config: self.commands.disconnect(agent, config, force_local_only=False),
        )
        if result.exit_status != 0:
            # e.g. the resource is already gone (AZCM0043 ResourceNotFound): the documented way
            # out is a local-only disconnect, when the playbook allows it
            if diagnosis.action.remediation is Remediation.DISCONNECT_LOCAL and (
                await self._remediate(diagnosis)
            ):
                return True
            raise HostFinished(diagnosis)
        return True

    async def _offboard(self, agent: str, state: AgentState | None) -> Diagnosis:
        diagnosis = await self._disconnect_host(agent, state)
        return await self._uninstall(diagnosis) if self.playbook.uninstall else diagnosis

    async def _disconnect_host(self, agent: str, state: AgentState | None) -> Diagnosis:
        if state is not None and not state.connected:
            return disconnected("the host was not connected; nothing to do")
        # The playbook's attempts and remediations hold for disconnect as for connect (a
        # stopped himds is restarted once, a throttled ARM call waits), a hang does not retry.
        for number in range(1, self.playbook.attempts + 1):
            try:
                await self._disconnect(agent, force_local_only=False)
                return disconnected("disconnected from Azure Arc")
            except HostFinished as failed:
                diagnosis = failed.diagnosis
                last = number == self.playbook.attempts
                if last or diagnosis.category is Category.TIMEOUT:
                    raise
                if diagnosis.action.kind is ActionKind.REMEDIATE:
                    if not await self._remediate(diagnosis):
                        raise
                elif diagnosis.action.kind is ActionKind.RETRY:
                    await asyncio.sleep(self._backoff_s(number, diagnosis))
                else:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

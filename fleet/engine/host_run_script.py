"""The one-session path of a host run: the host script and what the engine reads from it.

A mixin of :class:`fleet.engine.host_run.HostRun` (split out to keep modules small): the state
machine decides; these methods run the script (:mod:`fleet.engine.host_script`), record its steps
as they arrive, and stop the host where the step-by-step path would have stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import cast

from fleet.azcm import findings
from fleet.azcm.agent_config import (
    CERT_PATH_MARK,
    PROXY_GET_STEP,
    agent_settings,
    script_stdin,
    setting_step,
    shown_config,
)
from fleet.azcm.classifier import classify
from fleet.azcm.commands import AgentCommands, ScriptCommands, ScriptMode, connect_config
from fleet.azcm.diagnosis import Action, ActionKind, Diagnosis, Evidence, Remediation
from fleet.engine import host_script
from fleet.engine.host_script import ScriptSteps
from fleet.engine.host_state import (
    AgentState,
    HostContext,
    HostFinished,
    ScriptedConnect,
    no_private_dir,
)
from fleet.engine.outcome import Attempt
from fleet.engine.playbook import Mode, Playbook
from fleet.errors import ConnectionDropped
from fleet.inventory.model import ResolvedHost
from fleet.transport.base import CommandResult, ScriptTransport, StdinGate, Transport

_ELEVATION_DENIED = re.compile(
    r"a password is required|a terminal is required|not in the sudoers", re.IGNORECASE
)


def _now() -> datetime:
    return datetime.now(UTC)


def _nothing() -> None:
    pass


class ScriptedPath:
    # Provided by HostRun.
    host: ResolvedHost
    transport: Transport
    commands: AgentCommands
    playbook: Playbook
    ctx: HostContext
    _elevated_commands: AgentCommands | None
    _remediations: list[str]
    _agent_version: str | None
    _last_exit: int | None
    _pending: ScriptedConnect | None
    _clock_skew_s: float | None
    _settings_applied: bool
    _configured_proxy: str | None
    _deferred_slot: asyncio.Semaphore | None = None

    def release_deferred_slot(self) -> None:
        """The runner has recorded this host's outcome: the slot it kept can go."""
        slot, self._deferred_slot = self._deferred_slot, None
        if slot is not None:
            slot.release()

    def _record(self, attempt: Attempt) -> None:
        raise NotImplementedError

    _agent_path: str

    def _evidence(
        self, result: CommandResult, log_tail: str = "", run_started: datetime | None = None
    ) -> Evidence:
        raise NotImplementedError

    async def _remediate(self, diagnosis: Diagnosis) -> bool:
        raise NotImplementedError

    async def _remove_private_dir(self, private_dir: str) -> None:
        raise NotImplementedError

    async def _scripted_start(self) -> tuple[str, AgentState | None]:
        """Preflight and state from the host script. On the common path the same script also
        connected; that result waits in ``_pending`` for :meth:`_connect_once`."""
        preflight_only = self.playbook.mode in (Mode.PREFLIGHT, Mode.INSTALL) or getattr(
            self, "_looking_before_upgrade", False)  # an upgrade must come before connect
        mode = ScriptMode.PREFLIGHT if preflight_only else ScriptMode.CONNECT
        for _ in range(2):
            agent, show = await self._script(mode)
            state = AgentState.parse(show.stdout) if show.exit_status == 0 else None
            if state is not None or self._pending is not None:
                return agent, state
            # As the step-by-step path: fix what stops show (once), then look again.
            if not await self._remediate(classify(self._evidence(show))):
                break
        return agent, None

    async def _script(self, mode: str) -> tuple[str, CommandResult]:
        """Run the host script once (one session), its steps recorded as they arrive, and stop
        the host where the step-by-step path would have. Returns the agent and its show."""
        commands = self.commands
        assert isinstance(commands, ScriptCommands)
        transport = cast(ScriptTransport, self.transport)
        gated = host_script.gated(commands, mode)
        params = host_script.params_for(self.playbook, mode, gate=gated)
        preflight = mode == ScriptMode.PREFLIGHT
        # The config travels on the script's stdin; it reaches the disk only if connect runs.
        token = (await self.ctx.access_token()
                 if self.ctx.access_token and not preflight else None)
        # With a certificate, the script writes it into its private directory and puts that
        # path where the mark is (agent_config.script_stdin).
        certificate = None if token is not None else self.ctx.sp_certificate
        cert_path = f"{CERT_PATH_MARK}/{certificate.file_name}" if certificate else None
        config = connect_config(self.host, self.ctx.sp_secret, cert_path, access_token=token)
        cert_data = certificate.data if certificate else None
        stdin = b"" if preflight else script_stdin(config, cert_data)

        # Log lines older than this script are another run's history (the classifier cuts the
        # log there, allowing for the host's clock skew).
        script_started = _now()

        seen: list[ScriptSteps] = []  # the steps being read (started= fills it)

        def diagnose(result: CommandResult, log_tail: str, version: str | None) -> Diagnosis:
            self._agent_version = version
            # The clock step comes before the log tail that releases this diagnosis (Linux:
            # only after a failed connect; Windows: at the start).
            if seen:
                self._read_clock(seen[0])
            return classify(self._evidence(result, log_tail, script_started))

        slots = None if preflight else self.ctx.agent_slots
        held = False
        refused: Diagnosis | None = None

        def release(diagnosis: Diagnosis | None = None) -> None:
            nonlocal held
            if slots is not None and held:
                held = False
                if diagnosis is not None and diagnosis.fail_run:
                    # A cause that may stop the run: the slot goes only after the runner has
                    # counted this host's outcome, so no waiting host starts before the
                    # breaker could see it.
                    self._deferred_slot = slots
                    return
                slots.release()

        async def take_slot() -> None:
            """An agent slot, paced, breaker checked: what a connect needs to start."""
            nonlocal held, refused
            if slots is not None:
                await slots.acquire()
                held = True
            refused = self.ctx.stop_reason()
            if refused is not None:
                return
            await self.ctx.pacer.acquire()
            self.ctx.agent_started()

        async def run(given: bytes | StdinGate, ready: Callable[[], None]) -> ScriptSteps:
            try:
                return await host_script.run(
                    transport, commands, params, self.host, given,
                    timeout_s=host_script.deadline_s(self.playbook, mode),
                    record=self._record, diagnose=diagnose, connect_done=release,
                    started=seen.append, ready=ready,
                    config_shown=shown_config(config) if stdin else "",
                )
            except asyncio.CancelledError:
                if seen:
                    await self._remove_after_stop(seen[0], commands)
                raise

        if preflight:
            steps = await run(b"", _nothing)
        elif gated:
            # The script runs its preflight without a slot (overlapping other hosts' connects)
            # and waits at its gate; the slot is taken only then, and the config goes with "go".
            gate = StdinGate()
            opener: asyncio.Task[None] | None = None

            async def open_gate() -> None:
                try:
                    await take_slot()
                    if refused is None:
                        gate.open(b"go\n" + stdin)
                finally:
                    gate.refuse()  # a no-op once open: the script ends without connecting

            def ready() -> None:
                nonlocal opener
                gate.waiting()
                if opener is None:
                    opener = asyncio.create_task(open_gate())

            try:
                steps = await run(gate, ready)
            finally:
                if opener is not None and not opener.done():
                    opener.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await opener
                release()
            if refused is not None:
                raise HostFinished(refused)
        else:
            # The script may connect: it starts with an agent slot, paced, breaker checked;
            # the slot goes as soon as the connect step is over (the verify needs none).
            try:
                await take_slot()
                if refused is not None:
                    raise HostFinished(refused)
                steps = await run(stdin, _nothing)
            finally:
                release()
        return await self._read_script(steps, commands, mode)

    async def _read_script(
        self, steps: ScriptSteps, commands: ScriptCommands, mode: str
    ) -> tuple[str, CommandResult]:
        """Decide from a finished script run, as the step-by-step path decided per step."""
        report, raw = steps.report, steps.raw
        self._agent_version = steps.agent_version
        if not report.complete:
            await self._remove_after_stop(steps, commands)
        if not report.steps and not raw.timed_out and not raw.lost:
            self._script_never_ran(steps, commands)
        workdir = steps.get("workdir")
        if workdir is not None and workdir.exit_status != 0:
            self._record(
                Attempt(
                    stage="preflight", command=workdir.command,
                    exit_status=workdir.exit_status, duration_s=workdir.duration_s,
                    started_at=steps.started_at, stderr=workdir.stderr,
                )
            )
            raise HostFinished(no_private_dir(workdir.stderr))
        if workdir is not None and not commands.is_private_dir(steps.private_dir):
            raise HostFinished(
                findings.step_failed(f"unexpected private directory {steps.private_dir[:80]!r}")
            )
        self._read_clock(steps)
        elevation = steps.get("elevation")
        if elevation is not None and not commands.is_elevated(elevation):
            return await self._script_not_elevated(elevation, mode)
        located = steps.get("locate")
        if located is not None and (located.exit_status != 0 or not steps.agent):
            raise HostFinished(findings.agent_missing(located.stderr.strip() or "not on PATH"))
        self._read_settings(steps)
        config = steps.get("config")
        if config is not None and config.exit_status != 0:
            raise HostFinished(
                findings.step_failed(f"could not write the --config file: {config.stderr[-300:]}")
            )
        self._script_complete(steps, commands)
        if steps.agent:
            self._agent_path = steps.agent  # the remediations run this agent
        if steps.connect is not None:
            result, diagnosis = steps.connect
            self._last_exit = result.exit_status
            self._pending = ScriptedConnect(result, diagnosis, steps.get("verify"))
        show = steps.get("show")
        assert show is not None  # a complete report of a run that got this far has show
        return steps.agent, show

    async def _remove_after_stop(self, steps: ScriptSteps, commands: ScriptCommands) -> None:
        """A script stopped before its end (Ctrl-C, deadline, dropped session): where the host
        script dies with its command (Windows: a terminated process runs no ``finally``),
        remove its directory now, as the step-by-step path would (the scheduled task is the
        net when this cannot run either)."""
        # The planned directory when the workdir record never arrived: the script may have made
        # it just before the stop (removing a directory that is not there costs one command).
        private_dir = steps.private_dir or steps.planned_dir
        if (
            private_dir
            and not getattr(commands, "script_cleans_up_when_stopped", True)
            and commands.is_private_dir(private_dir)
        ):
            await self._remove_private_dir(private_dir)

    def _read_settings(self, steps: ScriptSteps) -> None:
        """The script's agent-setting steps (config set proxy.*) and its preflight proxy read."""
        settings = agent_settings(self.host)
        for key, _value in settings:
            result = steps.get(setting_step(key))
            if result is not None and result.exit_status != 0:
                raise HostFinished(self._setting_failed(key, result))
        if settings and all(steps.get(setting_step(key)) for key, _ in settings):
            self._settings_applied = True
        proxy = steps.get(PROXY_GET_STEP)
        if proxy is not None and proxy.exit_status == 0:
            self._configured_proxy = proxy.stdout.strip()

    def _setting_failed(self, key: str, result: CommandResult) -> Diagnosis:
        """``config set KEY`` failed: the agent's own code if it gave one, else the words."""
        diagnosis = classify(self._evidence(result))
        if diagnosis.code:
            return replace(diagnosis, action=Action(ActionKind.FAIL_HOST))
        words = (result.stderr.strip() or result.stdout.strip())[-300:]
        return findings.step_failed(
            f"azcmagent config set {key} failed (exit {result.exit_status}): {words}"
        )

    def _script_never_ran(self, steps: ScriptSteps, commands: ScriptCommands) -> None:
        """No report at all: sudo refused, or no shell. Say which, with its own words."""
        raw = steps.raw
        output = raw.stdout.decode("utf-8", errors="replace")
        self._record(
            Attempt(
                stage="preflight", command=commands.script_label(), exit_status=raw.exit_status,
                duration_s=raw.duration_s, started_at=steps.started_at, stdout=output[-4096:],
                stderr=raw.stderr, truncated_bytes=raw.truncated_bytes,
            )
        )
        denied = _ELEVATION_DENIED.search(raw.stderr + output)
        if denied:
            raise HostFinished(findings.elevation_required(denied.group(0)))
        detail = (raw.stderr.strip() or steps.report.problem)[-300:]
        raise HostFinished(
            findings.step_failed(f"the host script did not run (exit {raw.exit_status}): {detail}")
        )

    async def _script_not_elevated(
        self, elevation: CommandResult, mode: str
    ) -> tuple[str, CommandResult]:
        self._elevate_or_finish(elevation)
        return await self._script(mode)

    def _elevate_or_finish(self, check: CommandResult) -> None:
        """The elevation check said "not root": switch to the sudo commands when the playbook
        allows it (the caller then runs its step again), else the host ends with the reason."""
        denied = _ELEVATION_DENIED.search(check.stderr + check.stdout)
        if denied:
            raise HostFinished(findings.elevation_required(denied.group(0)))
        if self._elevated_commands is not None and self.playbook.escalate_with_sudo:
            self.commands = self._elevated_commands
            self._elevated_commands = None
            if Remediation.RERUN_ELEVATED.value not in self._remediations:
                self._remediations.append(Remediation.RERUN_ELEVATED.value)
            return
        raise HostFinished(
            findings.elevation_required(
                "the login user is not root and the inventory does not set become"
                if self._elevated_commands is not None
                else f"elevation check printed {check.stdout.strip()!r}"
            )
        )

    def _script_complete(self, steps: ScriptSteps, commands: ScriptCommands) -> None:
        """A report without its end record is never a success: the host ends timed out,
        dropped or unknown, with every step that did arrive already recorded."""
        report, raw = steps.report, steps.raw
        if report.complete:
            return
        self._pending = None
        partial = report.partial.name if report.partial else ""
        stage = host_script.script_stage(partial) if partial else "preflight"
        if raw.timed_out:
            deadline = (
                self.playbook.deadlines.agent_connect_s
                if partial == "connect"
                else host_script.deadline_s(self.playbook, ScriptMode.PREFLIGHT)
            )
            diagnosis = findings.timed_out(stage, deadline)
            self._record(
                Attempt(
                    stage=stage, command=commands.script_label() + f" [{partial or 'script'}]",
                    exit_status=None, duration_s=raw.duration_s, started_at=steps.started_at,
                    stdout=report.partial.stdout if report.partial else "",
                    stderr=raw.stderr, diagnosis=diagnosis,
                )
            )
            raise HostFinished(diagnosis)
        if raw.lost:
            raise ConnectionDropped(self.host.name, raw.lost)
        raise HostFinished(
            findings.step_failed(
                f"the host script's report is incomplete ({report.problem}); "
                f"last step received: {report.names()[-1] if report.steps else 'none'}"
            )
        )

    def _read_clock(self, steps: ScriptSteps) -> None:
        """The host's clock skew from the script's clock step, if it ran."""
        clock = steps.get("clock")
        if clock is None:
            return
        asked_at = steps.starts.get("clock", steps.started_at)
        text = clock.stdout.strip()
        try:
            host_time = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return
        # Seconds the host is ahead of this machine (1 s resolution on the host side).
        midpoint = asked_at + timedelta(seconds=clock.duration_s / 2)
        self._clock_skew_s = round((host_time - midpoint).total_seconds(), 1)

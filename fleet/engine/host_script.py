"""The one-session path: run a host's script and turn its framed report into step results.

:class:`fleet.engine.host_run.HostRun` decides; this module only runs the script (one transport
call) and reads what came back into :class:`ScriptSteps`: one :class:`CommandResult` per step,
named as the separate commands of the step-by-step path would be, so transcripts, attempts and the
classifier see the same shapes as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from fleet.azcm.agent_config import (
    PROXY_GET_STEP,
    PROXY_URL,
    agent_settings,
    is_setting_step,
    setting_step,
)
from fleet.azcm.commands import AgentCommands, ScriptCommands, ScriptMode, ScriptParams
from fleet.azcm.diagnosis import Diagnosis
from fleet.engine import frames
from fleet.engine.frames import FramedReport, StepRecord
from fleet.engine.outcome import Attempt
from fleet.engine.playbook import Playbook
from fleet.inventory.model import ResolvedHost
from fleet.transport.base import (
    CommandResult,
    ScriptResult,
    ScriptTransport,
    StdinGate,
    Transport,
)

STEP_CAP_BYTES = 64 * 1024
# What a script command is called in transcripts (the script itself is several KB).
SCRIPT_LABEL = "<arcfleet host script v1>"


def script_capable(transport: Transport, commands: AgentCommands) -> bool:
    # isinstance against a runtime-checkable Protocol probes every member: once per pair of
    # classes, not twice per host.
    key = (type(transport), type(commands))
    capable = _CAPABLE.get(key)
    if capable is None:
        capable = _CAPABLE[key] = isinstance(commands, ScriptCommands) and callable(
            getattr(transport, "run_script", None)
        )
    return capable


_CAPABLE: dict[tuple[type, type], bool] = {}


def gated(commands: AgentCommands, mode: str) -> bool:
    """Whether this run of the script waits at its gate for the engine's "go" (a run that may
    connect, on an OS whose script has the gate)."""
    return mode != ScriptMode.PREFLIGHT and bool(getattr(commands, "script_gate", False))


def params_for(playbook: Playbook, mode: str, *, gate: bool = False) -> ScriptParams:
    deadlines = playbook.deadlines
    return ScriptParams(
        boundary=frames.new_boundary(),
        mode=mode,
        cap=max(STEP_CAP_BYTES, playbook.log_tail_bytes),
        log_tail_bytes=playbook.log_tail_bytes,
        # The timer must outlive the whole script: it only matters when the session died.
        cleanup_after_s=int(deadlines.agent_connect_s + 2 * deadlines.command_s) + 60,
        gate=gate,
    )


def deadline_s(playbook: Playbook, mode: str) -> float:
    deadlines = playbook.deadlines
    if mode == ScriptMode.PREFLIGHT:
        return deadlines.command_s
    return deadlines.agent_connect_s + deadlines.command_s


@dataclass
class ScriptSteps:
    """One script session, read: each step as the command result it stands for."""

    report: FramedReport
    raw: ScriptResult
    started_at: datetime
    by_name: dict[str, CommandResult] = field(default_factory=dict)
    starts: dict[str, datetime] = field(default_factory=dict)
    agent: str = ""
    agent_version: str | None = None
    # The connect the script ran (its result and diagnosis), and its verify, if it got there.
    connect: tuple[CommandResult, Diagnosis] | None = None
    # Where the script makes its directory, when the engine chose the name (Windows): what to
    # remove after a stop that came before the script's workdir record.
    planned_dir: str = ""

    def get(self, name: str) -> CommandResult | None:
        return self.by_name.get(name)

    @property
    def private_dir(self) -> str:
        workdir = self.by_name.get("workdir")
        return workdir.stdout.strip() if workdir is not None and workdir.exit_status == 0 else ""


class ScriptRecorder:
    """Turns each step record into the attempt the step-by-step path would have recorded, the
    moment it arrives (a resumed run must see a connect that finished before a crash).

    A failed connect is held until the log tail (the next records) arrives, because its
    diagnosis reads the log; the steps after it wait with it, so the transcript keeps the order
    the steps ran in.
    """

    def __init__(
        self,
        steps: ScriptSteps,
        commands: ScriptCommands,
        host: ResolvedHost,
        record: Callable[[Attempt], None],
        diagnose: Callable[[CommandResult, str, str | None], Diagnosis],
        connect_done: Callable[[Diagnosis | None], None] = lambda _d: None,
        ready: Callable[[], None] = lambda: None,
        config_shown: str = "",
    ) -> None:
        self.steps = steps
        self._config_shown = config_shown
        self._connect_done = connect_done
        self._ready = ready
        self._commands = commands
        self._host = host
        self._record = record
        self._diagnose = diagnose
        self._at = steps.started_at
        self._held: tuple[CommandResult, Attempt] | None = None
        self._after_held: list[Attempt] = []

    def _command(self, name: str) -> str:
        """The command the step stands for (built for this step only: a record per step)."""
        c, agent, private_dir = self._commands, self.steps.agent, self.steps.private_dir
        builders: dict[str, Callable[[], str]] = {
            "workdir": c.make_private_dir,
            "clock": lambda: CLOCK_COMMAND,
            "elevation": c.check_elevation,
            "locate": c.locate_agent,
            "version": lambda: c.version(agent),
            "show": lambda: c.show_json(agent),
            # The marker a resumed run counts launched connects by (EarlierProgress).
            "config": c.make_private_dir,
            "connect": lambda: c.connect(agent, c.config_path(private_dir), self._host),
            "cleanup": lambda: (
                c.remove_dir(private_dir) if c.is_private_dir(private_dir) else "rm"
            ),
            "verify": lambda: c.show_json(agent),
            PROXY_GET_STEP: lambda: c.config_get(agent, PROXY_URL),
        }
        build = builders.get(name)
        if build is not None:
            return build()
        for key, value in agent_settings(self._host):
            if setting_step(key) == name:
                return c.config_set(agent, key, value)
        return name

    def feed(self, records: list[StepRecord]) -> None:
        for record in records:
            self._feed(record)

    def _feed(self, record: StepRecord) -> None:
        steps, name = self.steps, record.name
        result = CommandResult(
            command=self._command(name),
            exit_status=record.exit_status,
            stdout=record.stdout,
            stderr=record.stderr,
            duration_s=record.duration_s,
            truncated_bytes=record.dropped_bytes,
        )
        steps.by_name[name] = result
        steps.starts[name] = self._at
        started, self._at = self._at, self._at + timedelta(seconds=record.duration_s)
        if name == "locate":
            paths = [line.strip() for line in record.stdout.splitlines() if line.strip()]
            steps.agent = paths[0] if paths else ""
        elif name == "show":
            # show --json names the agent's version: no separate `azcmagent version` call.
            named = _AGENT_VERSION.search(record.stdout)
            match = _VERSION.search(named.group(1)) if named else None
            steps.agent_version = match.group(0) if match else None
        if name == "workdir":
            return  # recorded only when it fails (the engine stops the host there)
        if name == "ready":
            self._ready()  # the script waits at its gate: no command of its own to record
            return
        if name == "log":
            self._release(result.stdout if result.exit_status == 0 else "")
            return
        attempt = Attempt(
            stage=script_stage(name),
            command=result.command,
            exit_status=result.exit_status,
            duration_s=result.duration_s,
            started_at=started,
            stdout=result.stdout,
            stderr=result.stderr,
            truncated_bytes=result.truncated_bytes,
        )
        if name == "connect":
            attempt = replace(attempt, config=self._config_shown)
            self._held = (result, attempt)
            if result.exit_status == 0:
                self._release("")
        elif self._held is not None:
            self._after_held.append(attempt)
        else:
            self._record(attempt)

    def _release(self, log_tail: str) -> None:
        if self._held is not None:
            result, attempt = self._held
            self._held = None
            diagnosis = self._diagnose(result, log_tail, self.steps.agent_version)
            self.steps.connect = (result, diagnosis)
            self._record(replace(attempt, diagnosis=diagnosis))
            # The agent operation is over and diagnosed: its slot can go (the caller keeps it
            # for a cause that may stop the run, until the breaker has counted it).
            self._connect_done(diagnosis)
        for attempt in self._after_held:
            self._record(attempt)
        self._after_held = []

    def close(self) -> None:
        """The stream ended: a held connect is recorded with what there is."""
        self._release("")


async def run(
    transport: ScriptTransport,
    commands: ScriptCommands,
    params: ScriptParams,
    host: ResolvedHost,
    stdin: bytes | StdinGate,
    *,
    timeout_s: float,
    record: Callable[[Attempt], None],
    diagnose: Callable[[CommandResult, str, str | None], Diagnosis],
    connect_done: Callable[[Diagnosis | None], None] = lambda _d: None,
    started: Callable[[ScriptSteps], None] = lambda _s: None,
    ready: Callable[[], None] = lambda: None,
    config_shown: str = "",
) -> ScriptSteps:
    """Run the script; ``started`` gets the steps being read (the private directory is known
    there the moment its record arrives, even if this call is cancelled)."""
    command = commands.script_command(params, host)
    parser = frames.FrameParser(params.boundary)
    planned = getattr(commands, "planned_private_dir", None)
    steps = ScriptSteps(
        report=parser.report, raw=_NOT_RUN, started_at=datetime.now(UTC),
        planned_dir=planned(params) if planned is not None else "",
    )
    started(steps)
    recorder = ScriptRecorder(
        steps, commands, host, record, diagnose, connect_done, ready, config_shown=config_shown
    )
    try:
        steps.raw = await transport.run_script(
            command,
            stdin,
            timeout_s=timeout_s,
            output_cap=24 * params.cap + 65536,
            on_stdout=lambda chunk: recorder.feed(parser.feed(chunk)),
        )
    finally:
        recorder.close()
    steps.report = parser.finish()
    return steps


_NOT_RUN = ScriptResult(command="", exit_status=None, stdout=b"", stderr="", duration_s=0.0)
CLOCK_COMMAND = "date -u +%Y-%m-%dT%H:%M:%SZ"
_VERSION = re.compile(r"\d+\.\d+\.\d+(?:\.\d+)?")
_AGENT_VERSION = re.compile(r'"agentVersion"\s*:\s*"([^"]*)"', re.IGNORECASE)


def script_stage(name: str) -> str:
    """The transcript stage of a script step (as the step-by-step path named them)."""
    if is_setting_step(name):
        return "connect"
    return {
        "config": "connect",
        "connect": "connect",
        "cleanup": "cleanup",
        "verify": "verify",
    }.get(name, "preflight")

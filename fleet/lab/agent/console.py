"""One azcmagent invocation's console and log (the shapes arcfleet reads), and its failure.

:class:`AgentConsole` collects ``INFO``/``DEBUG``/``ERROR``/``FATAL`` console lines, the progress
bar, ``--json`` bodies and the logrus-format log lines; :class:`AgentFailure` is the exception a
command raises to end with an AZCM code (exit status = the code's number).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from fleet.lab.agent.catalog import code_info


@dataclass(frozen=True)
class AgentResult:
    exit_status: int
    stdout: str
    stderr: str


class AgentFailure(Exception):
    """End the command with ``code``; ``stage`` is the ERROR line's message, if any."""

    def __init__(self, code: str, reason: str, stage: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.reason = reason
        self.stage = stage


@dataclass
class AgentConsole:
    """Collects console output and the log lines of one invocation."""

    verbose: bool = False
    json_mode: bool = False
    log_stderr: bool = False
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def _log(self, level: str, msg: str, extra: str = "") -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        escaped = msg.replace("\\", "\\\\").replace('"', '\\"')
        self.log.append(f'time="{stamp}" level={level} msg="{escaped}"{extra}')

    def _console(self, line: str, *, diagnostic: bool) -> None:
        if self.json_mode and not diagnostic:
            return
        (self.err if diagnostic and self.log_stderr else self.out).append(line)

    def info(self, msg: str, extra: str = "") -> None:
        self._log("info", msg, extra)
        if not self.json_mode:
            self.out.append(f"INFO    {msg}{'  ' + extra if extra else ''}")

    def debug(self, msg: str) -> None:
        self._log("debug", msg)
        if self.verbose:
            self._console(f"DEBUG   {msg}", diagnostic=True)

    def error(self, msg: str, detail: str) -> None:
        self._log("error", msg, f' Error="{detail}"')
        self._console(f"ERROR   {msg}: {detail}", diagnostic=True)

    def progress(self, pct: int) -> None:
        if self.json_mode:
            return
        width = 15
        filled = pct * width // 100
        bar = "=" * width if pct >= 100 else ("=" * max(filled - 1, 0) + ">").ljust(width)
        self.out.append(f"{pct:>4}% [{bar}]")

    def fail(self, failure: AgentFailure) -> int:
        info = code_info(failure.code)
        status = info.exit_status(failure.code)
        if failure.stage:
            self.error(failure.stage, failure.reason)
        else:
            self._log("error", failure.reason)
            self._console(f"ERROR   {failure.reason}", diagnostic=True)
        self._log("info", f"Exit Code:  {failure.code}: {info.name}")
        self._log("info", "For troubleshooting, see https://aka.ms/arc/azcmerror")
        self._log("fatal", failure.reason)
        line = f"{failure.code}: {info.name}"
        if self.json_mode:
            body = {"status": "Failed", "error": {"code": failure.code, "name": info.name,
                                                  "message": failure.reason}}
            self.out.append(json.dumps(body))
            self.err.append(f"FATAL   {line}")
        else:
            self._console(f"FATAL   {line}", diagnostic=True)
        return status

    def result(self, status: int) -> AgentResult:
        return AgentResult(status, join_lines(self.out), join_lines(self.err))


def join_lines(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)

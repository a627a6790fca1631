"""The lab's stand-in for arcfleet's Windows host script (:mod:`fleet.azcm.script_windows`).

The lab has no PowerShell, so it does not interpret the script: it reads the parameters the script
carries on its first line (a comment PowerShell ignores) and performs the same steps, in the same
order and with the same decisions, through the lab's agent simulator, answering with the same
framed report (streamed as each step ends). Each step is recorded in ``LabHost.commands`` as a real
host's audit log would show it. The real script is checked against the real PowerShell grammar
(tests/test_powershell_grammar.py).

What the lab takes from the script text itself, so a script that drops one of them is caught:
the directory's and the file's ACL (Administrators + SYSTEM), the config read with
``[Console]::In.ReadToEnd()``, the sweep and the scheduled task (:mod:`fleet.lab.winrm_tasks`),
and the task's removal in the ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from typing import Any

from fleet.azcm.agent_config import PROXY_GET_STEP, PROXY_URL, setting_step
from fleet.lab.agent.simulator import run_agent
from fleet.lab.host import LabHost
from fleet.lab.host_script import should_connect
from fleet.lab.scenario import ScenarioKind
from fleet.lab.winrm_tasks import parse_sweep, parse_timer

SCRIPT_MARK = "# arcfleet host script 1 "
TEMP = r"C:\Windows\Temp"
PROGRAM_FILES = r"C:\Program Files"
_ACL_PRINCIPALS = (r"BUILTIN\Administrators", r"NT AUTHORITY\SYSTEM")
_ACL_BLOCK = (
    r"\$acl = New-Object Security\.AccessControl\.{kind}Security\n\s*"
    r"\$acl\.SetAccessRuleProtection\(\$true, \$false\)\n\s*"
    r"foreach \(\$sid in 'S-1-5-32-544', 'S-1-5-18'\) \{{\n"
    r"(?:.*\n){{2}}\s*\}}\n\s*Set-Acl -LiteralPath \${var} -AclObject \$acl\n"
)
_DIR_ACL = re.compile(_ACL_BLOCK.format(kind="Directory", var="dir"))
_FILE_ACL = re.compile(_ACL_BLOCK.format(kind="File", var="configPath"))
_READS_STDIN = "[Convert]::FromBase64String([Console]::In.ReadToEnd().Trim())"
_CANCELS = "DeleteTask((Split-Path -Leaf $dir), 0)"
# The directory's name comes from the engine (it removes the directory after a stop that came
# before the script reported it), so the lab takes it from the script.
_DIR_NAME = re.compile(r"^\s*\$name = '(arcfleet-[0-9a-f]{32})'$", re.MULTILINE)


def is_host_script(text: str) -> bool:
    return text.startswith(SCRIPT_MARK)


def _fragment(
    script: str, first: str, *, ends_after_catch: bool, second: str = ""
) -> str | None:
    """The indented block of ``script`` that starts with the line ``first`` (stripped; the
    next line starting with ``second``), dedented: up to the line that closes it at its own
    indentation."""
    lines = script.splitlines(True)
    for index, line in enumerate(lines):
        if line.strip() != first:
            continue
        if index + 1 >= len(lines) or not lines[index + 1].strip().startswith(second):
            continue
        indent = line[: len(line) - len(line.lstrip())]
        block = [line[len(indent):]]
        seen_catch = False
        for follow in lines[index + 1 :]:
            if not follow.startswith(indent):
                return None
            block.append(follow[len(indent):])
            if follow.rstrip() == indent + "} catch {":
                seen_catch = True
            if follow.rstrip() == indent + "}" and (seen_catch or not ends_after_catch):
                return "".join(block)
        return None
    return None


class _Report:
    def __init__(self, output: Any, boundary: str, cap: int) -> None:
        self.output = output
        self.boundary = boundary
        self.cap = cap
        self.output.write_bytes(f"{boundary} arcfleet-report 1\n".encode())

    def step(self, name: str, status: int, started: float, out: str, err: str) -> None:
        out_b, err_b = out.encode(), err.encode()
        millis = int((time.monotonic() - started) * 1000)
        out_s, err_s = out_b[: self.cap], err_b[: self.cap]
        self.output.write_bytes(
            f"{self.boundary} step {name} {status} {millis} {len(out_b)} {len(out_s)} "
            f"{len(err_b)} {len(err_s)}\n".encode() + out_s + err_s
        )

    def end(self) -> None:
        self.output.write_bytes(f"{self.boundary} end\n".encode())


async def run_host_script(
    host: LabHost, script: str, config: bytes, output: Any, record: Any, *, elevated: bool
) -> int:
    """Run the script's steps on ``host``; ``output`` is the command's
    :class:`fleet.lab.winrm_powershell.CommandOutput`, ``record`` its WindowsRecord."""
    from fleet.lab.winrm_powershell import FileWrite

    params = json.loads(script.split("\n", 1)[0][len(SCRIPT_MARK) :])
    report = _Report(output, params["boundary"], int(params["cap"]))
    mode: str = params["mode"]
    private_dir = ""
    tasks = record.tasks

    async def agent_step(name: str, argv: list[str]) -> Any:
        host.commands.append(f"& '{agent}' " + " ".join(argv))
        started = time.monotonic()
        record.agent_argv.append(argv)
        result = await run_agent(argv, host, elevated=elevated)
        report.step(name, result.exit_status, started, _crlf(result.stdout), _crlf(result.stderr))
        return result

    killed = False
    try:
        started = time.monotonic()
        named = _DIR_NAME.search(script)
        if named is None:
            report.step("workdir", 1, started, "", "arcfleet lab: the script names no directory\n")
            report.end()
            return 0
        private_dir = TEMP + "\\" + named.group(1)
        host.local_path(private_dir).mkdir(parents=True, exist_ok=False)
        if _DIR_ACL.search(script):
            record.acls[private_dir] = _ACL_PRINCIPALS
        report.step("workdir", 0, started, private_dir, "")
        report.step("clock", 0, time.monotonic(), host.clock() + "\n", "")
        host.commands.append("[Security.Principal.WindowsIdentity]::GetCurrent() Administrator")
        if not elevated:
            report.step("elevation", 1, time.monotonic(), "",
                        "the WinRM session is not in the Administrators role\n")
            report.end()
            return 0
        report.step("elevation", 0, time.monotonic(), "", "")
        agent = PROGRAM_FILES + r"\AzureConnectedMachineAgent\azcmagent.exe"
        if not host.agent_installed or agent.lower() != host.agent_path.lower():
            report.step("locate", 127, time.monotonic(), "",
                        f"azcmagent.exe not found at {agent}\n")
            report.end()
            return 0
        report.step("locate", 0, time.monotonic(), agent + "\n", "")
        show = await agent_step("show", ["show", "-j"])
        if mode == "preflight":
            await agent_step(PROXY_GET_STEP, ["config", "get", PROXY_URL])
            report.end()
            return 0
        if mode != "force" and not should_connect(show):
            report.end()
            return 0
        for key, value in params.get("settings", []):
            if (await agent_step(setting_step(key), ["config", "set", key, value])).exit_status:
                report.end()
                return 0
        started = time.monotonic()
        sweep = _fragment(script, "$cutoff = (Get-Date).ToUniversalTime().AddSeconds("
                          f"-{int(params['cleanup_after_s'])})", ends_after_catch=False)
        sweep_after = parse_sweep(sweep) if sweep else None
        if sweep_after is not None and tasks is not None:
            tasks.sweep(TEMP, sweep_after)
        timer = _fragment(script, "try {", ends_after_catch=True, second="$leaf = Split-Path")
        timer_after = parse_timer(timer) if timer else None
        if timer_after is not None and tasks is not None:
            tasks.register(private_dir, timer_after, elevated=elevated)
        config_path = private_dir + "\\config.json"
        if _READS_STDIN not in script:
            report.step("config", 1, started, "", "the config is not read from stdin\n")
            report.end()
            return 0
        host.local_path(config_path).write_bytes(config)
        acl = _ACL_PRINCIPALS if _FILE_ACL.search(script) else None
        if acl is not None:
            record.acls[config_path] = acl
        record.file_writes.append(FileWrite(config_path, len(config), acl))
        report.step("config", 0, started, "", "")
        argv = ["connect", "--config", config_path, "--verbose"]
        if host.scenario.kind is ScenarioKind.CONNECTION_DROP:
            # The agent "started"; now the network goes away (no exit status, no output).
            host.commands.append(f"& '{agent}' " + " ".join(argv))
            output.connect_started = True
            output.changed.set()
            await asyncio.Event().wait()
        connected = await agent_step("connect", argv)
        started = time.monotonic()
        host.commands.append(f"Remove-Item -LiteralPath '{config_path}' -Force")
        host.local_path(config_path).unlink(missing_ok=True)
        report.step("cleanup", 0, started, "", "")
        if connected.exit_status == 0:
            await agent_step("verify", ["show", "-j"])
        else:
            started = time.monotonic()
            log = host.local_path(params["log_path"].replace("%ProgramData%", r"C:\ProgramData"))
            text = ""
            if log.is_file():
                data = log.read_bytes()
                text = data[-int(params["log_tail_bytes"]) :].decode("utf-8", errors="replace")
            report.step("log", 0, started, text, "")
        report.end()
        return 0
    except asyncio.CancelledError:
        killed = True  # WinRS terminate: the process is killed, its finally never runs
        raise
    finally:
        # The script's finally: the directory goes on every exit path PowerShell controls.
        if private_dir and not killed:
            shutil.rmtree(host.local_path(private_dir), ignore_errors=True)
            record.removed.append(private_dir)
            if tasks is not None and _CANCELS in script:
                tasks.delete(private_dir.rsplit("\\", 1)[-1])


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")

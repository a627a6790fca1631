"""How to say each agent step on Windows: PowerShell scripts for :class:`WinrmTransport`.

The transport sends each script with ``-EncodedCommand``; here every inventory value becomes a
PowerShell single-quoted literal (:func:`fleet.transport.powershell.quote`). Native commands exit
with the agent's own status (``exit $LASTEXITCODE``). The ``--config`` file lives in a directory
under ``$env:TEMP`` whose ACL grants Administrators and SYSTEM only; making it also schedules its
timed removal and sweeps old leftovers (:mod:`fleet.azcm.windows_private`, issue 16 item 11).
"""

from __future__ import annotations

import re

from fleet.azcm.commands import ScriptParams
from fleet.azcm.windows_private import (
    PRIVATE_DIR_PREFIX,
    STEP_CLEANUP_AFTER_S,
    cancel_lines,
    is_private_dir_name,
    private_dir_name,
    sweep_lines,
    timed_cleanup_lines,
)
from fleet.inventory.model import ResolvedHost
from fleet.transport.base import CommandResult
from fleet.transport.powershell import acl_lines, path_expression, quote

AGENT_RELATIVE = r"AzureConnectedMachineAgent\azcmagent.exe"
LOG_PATH = r"%ProgramData%\AzureConnectedMachineAgent\Log\azcmagent.log"
SERVICE = "himds"
__all__ = ["PRIVATE_DIR_PREFIX", "WindowsAgentCommands"]
CONFIG_NAME = "config.json"

class WindowsAgentCommands:
    """:class:`fleet.azcm.commands.AgentCommands` for Windows over WinRM."""

    log_path: str = LOG_PATH
    #: a WinRS terminate kills the host script's process: no ``finally`` runs, so the engine
    #: removes the private directory itself when it stops a script (and the task is the net)
    script_cleans_up_when_stopped: bool = False

    def __init__(self, *, cleanup_after_s: int = STEP_CLEANUP_AFTER_S) -> None:
        #: seconds after which the private directory's scheduled task removes it
        self.cleanup_after_s = int(cleanup_after_s)

    def check_elevation(self) -> str:
        return (
            "$principal = [Security.Principal.WindowsPrincipal]"
            "[Security.Principal.WindowsIdentity]::GetCurrent()\n"
            "if ($principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) "
            "{ exit 0 }\n"
            "[Console]::Error.WriteLine('the WinRM session is not in the Administrators role')\n"
            "exit 1\n"
        )

    def is_elevated(self, result: CommandResult) -> bool:
        return result.exit_status == 0

    def locate_agent(self) -> str:
        # ProgramW6432 is the 64-bit Program Files even from a 32-bit PowerShell.
        return (
            "$base = $env:ProgramW6432\n"
            "if (-not $base) { $base = $env:ProgramFiles }\n"
            f"$agent = Join-Path $base {quote(AGENT_RELATIVE)}\n"
            "if (Test-Path -LiteralPath $agent -PathType Leaf) { Write-Output $agent; exit 0 }\n"
            "[Console]::Error.WriteLine(\"azcmagent.exe not found at $agent\")\n"
            "exit 127\n"
        )

    def version(self, agent: str) -> str:
        return _invoke(agent, ["version"])

    def show_json(self, agent: str) -> str:
        return _invoke(agent, ["show", "-j"])

    def make_private_dir(self) -> str:
        # Leftovers first (older than their own timer), then the directory, its ACL, and its
        # timed removal, all before anything is written into it.
        return (
            f"{sweep_lines(self.cleanup_after_s)}"
            f"$dir = Join-Path $env:TEMP ({quote(PRIVATE_DIR_PREFIX)} + "
            "[guid]::NewGuid().ToString('N'))\n"
            "New-Item -ItemType Directory -Path $dir | Out-Null\n"
            f"{acl_lines('dir', directory=True)}"
            f"{timed_cleanup_lines(self.cleanup_after_s)}"
            "Write-Output $dir\n"
            "exit 0\n"
        )

    def is_private_dir(self, path: str) -> bool:
        """A path whose last component is exactly what :meth:`make_private_dir` makes."""
        return is_private_dir_name(path.rstrip("\\").rsplit("\\", 1)[-1])

    def planned_private_dir(self, params: ScriptParams) -> str:
        """Where the host script makes its directory: under the session's TEMP, which the
        engine does not know, so left for the host to expand (:meth:`remove_dir` takes it)."""
        return "%TEMP%\\" + private_dir_name(params.dir_token)

    def script_command(self, params: ScriptParams, host: ResolvedHost) -> str:
        """The host script (:mod:`fleet.azcm.script_windows`); the WinRM transport sends it on
        the stdin of one bootstrap command, the config after it."""
        from fleet.azcm import script_windows

        return script_windows.build(params, host, agent_relative=AGENT_RELATIVE, log_path=LOG_PATH)

    def script_label(self) -> str:
        return "powershell.exe <arcfleet host script v1>"

    def config_path(self, private_dir: str) -> str:
        return self.private_file(private_dir, CONFIG_NAME)

    def private_file(self, private_dir: str, name: str) -> str:
        return private_dir.rstrip("\\") + "\\" + name

    def config_set(self, agent: str, key: str, value: str) -> str:
        # Validation keeps these to a URL without quotes or spaces and fixed bypass names, so
        # no Windows command-line rule can change them.
        return _invoke(agent, ["config", "set", _setting(key), quote(value)])

    def config_get(self, agent: str, key: str) -> str:
        return _invoke(agent, ["config", "get", _setting(key)])

    def connect(self, agent: str, config_path: str, host: ResolvedHost) -> str:
        # Only the file's path on the command line: Windows PowerShell 5.1 and azcmagent.exe's
        # Go command-line parser would otherwise reinterpret quotes and trailing backslashes.
        return _invoke(agent, ["connect", "--config", quote(config_path), "--verbose"])

    def disconnect(self, agent: str, config_path: str | None, *, force_local_only: bool) -> str:
        args = ["disconnect"]
        if force_local_only:
            args.append("--force-local-only")
        elif config_path is not None:
            args += ["--config", quote(config_path)]
        return _invoke(agent, [*args, "--verbose"])

    def restart_agent_service(self) -> str:
        return (
            f"Restart-Service -Name {quote(SERVICE)} -Force\n"
            f"Write-Output (Get-Service -Name {quote(SERVICE)}).Status.ToString()\n"
            "exit 0\n"
        )

    def remove_dir(self, private_dir: str) -> str:
        if not self.is_private_dir(private_dir):
            # Only ever remove what make_private_dir created.
            raise ValueError(f"not an arcfleet private directory: {private_dir!r}")
        return (
            f"$dir = {path_expression(private_dir)}\n"
            "if (Test-Path -LiteralPath $dir) { Remove-Item -LiteralPath $dir -Recurse -Force }\n"
            f"{cancel_lines()}"
            "exit 0\n"
        )


# Windows PowerShell 5.1 turns a native program's stderr lines into error records when stderr is
# redirected (as under WinRS); with ErrorActionPreference 'Stop' the first one would end the script.
# So: 'Continue', merge with 2>&1, and write each record back to the stream it came from as text.
_NATIVE_PREAMBLE = (
    "$ErrorActionPreference = 'Continue'\n"
    # Stays 127 only when the program could not be started at all.
    "$global:LASTEXITCODE = 127\n"
)
_NATIVE_STREAMS = (
    " 2>&1 | ForEach-Object { if ($_ -is [Management.Automation.ErrorRecord]) "
    "{ [Console]::Error.WriteLine($_.Exception.Message) } else { [Console]::Out.WriteLine($_) } }"
)


def _setting(key: str) -> str:
    # Setting names are arcfleet's own constants (proxy.url): a bare word reads as the docs do.
    if not re.fullmatch(r"[a-z]+(?:\.[a-z]+)*", key):
        raise ValueError(f"not an agent setting name: {key!r}")
    return key


def _invoke(agent: str, args: list[str]) -> str:
    """``& 'agent' args`` then the agent's exit status; args are bare words or quoted already."""
    return (
        f"{_NATIVE_PREAMBLE}& {quote(agent)} {' '.join(args)}{_NATIVE_STREAMS}\n"
        "exit $LASTEXITCODE\n"
    )


"""The Windows private directory's safety net (issue 16 item 11): a timed cleanup and a sweep.

The ``--config`` file lives in ``$env:TEMP\\arcfleet-<32 hex>`` (ACL: Administrators and SYSTEM).
arcfleet removes it itself on every path it controls; these PowerShell fragments cover the paths it
does not (arcfleet killed, the WinRM session cut, the jump host rebooted):

* :func:`timed_cleanup_lines` registers, right after the directory exists and before anything is
  written into it, a one-shot scheduled task through the Task Scheduler COM API
  (``Schedule.Service``; no ScheduledTasks module, so it works on every Windows PowerShell 5.1
  host and nothing is bound by a cmdlet). The task is named after the directory, fires once at
  now + ``after_s`` (``StartWhenAvailable``: a host that was off then runs it when it comes back),
  runs as SYSTEM when the session is elevated (else as the connecting user, S4U), and its action
  deletes the directory and then the task itself. Registering is best effort: a host whose Task
  Scheduler is off still gets its directory (the normal removal still runs) and a line on stderr.
* :func:`sweep_lines` removes, when a new directory is made, the ``arcfleet-<32 hex>`` directories
  in the same ``$env:TEMP`` (the connecting user's own temporary directory) created more than
  ``after_s`` seconds ago: their own timer should have fired, so no live run uses them, and their
  tasks go too.
* :func:`cancel_lines` unregisters the task when arcfleet removes the directory itself.

The lab's WinRM host (:mod:`fleet.lab.winrm_tasks`) recognises these fragments and simulates the
task, so a test can kill arcfleet mid-host and fire the timer.
"""

from __future__ import annotations

import re

from fleet.transport.powershell import quote

PRIVATE_DIR_PREFIX = "arcfleet-"
PRIVATE_DIR_NAME = re.compile(r"arcfleet-[0-9a-f]{32}")
# The step-by-step path: the directory is made, the file written, then the host may wait for an
# agent slot (at most about one other host's connect) before its own connect reads the file.
STEP_CLEANUP_AFTER_S = 900
# The scheduled task's own limit: deleting a directory takes seconds.
_TASK_TIME_LIMIT = "PT10M"
# Task Scheduler constants (taskschd.h).
_TASK_TRIGGER_TIME = 1
_TASK_ACTION_EXEC = 0
_TASK_CREATE_OR_UPDATE = 6
_TASK_LOGON_S4U = 2
_TASK_LOGON_SERVICE_ACCOUNT = 5
# The task's action (a -f template: {0} the directory as base64 of UTF-16LE, so no quote in a
# user's profile path can end a literal; {1} the task's name, letters and digits only).
_TASK_CLEANUP = (
    "$d = [Text.Encoding]::Unicode.GetString([Convert]::FromBase64String('{0}')); "
    "Remove-Item -LiteralPath $d -Recurse -Force -ErrorAction SilentlyContinue; "
    "$s = New-Object -ComObject Schedule.Service; $s.Connect(); "
    "$s.GetFolder('\\').DeleteTask('{1}', 0)"
)


def is_private_dir_name(name: str) -> bool:
    """Exactly what the private-directory step makes: ``arcfleet-`` and a GUID in ``N`` form."""
    return PRIVATE_DIR_NAME.fullmatch(name) is not None


def private_dir_name(token: str) -> str:
    """The private directory's name for the engine's random ``token`` (32 hex digits)."""
    name = PRIVATE_DIR_PREFIX + token
    if not is_private_dir_name(name):
        raise ValueError(f"not a private directory token: {token!r}")
    return name


def step_cleanup_after_s(agent_connect_s: float, command_s: float, host_s: float) -> int:
    """The step path's timer: a slot wait (one other connect), the upload, the own connect and
    the removal, never more than the host's whole deadline; at least STEP_CLEANUP_AFTER_S."""
    wanted = 2 * agent_connect_s + 2 * command_s + 60
    return int(max(STEP_CLEANUP_AFTER_S, min(wanted, host_s + 60)))


def timed_cleanup_lines(after_s: int) -> str:
    """Register the task that removes ``$dir`` after ``after_s`` seconds (``$dir`` is set)."""
    return (
        "try {\n"
        "    $leaf = Split-Path -Leaf $dir\n"
        "    $scheduler = New-Object -ComObject Schedule.Service\n"
        "    $scheduler.Connect()\n"
        "    $folder = $scheduler.GetFolder('\\')\n"
        "    $task = $scheduler.NewTask(0)\n"
        "    $task.RegistrationInfo.Description = 'arcfleet: remove its private directory'\n"
        "    $task.Settings.StartWhenAvailable = $true\n"
        "    $task.Settings.DisallowStartIfOnBatteries = $false\n"
        "    $task.Settings.StopIfGoingOnBatteries = $false\n"
        f"    $task.Settings.ExecutionTimeLimit = '{_TASK_TIME_LIMIT}'\n"
        f"    $trigger = $task.Triggers.Create({_TASK_TRIGGER_TIME})\n"
        f"    $at = (Get-Date).AddSeconds({int(after_s)})\n"
        "    $trigger.StartBoundary = $at.ToString('yyyy-MM-ddTHH:mm:ss')\n"
        "    $encodedDir = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($dir))\n"
        f"    $cleanup = {quote(_TASK_CLEANUP)} -f $encodedDir, $leaf\n"
        f"    $action = $task.Actions.Create({_TASK_ACTION_EXEC})\n"
        "    $action.Path = 'powershell.exe'\n"
        "    $action.Arguments = '-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass "
        "-EncodedCommand ' +\n"
        "        [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($cleanup))\n"
        "    $me = [Security.Principal.WindowsIdentity]::GetCurrent()\n"
        "    if ((New-Object Security.Principal.WindowsPrincipal($me)).IsInRole("
        "[Security.Principal.WindowsBuiltInRole]::Administrator)) {\n"
        f"        $runAs = 'S-1-5-18'; $logon = {_TASK_LOGON_SERVICE_ACCOUNT}\n"
        "    } else {\n"
        f"        $runAs = $me.Name; $logon = {_TASK_LOGON_S4U}\n"
        "    }\n"
        "    $task.Principal.UserId = $runAs\n"
        "    $task.Principal.LogonType = $logon\n"
        f"    [void]$folder.RegisterTaskDefinition($leaf, $task, {_TASK_CREATE_OR_UPDATE}, "
        "$runAs, $null, $logon)\n"
        "} catch {\n"
        "    [Console]::Error.WriteLine('arcfleet: timed cleanup not scheduled: ' + "
        "$_.Exception.Message)\n"
        "}\n"
    )


def sweep_lines(after_s: int) -> str:
    """Remove this user's ``arcfleet-<32 hex>`` directories older than ``after_s`` seconds,
    and their tasks."""
    return (
        f"$cutoff = (Get-Date).ToUniversalTime().AddSeconds(-{int(after_s)})\n"
        "foreach ($old in @(Get-ChildItem -LiteralPath $env:TEMP -Directory -Force "
        "-ErrorAction SilentlyContinue)) {\n"
        f"    if ($old.Name -cmatch '^{PRIVATE_DIR_NAME.pattern}$' "
        "-and $old.CreationTimeUtc -lt $cutoff) {\n"
        "        Remove-Item -LiteralPath $old.FullName -Recurse -Force "
        "-ErrorAction SilentlyContinue\n"
        "        try { $sweeper = New-Object -ComObject Schedule.Service; $sweeper.Connect(); "
        "$sweeper.GetFolder('\\').DeleteTask($old.Name, 0) } catch { }\n"
        "    }\n"
        "}\n"
    )


def cancel_lines() -> str:
    """Unregister the timed cleanup of ``$dir`` (arcfleet removed the directory itself)."""
    return (
        "try { $scheduler = New-Object -ComObject Schedule.Service; $scheduler.Connect(); "
        "$scheduler.GetFolder('\\').DeleteTask((Split-Path -Leaf $dir), 0) } catch { }\n"
    )

"""One PowerShell script per Windows host: the whole common path in one WinRS command.

The Windows twin of :mod:`fleet.azcm.script_linux`. The WinRM transport runs it through a short
bootstrap (:func:`fleet.transport.powershell.script_bootstrap`) that reads the script from the
command's stdin; the ``--config`` content follows on the same stdin, base64, and is read by this
script with ``[Console]::In.ReadToEnd()`` (no cmdlet, so Module Logging records no binding of it),
never from argv. The content is opaque here (a secret, a certificate path or an access token, and
every connect option: :mod:`fleet.azcm.agent_config`).

In one command the script makes its private directory (``$env:TEMP\\arcfleet-<32 hex>``, ACL
Administrators + SYSTEM), reads the host clock, checks elevation, finds the agent, runs
``show -j`` (state and version in one call), decides whether the host is already connected, and
only then sweeps old leftovers, registers the timed cleanup (:mod:`fleet.azcm.windows_private`),
writes the config file (created empty, ACL set, then filled), runs ``connect --config``, removes
the file, and verifies with ``show -j`` (or sends the tail of azcmagent.log on failure). A
``finally`` removes the directory and unregisters the task on every exit path PowerShell controls.

Each step is reported in the framed format of :mod:`fleet.engine.frames`: the header in ASCII, the
step's output as counted UTF-8 bytes written to the raw stdout stream (no console encoding in
between), at most ``cap`` bytes of each stream.

The first line is a comment carrying the parameters as JSON: PowerShell ignores it, the lab
(:mod:`fleet.lab.winrm_script`) reads it to simulate the script. Every inventory value in the
script is a PowerShell single-quoted literal (:func:`fleet.transport.powershell.quote`).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from fleet.azcm.agent_config import PROXY_GET_STEP, PROXY_URL, agent_settings, setting_step
from fleet.azcm.commands import ScriptParams
from fleet.azcm.windows_private import (
    cancel_lines,
    private_dir_name,
    sweep_lines,
    timed_cleanup_lines,
)
from fleet.inventory.model import ResolvedHost
from fleet.transport.powershell import acl_lines, path_expression, quote

SCRIPT_MARK = "# arcfleet host script 1 "
CONFIG_NAME = "config.json"


def build(
    params: ScriptParams,
    host: ResolvedHost,
    *,
    agent_relative: str,
    log_path: str,
) -> str:
    """The script. Every connect option is in the config file (on stdin); the agent settings
    (the proxy) are ``config set`` steps before connect, each a literal."""
    settings = agent_settings(host)
    header = SCRIPT_MARK + json.dumps(
        {**asdict(params), "settings": settings, "log_path": log_path},
        separators=(",", ":"),
    )
    setting_steps = "".join(
        f"    $set = Invoke-AgentStep {quote(setting_step(key))} "
        f"@('config', 'set', {quote(key)}, {quote(value)})\n"
        "    if ($set[0] -ne 0) { return }\n"
        for key, value in settings
    )
    after_s = params.cleanup_after_s
    # Sweep old leftovers and schedule this directory's removal before the file exists.
    safety_net = _indent(sweep_lines(after_s) + timed_cleanup_lines(after_s), 8)
    file_acl = _indent(acl_lines("configPath", directory=False), 8)
    return f"""{header}
$ErrorActionPreference = 'Stop'
$B = {quote(params.boundary)}
$Mode = {quote(params.mode)}
$Cap = {int(params.cap)}
$Tail = {int(params.log_tail_bytes)}
$Utf8 = New-Object Text.UTF8Encoding $false
$Stdout = [Console]::OpenStandardOutput()
# What the finally needs, in one object the functions change in place (a plain variable set
# in a function would be the function's own).
$State = @{{ Dir = $null }}

function Send-Text([string]$text) {{
    $bytes = $Utf8.GetBytes($text)
    $Stdout.Write($bytes, 0, $bytes.Length)
    $Stdout.Flush()
}}

function Send-Step([string]$name, [int]$code, [long]$ms, [string]$out, [string]$err) {{
    $o = $Utf8.GetBytes($out)
    $e = $Utf8.GetBytes($err)
    $os = [Math]::Min($o.Length, $Cap)
    $es = [Math]::Min($e.Length, $Cap)
    $head = $Utf8.GetBytes("$B step $name $code $ms $($o.Length) $os $($e.Length) $es`n")
    $Stdout.Write($head, 0, $head.Length)
    $Stdout.Write($o, 0, $os)
    $Stdout.Write($e, 0, $es)
    $Stdout.Flush()
}}

# A native program: its exit status, stdout and stderr (Windows PowerShell 5.1 turns stderr
# lines into error records under redirection; they are written back as text).
function Invoke-Native([string]$exe, [string[]]$argv) {{
    $ErrorActionPreference = 'Continue'
    $out = New-Object Text.StringBuilder
    $err = New-Object Text.StringBuilder
    $global:LASTEXITCODE = 127
    try {{
        & $exe @argv 2>&1 | ForEach-Object {{
            if ($_ -is [Management.Automation.ErrorRecord]) {{
                [void]$err.AppendLine($_.Exception.Message)
            }} else {{
                [void]$out.AppendLine([string]$_)
            }}
        }}
    }} catch {{
        [void]$err.AppendLine($_.Exception.Message)
    }}
    return @($LASTEXITCODE, $out.ToString(), $err.ToString())
}}

function Invoke-AgentStep([string]$name, [string[]]$argv) {{
    # $A: the agent found by Invoke-Host (its caller).
    $watch = [Diagnostics.Stopwatch]::StartNew()
    $r = Invoke-Native $A $argv
    Send-Step $name $r[0] $watch.ElapsedMilliseconds $r[1] $r[2]
    return $r
}}

function Invoke-Host {{
    $watch = [Diagnostics.Stopwatch]::StartNew()
    try {{
        $name = {quote(private_dir_name(params.dir_token))}
        $dir = Join-Path $env:TEMP $name
        $State.Dir = $dir
        New-Item -ItemType Directory -Path $dir | Out-Null
{_indent(acl_lines('dir', directory=True), 8)}    }} catch {{
        Send-Step 'workdir' 1 $watch.ElapsedMilliseconds '' $_.Exception.Message
        return
    }}
    Send-Step 'workdir' 0 $watch.ElapsedMilliseconds $dir ''

    $watch = [Diagnostics.Stopwatch]::StartNew()
    $now = (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')
    Send-Step 'clock' 0 $watch.ElapsedMilliseconds "$now`n" ''

    $watch = [Diagnostics.Stopwatch]::StartNew()
    $me = [Security.Principal.WindowsIdentity]::GetCurrent()
    $role = [Security.Principal.WindowsBuiltInRole]::Administrator
    if (-not (New-Object Security.Principal.WindowsPrincipal($me)).IsInRole($role)) {{
        $why = "the WinRM session is not in the Administrators role`n"
        Send-Step 'elevation' 1 $watch.ElapsedMilliseconds '' $why
        return
    }}
    Send-Step 'elevation' 0 $watch.ElapsedMilliseconds '' ''

    $watch = [Diagnostics.Stopwatch]::StartNew()
    $base = $env:ProgramW6432
    if (-not $base) {{ $base = $env:ProgramFiles }}
    $agent = Join-Path $base {quote(agent_relative)}
    if (-not (Test-Path -LiteralPath $agent -PathType Leaf)) {{
        $why = "azcmagent.exe not found at $agent`n"
        Send-Step 'locate' 127 $watch.ElapsedMilliseconds '' $why
        return
    }}
    $A = $agent
    Send-Step 'locate' 0 $watch.ElapsedMilliseconds "$agent`n" ''

    $show = Invoke-AgentStep 'show' @('show', '-j')
    if ($Mode -eq 'preflight') {{
        $null = Invoke-AgentStep {quote(PROXY_GET_STEP)} @('config', 'get', {quote(PROXY_URL)})
        return
    }}
    if ($Mode -ne 'force') {{
        if ($show[0] -ne 0) {{ return }}
        $state = $show[1] -replace '\\s', ''
        if ($state -notmatch '"status":') {{ return }}
        if ($state -match '"status":"connected"' -or $state -match '"resourceId":"/') {{ return }}
    }}
{setting_steps}
    $watch = [Diagnostics.Stopwatch]::StartNew()
    $configPath = Join-Path $dir {quote(CONFIG_NAME)}
    $code = 0
    $err = ''
    try {{
{safety_net}        [IO.File]::WriteAllBytes($configPath, [byte[]]@())
{file_acl}        $content = [Convert]::FromBase64String([Console]::In.ReadToEnd().Trim())
        [IO.File]::WriteAllBytes($configPath, $content)
        $content = $null
    }} catch {{
        $code = 1
        $err = $_.Exception.Message
    }}
    Send-Step 'config' $code $watch.ElapsedMilliseconds '' $err
    if ($code -ne 0) {{ return }}

    $connect = Invoke-AgentStep 'connect' @('connect', '--config', $configPath, '--verbose')

    $watch = [Diagnostics.Stopwatch]::StartNew()
    $code = 0
    $err = ''
    try {{
        Remove-Item -LiteralPath $configPath -Force
    }} catch {{
        $code = 1
        $err = $_.Exception.Message
    }}
    Send-Step 'cleanup' $code $watch.ElapsedMilliseconds '' $err

    if ($connect[0] -eq 0) {{
        $null = Invoke-AgentStep 'verify' @('show', '-j')
        return
    }}
    $watch = [Diagnostics.Stopwatch]::StartNew()
    $text = ''
    $code = 0
    $err = ''
    try {{
        $log = {path_expression(log_path)}
        if (Test-Path -LiteralPath $log -PathType Leaf) {{
            $stream = [IO.File]::Open($log, 'Open', 'Read', 'ReadWrite')
            try {{
                $count = [int][Math]::Min($stream.Length, $Tail)
                [void]$stream.Seek(-$count, 'End')
                $buffer = New-Object byte[] $count
                $read = 0
                while ($read -lt $count) {{
                    $n = $stream.Read($buffer, $read, $count - $read)
                    if ($n -le 0) {{ break }}
                    $read += $n
                }}
                $text = $Utf8.GetString($buffer, 0, $read)
            }} finally {{ $stream.Dispose() }}
        }}
    }} catch {{
        $code = 1
        $err = $_.Exception.Message
    }}
    Send-Step 'log' $code $watch.ElapsedMilliseconds $text $err
}}

try {{
    Send-Text "$B arcfleet-report 1`n"
    Invoke-Host
    Send-Text "$B end`n"
}} finally {{
    $dir = $State.Dir
    if ($dir) {{
        Remove-Item -LiteralPath $dir -Recurse -Force -ErrorAction SilentlyContinue
{_indent(cancel_lines(), 8)}    }}
}}
exit 0
"""


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))

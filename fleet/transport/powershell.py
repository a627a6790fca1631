"""PowerShell text arcfleet sends over WinRM: quoting, encoding, and the transport's own scripts.

Every script is sent as ``powershell.exe -EncodedCommand <base64 of UTF-16LE>`` so no layer
(WinRS, cmd.exe, powershell.exe's own argument parsing) can re-split or re-quote it. Values reach a
script only as single-quoted literals (:func:`quote`), in which PowerShell expands nothing.

File content never travels in a script or a command line: :func:`put_file_script` reads it, base64,
from the command's stdin (WinRS ``Send``) with ``[Console]::In.ReadToEnd()`` (no cmdlet, so no
parameter binding for Module Logging to record), so a secret in the file is not in any process's
command line, nor in PowerShell's script-block or module log (see docs/security.md).

The lab's WinRM server (:mod:`fleet.lab.winrm_powershell`) recognises exactly these shapes.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

POWERSHELL = "powershell.exe"
POWERSHELL_OPTIONS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")

# First line of every script: stop on the first cmdlet error (exit 1), no progress records in the
# output, and UTF-8 (no BOM) for native programs' output. A WinRS process may have no console, and
# then setting the console encoding throws: that is ignored (the shell's code page is 65001 anyway).
PRELUDE = (
    "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'; "
    "try { [Console]::OutputEncoding = New-Object Text.UTF8Encoding $false } catch { }\n"
)

# Administrators and SYSTEM by SID, so the ACL is right on non-English Windows too.
ADMINISTRATORS_SID = "S-1-5-32-544"
SYSTEM_SID = "S-1-5-18"

_ENV_PREFIX = re.compile(r"^%(?P<var>[A-Za-z_][A-Za-z0-9_()]*)%(?:\\(?P<rest>.*))?$", re.DOTALL)


def quote(value: str) -> str:
    """A PowerShell single-quoted literal: nothing inside is expanded; ``'`` is doubled.

    PowerShell also treats the typographic quotes U+2018..U+201B as single quotes, so they are
    doubled too.
    """
    return "'" + re.sub("(['\u2018\u2019\u201a\u201b])", r"\1\1", value) + "'"


def encode(script: str) -> str:
    """The ``-EncodedCommand`` argument for a script (prelude included)."""
    return base64.b64encode((PRELUDE + script).encode("utf-16-le")).decode("ascii")


def command_line(script: str) -> tuple[str, list[str]]:
    """Program and arguments for WinRS ``Command``."""
    return POWERSHELL, [*POWERSHELL_OPTIONS, "-EncodedCommand", encode(script)]


def path_expression(path: str) -> str:
    """A PowerShell expression for a Windows path; ``%VAR%\\rest`` expands the environment
    variable on the host (``%ProgramData%\\...``), anything else is a literal."""
    match = _ENV_PREFIX.match(path)
    if match is None:
        return quote(path)
    var, rest = match.group("var"), match.group("rest")
    env = "${env:" + var + "}" if not re.fullmatch(r"[A-Za-z0-9_]+", var) else f"$env:{var}"
    return f"(Join-Path {env} {quote(rest)})" if rest else env


def acl_lines(variable: str, *, directory: bool) -> str:
    """Replace the ACL of ``$variable`` with full control for Administrators and SYSTEM only,
    inheritance from the parent cut."""
    if directory:
        security = "DirectorySecurity"
        rule = "$who, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow'"
    else:
        security = "FileSecurity"
        rule = "$who, 'FullControl', 'Allow'"
    return (
        f"$acl = New-Object Security.AccessControl.{security}\n"
        "$acl.SetAccessRuleProtection($true, $false)\n"
        f"foreach ($sid in '{ADMINISTRATORS_SID}', '{SYSTEM_SID}') {{\n"
        "    $who = New-Object Security.Principal.SecurityIdentifier($sid)\n"
        "    $acl.AddAccessRule((New-Object "
        f"Security.AccessControl.FileSystemAccessRule({rule})))\n"
        "}\n"
        f"Set-Acl -LiteralPath ${variable} -AclObject $acl\n"
    )


def put_file_script(path: str, *, private: bool) -> str:
    """Write the bytes that arrive base64 on stdin to ``path``. When private, the file is created
    empty, its ACL set, and only then filled, so the content is never readable by others."""
    acl = acl_lines("path", directory=False) if private else ""
    return (
        f"$path = {path_expression(path)}\n"
        # [Console]::In, not `$input | Out-String`: a cmdlet's parameter binding is what
        # Module Logging (event 4103) records, and this text holds the config's secret.
        "$content = [Convert]::FromBase64String([Console]::In.ReadToEnd())\n"
        "[IO.File]::WriteAllBytes($path, [byte[]]@())\n"
        f"{acl}"
        "[IO.File]::WriteAllBytes($path, $content)\n"
        "exit 0\n"
    )


def read_tail_script(path: str, max_bytes: int) -> str:
    """Print, base64, the last ``max_bytes`` of ``path``; print nothing when it does not exist.
    Opened with ReadWrite sharing so a log the agent is writing can be read."""
    return (
        f"$path = {path_expression(path)}\n"
        "if (-not (Test-Path -LiteralPath $path -PathType Leaf)) { exit 0 }\n"
        "$stream = [IO.File]::Open($path, 'Open', 'Read', 'ReadWrite')\n"
        "try {\n"
        f"    $count = [int][Math]::Min($stream.Length, {int(max_bytes)})\n"
        "    [void]$stream.Seek(-$count, 'End')\n"
        "    $buffer = New-Object byte[] $count\n"
        "    $read = 0\n"
        "    while ($read -lt $count) {\n"
        "        $n = $stream.Read($buffer, $read, $count - $read)\n"
        "        if ($n -le 0) { break }\n"
        "        $read += $n\n"
        "    }\n"
        "    [Console]::Out.Write([Convert]::ToBase64String($buffer, 0, $read))\n"
        "} finally { $stream.Dispose() }\n"
        "exit 0\n"
    )


SCRIPT_BOOTSTRAP_LABEL = "powershell.exe -EncodedCommand <arcfleet script bootstrap>"


def script_bootstrap() -> str:
    """The one WinRS command of a host script: its first stdin line is the script (base64 of
    UTF-8), run as a script block; the rest of stdin is the script's own (read by the script
    with ``[Console]::In``). A script of many KB would not fit a command line; the script
    holds no secret, but the data after it may."""
    return (
        "$text = [Text.Encoding]::UTF8.GetString("
        "[Convert]::FromBase64String([Console]::In.ReadLine()))\n"
        "& ([ScriptBlock]::Create($text))\n"
        "exit $LASTEXITCODE\n"
    )


def script_stdin(script: str, data: bytes) -> bytes:
    """The stdin of :func:`script_bootstrap`: the script's line, then ``data`` base64 (so any
    byte survives the console's input encoding)."""
    return (
        base64.b64encode(script.encode("utf-8")) + b"\n" + base64.b64encode(data) + b"\n"
    )


_CLIXML_HEADER = "#< CLIXML"
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def clixml_to_text(stderr: str) -> str:
    """PowerShell writes its error records to stderr as CLIXML; keep the error text only."""
    if not stderr.startswith(_CLIXML_HEADER):
        return stderr
    body = stderr[len(_CLIXML_HEADER) :].lstrip("\r\n")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return stderr
    lines: list[str] = []
    for el in root.iter():
        if el.tag.endswith("}S") and el.get("S") == "Error" and el.text:
            lines.append(_CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), el.text))
    return "".join(lines)

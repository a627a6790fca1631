"""What a lab Windows host does with a WinRS command: just enough PowerShell for arcfleet.

arcfleet sends ``powershell.exe ... -EncodedCommand <base64 UTF-16LE>``. This module decodes the
script, records it on the host, and recognises the small fixed set of script shapes that
:mod:`fleet.azcm.commands_windows` and :mod:`fleet.transport.powershell` produce (regexes over the
text, values parsed back from PowerShell single-quoted literals, so a quoting bug on the client
shows up as a wrong value here). ``azcmagent.exe`` runs the lab's agent simulator. Anything else
fails like PowerShell would: exit 1 with an error record (CLIXML) on stderr.

Windows paths map into the host's lab directory with :meth:`LabHost.local_path`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import shutil
import uuid
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from fleet.lab import install as lab_install
from fleet.lab import winrm_script
from fleet.lab.agent import run_agent
from fleet.lab.host import LabHost
from fleet.lab.scenario import ScenarioKind
from fleet.lab.winargv import windows_argv
from fleet.lab.winrm_tasks import TaskScheduler, is_cancel, parse_sweep, parse_timer

ENVIRONMENT = {
    "programdata": r"C:\ProgramData",
    "programfiles": r"C:\Program Files",
    "programw6432": r"C:\Program Files",
    "temp": r"C:\Windows\Temp",
    "tmp": r"C:\Windows\Temp",
    "systemroot": r"C:\Windows",
    "windir": r"C:\Windows",
}
_SID_NAMES = {"S-1-5-32-544": r"BUILTIN\Administrators", "S-1-5-18": r"NT AUTHORITY\SYSTEM"}
_POWERSHELL_NAMES = {"powershell", "powershell.exe", "pwsh", "pwsh.exe"}
_PRELUDE = re.compile(r"^\$ErrorActionPreference = 'Stop';[^\n]*\n")

_Q = "'\u2018\u2019\u201a\u201b"
_LITERAL = f"[{_Q}](?:[^{_Q}]|[{_Q}]{{2}})*[{_Q}]"
_PATH_EXPR = rf"{_LITERAL}|\(Join-Path \$env:\w+ {_LITERAL}\)|\$env:\w+"

_ELEVATION = re.compile(
    r"\[Security\.Principal\.WindowsIdentity\]::GetCurrent\(\)\n"
    r"if \(\$principal\.IsInRole\(\[Security\.Principal\.WindowsBuiltInRole\]::Administrator\)\)"
)
_LOCATE = re.compile(
    r"^\$base = \$env:ProgramW6432\nif \(-not \$base\) \{ \$base = \$env:ProgramFiles \}\n"
    rf"\$agent = Join-Path \$base (?P<rel>{_LITERAL})\n"
)
_INVOKE = re.compile(
    r"^\$ErrorActionPreference = 'Continue'\n\$global:LASTEXITCODE = 127\n"
    rf"& (?P<exe>{_LITERAL}) (?P<args>[^\n]*?)"
    r" 2>&1 \| ForEach-Object \{ if \(\$_ -is \[Management\.Automation\.ErrorRecord\]\) "
    r"\{ \[Console\]::Error\.WriteLine\(\$_\.Exception\.Message\) \} "
    r"else \{ \[Console\]::Out\.WriteLine\(\$_\) \} \}\n"
    r"exit \$LASTEXITCODE\n?$"
)
_ARG_TOKEN = re.compile(rf"{_LITERAL}|--?[A-Za-z][A-Za-z0-9-]*|[A-Za-z][A-Za-z0-9.-]*")
_MKDIR = re.compile(
    r"^(?P<sweep>\$cutoff = .*?\n\}\n)?"
    rf"\$dir = Join-Path \$env:TEMP \((?P<prefix>{_LITERAL}) \+ "
    r"\[guid\]::NewGuid\(\)\.ToString\('N'\)\)\n"
    r"New-Item -ItemType Directory -Path \$dir \| Out-Null\n"
    r"(?P<acl>(?:\$acl = .*?Set-Acl -LiteralPath \$dir -AclObject \$acl\n)?)"
    r"(?P<timer>(?:try \{\n    \$leaf = .*)?)Write-Output \$dir\nexit 0\n$",
    re.DOTALL,
)
_PUT = re.compile(
    rf"^\$path = (?P<path>{_PATH_EXPR})\n"
    r"\$content = \[Convert\]::FromBase64String\(\[Console\]::In\.ReadToEnd\(\)\)\n"
    r"\[IO\.File\]::WriteAllBytes\(\$path, \[byte\[\]\]@\(\)\)\n"
    r"(?P<acl>.*)\[IO\.File\]::WriteAllBytes\(\$path, \$content\)\nexit 0\n$",
    re.DOTALL,
)
_TAIL = re.compile(
    rf"^\$path = (?P<path>{_PATH_EXPR})\n"
    r"if \(-not \(Test-Path -LiteralPath \$path -PathType Leaf\)\) \{ exit 0 \}\n"
    r"\$stream = \[IO\.File\]::Open\(\$path, 'Open', 'Read', 'ReadWrite'\)\n"
    r"try \{\n    \$count = \[int\]\[Math\]::Min\(\$stream\.Length, (?P<max>\d+)\)\n"
)
_RMDIR = re.compile(
    rf"^\$dir = (?P<dir>{_PATH_EXPR})\n"
    r"if \(Test-Path -LiteralPath \$dir\) \{ Remove-Item -LiteralPath \$dir -Recurse -Force \}\n"
    r"(?P<cancel>(?:try \{ .*\n)?)exit 0\n$"
)
_BOOTSTRAP = re.compile(
    r"^\$text = \[Text\.Encoding\]::UTF8\.GetString\("
    r"\[Convert\]::FromBase64String\(\[Console\]::In\.ReadLine\(\)\)\)\n"
    r"& \(\[ScriptBlock\]::Create\(\$text\)\)\nexit \$LASTEXITCODE\n$"
)
_RESTART = re.compile(
    rf"^Restart-Service -Name (?P<name>{_LITERAL}) -Force\n"
    rf"Write-Output \(Get-Service -Name (?P<name2>{_LITERAL})\)\.Status\.ToString\(\)\nexit 0\n$"
)
_ACL = re.compile(
    r"^\$acl = New-Object Security\.AccessControl\.(?:File|Directory)Security\n"
    r"\$acl\.SetAccessRuleProtection\(\$true, \$false\)\n"
    r"foreach \(\$sid in (?P<sids>'S-[0-9-]+'(?:, 'S-[0-9-]+')*)\) \{\n"
    r".*\}\nSet-Acl -LiteralPath \$(?P<var>\w+) -AclObject \$acl\n$",
    re.DOTALL,
)


# The install stage's own scripts (fleet.azcm.install_windows).
_MSIEXEC = re.compile(
    rf"^\$p = Start-Process -FilePath 'msiexec\.exe' -ArgumentList (?P<args>{_LITERAL}) "
    r"-Wait -PassThru -NoNewWindow\nexit \$p\.ExitCode\n$"
)
_MSI_ARGS = re.compile(r'^/i "(?P<msi>[^"]+)" /qn /l\*v "(?P<log>[^"]+)"$')
_MSI_LOG_ERRORS = re.compile(
    rf"^if \(Test-Path -LiteralPath (?P<log>{_LITERAL})\) \{{\n  Get-Content -LiteralPath "
    rf"(?P<log2>{_LITERAL}) \| Select-String -Pattern 'error\|return value 3' \| "
    r"Select-Object -Last (?P<n>\d+) \| ForEach-Object \{ \$_\.Line \}\n\}\n$"
)
_INSTALL_SCRIPT = re.compile(
    rf"\n& (?P<script>{_LITERAL}) -OutFile (?P<out>{_LITERAL})[^\n]*\nexit 0\n$"
)
_READ_OUT = re.compile(
    rf"^if \(Test-Path -LiteralPath (?P<path>{_LITERAL})\) \{{ Get-Content -Raw -LiteralPath "
    rf"(?P<path2>{_LITERAL}) \}}\n$"
)
_UNINSTALL = re.compile(r"^\$key = Get-ChildItem 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\"
                        r"CurrentVersion\\Uninstall'")


class CommandOutput:
    """One running command's streams as the WinRS Receive side sees them."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stdin = bytearray()
        self.stdin_closed = asyncio.Event()
        self.changed = asyncio.Event()
        self.done = False
        self.status: int | None = None
        #: the host script started the agent's connect (the connection_drop scenario cuts here)
        self.connect_started = False
        self._done_reported = False

    def write_bytes(self, stdout: bytes) -> None:
        self.stdout += stdout
        self.changed.set()

    def write(self, stdout: str = "", stderr: str = "") -> None:
        self.stdout += stdout.encode("utf-8")
        self.stderr += stderr.encode("utf-8")
        self.changed.set()

    def feed_stdin(self, data: bytes, *, end: bool) -> None:
        self.stdin += data
        if end:
            self.stdin_closed.set()

    def finish(self, status: int | None) -> None:
        if not self.done:
            self.done = True
            self.status = status
            self.changed.set()

    def has_news(self) -> bool:
        return bool(self.stdout or self.stderr) or (self.done and not self._done_reported)

    def take(self) -> tuple[bytes, bytes, bool, int | None]:
        stdout, stderr = bytes(self.stdout), bytes(self.stderr)
        self.stdout.clear()
        self.stderr.clear()
        self.changed.clear()
        if self.done:
            self._done_reported = True
        return stdout, stderr, self.done, self.status


@dataclass(frozen=True)
class FileWrite:
    """A file written through WinRM: the Windows path, its size and the ACL set on it (never the
    content)."""

    path: str
    size: int
    acl: tuple[str, ...] | None  # principals with access; None: ACL left inherited


@dataclass
class WindowsRecord:
    """What the WinRM side did on one host that :class:`LabHost` has no field for."""

    file_writes: list[FileWrite] = field(default_factory=list)
    acls: dict[str, tuple[str, ...]] = field(default_factory=dict)  # path -> principals
    removed: list[str] = field(default_factory=list)
    agent_argv: list[list[str]] = field(default_factory=list)
    #: the host's scheduled tasks (the private directory's timed cleanup)
    tasks: TaskScheduler | None = None


async def interpret(
    host: LabHost, command_line: str, output: CommandOutput, *, record: WindowsRecord
) -> int:
    """Run one WinRS command line on ``host``; returns the exit status."""
    host.commands.append(command_line)
    words = command_line.split()
    program = words[0].lower() if words else ""
    if program not in _POWERSHELL_NAMES:
        output.write(stderr=f"'{words[0] if words else ''}' is not recognized as an internal or "
                     "external command,\r\noperable program or batch file.\r\n")
        return 1
    script = _decoded_script(words[1:])
    if script is None:
        output.write(stderr=_error_record("arcfleet lab: only -EncodedCommand is supported"))
        return 1
    host.commands.append(script)
    body = _PRELUDE.sub("", script, count=1).replace("\r\n", "\n")
    return await _run_script(host, body, output, record)


def _decoded_script(args: list[str]) -> str | None:
    for index, arg in enumerate(args[:-1]):
        if arg.lower() in ("-encodedcommand", "-enc", "-e", "-ec"):
            try:
                return base64.b64decode(args[index + 1], validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


async def _run_script(
    host: LabHost, body: str, output: CommandOutput, record: WindowsRecord
) -> int:
    elevated = host.scenario.kind is not ScenarioKind.NOT_ROOT
    if _ELEVATION.search(body):
        if elevated:
            return 0
        output.write(stderr="the WinRM session is not in the Administrators role\r\n")
        return 1
    if match := _LOCATE.match(body):
        path = ENVIRONMENT["programw6432"] + "\\" + unquote(match.group("rel"))
        if host.agent_installed and path.lower() == host.agent_path.lower():
            output.write(stdout=path + "\r\n")
            return 0
        output.write(stderr=f"azcmagent.exe not found at {path}\r\n")
        return 127
    if match := _INVOKE.match(body):
        return await _invoke(host, match, output, record, elevated=elevated)
    installing = _install_script(host, body, output)
    if installing is not None:
        return installing
    if _BOOTSTRAP.match(body):
        return await _host_script(host, output, record, elevated=elevated)
    if match := _MKDIR.match(body):
        return _make_dir(host, match, output, record, elevated=elevated)
    if match := _PUT.match(body):
        return await _put_file(host, match, output, record)
    if match := _TAIL.match(body):
        return _read_tail(host, match, output)
    if match := _RMDIR.match(body):
        return _remove_dir(host, match, output, record)
    if (match := _RESTART.match(body)) and match.group("name") == match.group("name2"):
        name = unquote(match.group("name"))
        if host.restart_service(name):
            output.write(stdout="Running\r\n")
            return 0
        output.write(stderr=_error_record(
            f"Restart-Service : Cannot find any service with service name '{name}'."))
        return 1
    first = body.strip().splitlines()[0] if body.strip() else ""
    output.write(stderr=_error_record(
        f"arcfleet lab: this PowerShell is not understood by the lab host: {first[:120]}"))
    return 1


async def _invoke(
    host: LabHost, match: re.Match[str], output: CommandOutput, record: WindowsRecord,
    *, elevated: bool,
) -> int:
    exe = unquote(match.group("exe"))
    argv: list[str] = []
    rest = match.group("args")
    position = 0
    while position < len(rest):
        token = _ARG_TOKEN.match(rest, position)
        if token is None:
            output.write(stderr=_error_record(
                f"arcfleet lab: unexpected text in the agent's arguments: {rest[position:][:60]}"))
            return 1
        text = token.group(0)
        argv.append(unquote(text) if text[0] in _Q else text)
        position = token.end()
        if position < len(rest):
            if rest[position] != " ":
                output.write(stderr=_error_record("arcfleet lab: arguments not space-separated"))
                return 1
            position += 1
    if not host.agent_installed or exe.lower() != host.agent_path.lower():
        output.write(stderr=_error_record(
            f"The term '{exe}' is not recognized as the name of a cmdlet, function, script file,"
            " or operable program."))
        return 127  # $LASTEXITCODE keeps the 127 the script set before the call
    # The agent sees its arguments as azcmagent.exe would: PowerShell 5.1 joins them into one
    # command line, and the Go program splits it by the Windows rules (fleet/lab/winargv.py).
    argv = windows_argv(exe, argv)
    record.agent_argv.append(argv)
    result = await run_agent(argv, host, elevated=elevated)
    output.write(stdout=_crlf(result.stdout), stderr=_crlf(result.stderr))
    return result.exit_status


def _install_script(host: LabHost, body: str, output: CommandOutput) -> int | None:
    """The install stage's scripts: msiexec, its log's errors, the install script, uninstall."""
    if match := _MSIEXEC.match(body):
        args = _MSI_ARGS.match(unquote(match.group("args")))
        if args is None:
            output.write(stderr="msiexec: invalid command line\r\n")
            return 1639
        return lab_install.msiexec(host, args.group("msi"), args.group("log"))
    if match := _MSI_LOG_ERRORS.match(body):
        output.write(stdout=lab_install.msi_log_errors(
            host, unquote(match.group("log")), int(match.group("n"))))
        return 0
    if match := _INSTALL_SCRIPT.search(body):
        return lab_install.windows_script(host, unquote(match.group("out")))
    if match := _READ_OUT.match(body):
        local = host.local_path(unquote(match.group("path")))
        if local.is_file():
            output.write(stdout=local.read_text(encoding="utf-8") + "\r\n")
        return 0
    if _UNINSTALL.match(body):
        status, text = lab_install.windows_uninstall(host)
        output.write(stderr=text)
        return status
    return None


async def _host_script(
    host: LabHost, output: CommandOutput, record: WindowsRecord, *, elevated: bool
) -> int:
    """The bootstrap: the script is the first stdin line (base64 of UTF-8), the rest is its
    data (base64)."""
    await output.stdin_closed.wait()
    first, _, rest = bytes(output.stdin).partition(b"\n")
    try:
        script = base64.b64decode(first.strip(), validate=True).decode("utf-8")
        data = base64.b64decode(rest.strip(), validate=True)
    except (binascii.Error, UnicodeDecodeError):
        output.write(stderr=_error_record("Exception calling \"FromBase64String\": invalid"))
        return 1
    host.commands.append(script)
    if not winrm_script.is_host_script(script):
        first_line = script.strip().splitlines()[0] if script.strip() else ""
        output.write(stderr=_error_record(
            f"arcfleet lab: this PowerShell is not understood by the lab host: {first_line[:120]}"))
        return 1
    return await winrm_script.run_host_script(
        host, script, data, output, record, elevated=elevated)


def _make_dir(
    host: LabHost, match: re.Match[str], output: CommandOutput, record: WindowsRecord,
    *, elevated: bool,
) -> int:
    tasks = record.tasks
    sweep_after = parse_sweep(match.group("sweep")) if match.group("sweep") else None
    timer_after = parse_timer(match.group("timer")) if match.group("timer") else None
    if (match.group("sweep") and sweep_after is None) or (
        match.group("timer") and timer_after is None
    ):
        output.write(stderr=_error_record("arcfleet lab: cleanup fragment not understood"))
        return 1
    if sweep_after is not None and tasks is not None:
        tasks.sweep(ENVIRONMENT["temp"], sweep_after)
    name = unquote(match.group("prefix")) + hex_id()
    path = ENVIRONMENT["temp"] + "\\" + name
    host.local_path(path).mkdir(parents=True, exist_ok=False)
    acl = _parse_acl(match.group("acl"), "dir")
    if acl is not None:
        record.acls[path] = acl
    if timer_after is not None and tasks is not None:
        tasks.register(path, timer_after, elevated=elevated)
    output.write(stdout=path + "\r\n")
    return 0


async def _put_file(
    host: LabHost, match: re.Match[str], output: CommandOutput, record: WindowsRecord
) -> int:
    path = _path_value(match.group("path"))
    await output.stdin_closed.wait()
    try:
        content = base64.b64decode(bytes(output.stdin), validate=False)
    except binascii.Error:
        output.write(stderr=_error_record("Exception calling \"FromBase64String\": invalid"))
        return 1
    local = host.local_path(path)
    if not local.parent.is_dir():
        output.write(stderr=_error_record(
            f"Exception calling \"WriteAllBytes\": Could not find a part of the path '{path}'."))
        return 1
    local.write_bytes(content)
    acl = _parse_acl(match.group("acl"), "path") if match.group("acl") else None
    if acl is not None:
        record.acls[path] = acl
    record.file_writes.append(FileWrite(path, len(content), acl))
    return 0


def _read_tail(host: LabHost, match: re.Match[str], output: CommandOutput) -> int:
    local = host.local_path(_path_value(match.group("path")))
    if not local.is_file():
        return 0
    max_bytes = int(match.group("max"))
    with local.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - max_bytes))
        data = fh.read()
    output.write(stdout=base64.b64encode(data).decode("ascii"))
    return 0


def _remove_dir(
    host: LabHost, match: re.Match[str], output: CommandOutput, record: WindowsRecord
) -> int:
    path = _path_value(match.group("dir"))
    cancel = match.group("cancel")
    if cancel and not is_cancel(cancel):
        output.write(stderr=_error_record("arcfleet lab: cleanup fragment not understood"))
        return 1
    if cancel and record.tasks is not None:
        record.tasks.delete(path.rstrip("\\").rsplit("\\", 1)[-1])
    local = host.local_path(path)
    if local.exists():
        if local == host.fs_root or host.fs_root not in local.parents:
            output.write(stderr=_error_record("arcfleet lab: refusing to remove that path"))
            return 1
        shutil.rmtree(local) if local.is_dir() else local.unlink()
    record.removed.append(path)
    return 0


def _parse_acl(text: str, variable: str) -> tuple[str, ...] | None:
    match = _ACL.match(text)
    if match is None or match.group("var") != variable:
        return None
    sids = re.findall(r"'(S-[0-9-]+)'", match.group("sids"))
    return tuple(_SID_NAMES.get(sid, sid) for sid in sids)


def _path_value(expr: str) -> str:
    if expr[0] in _Q:
        return unquote(expr)
    match = re.fullmatch(rf"\(Join-Path \$env:(\w+) ({_LITERAL})\)|\$env:(\w+)", expr)
    if match is None:
        raise ValueError(expr)
    var = (match.group(1) or match.group(3)).lower()
    base = ENVIRONMENT.get(var, "C:\\" + var)
    return base + "\\" + unquote(match.group(2)) if match.group(2) else base


def unquote(literal: str) -> str:
    """The value of a PowerShell single-quoted literal (two quote characters stand for one)."""
    inner = literal[1:-1]
    out: list[str] = []
    index = 0
    while index < len(inner):
        out.append(inner[index])
        index += 2 if inner[index] in _Q else 1
    return "".join(out)


def _error_record(message: str) -> str:
    """An error as powershell.exe writes it to a redirected stderr: CLIXML."""
    text = escape(message).replace("\n", "_x000A_").replace("\r", "_x000D_")
    return (
        "#< CLIXML\r\n"
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f'<S S="Error">{text}_x000D__x000A_</S></Objs>'
    )


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def hex_id() -> str:
    return uuid.uuid4().hex

"""A tiny POSIX-shell stand-in for the commands arcfleet sends to a Linux host.

No real shell runs: the command line is split with :mod:`shlex` on unquoted ``&&``, ``||`` and
``;``, each simple command is looked up in a table of simulated programs, and ``sh -c STRING``
recurses. Anything else answers like dash does: ``sh: 1: NAME: not found``, exit 127.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fleet.lab import install as lab_install
from fleet.lab.agent import run_agent
from fleet.lab.host import LINUX_AGENT_ALT_PATH, LINUX_AGENT_PATH, LINUX_SERVICE, LabHost
from fleet.lab.host_script import is_host_script, run_host_script
from fleet.lab.scenario import ScenarioKind

LOGIN_UID = 1000
LOGIN_USER = "arc"
AGENT_NAMES = {"azcmagent", LINUX_AGENT_PATH, LINUX_AGENT_ALT_PATH}
# Programs `command -v` finds besides the agent.
_KNOWN = {"sh", "bash", "sudo", "id", "mktemp", "rm", "tail", "cat", "systemctl", "true",
          "false", "echo", "hostname", "test", "command"}
_OPERATORS = {"&&", "||", ";"}
# Package tools per family (the install stage picks .deb or .rpm by `command -v dpkg`).
_PACKAGING = {"deb": {"dpkg", "apt-get"}, "rpm": {"rpm", "dnf"}, "suse": {"rpm", "zypper"}}


@dataclass(frozen=True)
class ShellResult:
    exit_status: int
    stdout: str = ""
    stderr: str = ""


Program = Callable[[list[str], LabHost, bool], Awaitable[ShellResult]]


# The common shapes of a command line, read without shlex: words of plain characters,
# '...' and backslash-free "..." pieces (what shlex.quote writes), and && || ; between them.
# shlex reads one character at a time in Python, and the host script is a 15 KB word: the lab
# spent more CPU tokenizing it than arcfleet spends on a host (bench/forks_ideal.py).
_FAST_TOKEN = re.compile(
    r"""[ \t\r\n]*(?:"""
    r"""(?P<op>(?:&&|\|\||;)(?![;&|]))"""
    r"""|(?P<word>(?:[^ \t\r\n'"\\;&|]+|'[^']*'|"[^"\\]*")+))"""
)
_FAST_PIECE = re.compile(r"""'([^']*)'|"([^"\\]*)"|([^'"]+)""")


def _split_fast(line: str) -> list[tuple[str, list[str]]] | None:
    """What :func:`split_command` returns, for lines of the common shapes; None otherwise."""
    pieces: list[tuple[str, list[str]]] = []
    op = ";"
    current: list[str] = []
    position, end = 0, len(line.rstrip(" \t\r\n"))
    while position < end:
        match = _FAST_TOKEN.match(line, position)
        if match is None:
            return None
        position = match.end()
        if match.group("op") is not None:
            pieces.append((op, current))
            op, current = match.group("op"), []
        else:
            current.append("".join(
                "".join(p) for p in _FAST_PIECE.findall(match.group("word"))
            ))
    pieces.append((op, current))
    return [(o, argv) for o, argv in pieces if argv or o != ";"]


def split_command(line: str) -> list[tuple[str, list[str]]]:
    """``[(operator_before, argv), ...]``; the first operator is ``;``. Raises ValueError on
    unbalanced quotes."""
    fast = _split_fast(line)
    return fast if fast is not None else split_with_shlex(line)


def split_with_shlex(line: str) -> list[tuple[str, list[str]]]:
    """:func:`split_command` by shlex, for every shape (the reference for the fast path)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = ""
    pieces: list[tuple[str, list[str]]] = []
    op = ";"
    current: list[str] = []
    for token in lexer:
        if token in _OPERATORS:
            pieces.append((op, current))
            op, current = token, []
        else:
            current.append(token)
    pieces.append((op, current))
    return [(o, argv) for o, argv in pieces if argv or o != ";"]


async def run_shell(line: str, host: LabHost, *, elevated: bool = False) -> ShellResult:
    """Run a command line as the login user (or root when ``elevated``)."""
    try:
        pieces = split_command(line)
    except ValueError:
        return ShellResult(2, "", "sh: 1: Syntax error: Unterminated quoted string\n")
    out: list[str] = []
    err: list[str] = []
    status = 0
    for op, argv in pieces:
        if (op == "&&" and status != 0) or (op == "||" and status == 0):
            continue
        if not argv:
            return ShellResult(2, "".join(out), "".join(err) + "sh: 1: Syntax error\n")
        result = await run_program(argv, host, elevated=elevated)
        out.append(result.stdout)
        err.append(result.stderr)
        status = result.exit_status
    return ShellResult(status, "".join(out), "".join(err))


async def run_program(argv: list[str], host: LabHost, *, elevated: bool) -> ShellResult:
    name = argv[0]
    if name in AGENT_NAMES:
        if not host.agent_installed:
            return ShellResult(127, "", f"sh: 1: {name}: not found\n")
        agent = await run_agent(argv[1:], host, elevated=elevated)
        return ShellResult(agent.exit_status, agent.stdout, agent.stderr)
    program = _PROGRAMS.get(name)
    if program is None:
        return ShellResult(127, "", f"sh: 1: {name}: not found\n")
    return await program(argv, host, elevated)


async def _sudo(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    args = argv[1:]
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--":
            break
        if flag in ("-u", "-g", "-p", "-C") and args:
            args.pop(0)
    if not args:
        return ShellResult(1, "", "usage: sudo -h | -K | -k | -V\n")
    if host.scenario.kind is ScenarioKind.SUDO_PASSWORD and not elevated:
        return ShellResult(1, "", "sudo: a password is required\n")
    name = args[0]
    missing = not host.agent_installed if name in AGENT_NAMES else name not in _PROGRAMS
    if missing:
        return ShellResult(1, "", f"sudo: {name}: command not found\n")
    # A sudoers rule that does not make the user root (``not_root``): commands stay unprivileged.
    as_root = elevated or host.scenario.kind is not ScenarioKind.NOT_ROOT
    return await run_program(args, host, elevated=as_root)


async def _sh(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    if len(argv) >= 2 and argv[1].rsplit("/", 1)[-1] == lab_install.LINUX_SCRIPT:
        done = await lab_install.run_linux_script(argv, host, elevated)
        return ShellResult(done.exit_status, done.stdout, done.stderr)
    if len(argv) >= 3 and argv[1] == "-c" and is_host_script(argv[2]):
        result: ShellResult = await run_host_script(argv[2], host, elevated=elevated)
        return result
    if len(argv) >= 3 and argv[1] == "-c":
        return await run_shell(argv[2], host, elevated=elevated)
    return ShellResult(2, "", "sh: 0: only 'sh -c STRING' is supported here\n")


async def _id(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    uid = 0 if elevated else LOGIN_UID
    user = "root" if elevated else LOGIN_USER
    if argv[1:] == ["-u"]:
        return ShellResult(0, f"{uid}\n")
    if argv[1:] in (["-un"], ["-u", "-n"], ["-nu"]):
        return ShellResult(0, f"{user}\n")
    return ShellResult(0, f"uid={uid}({user}) gid={uid}({user}) groups={uid}({user})\n")


def _agent_path_exists(path: str, host: LabHost) -> bool:
    return host.agent_installed and path in (LINUX_AGENT_PATH, LINUX_AGENT_ALT_PATH)


async def _command(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    if len(argv) != 3 or argv[1] != "-v":
        return ShellResult(2, "", "sh: 1: command: only 'command -v NAME' is supported\n")
    name = argv[2]
    if name == "azcmagent":
        return ShellResult(0, f"{LINUX_AGENT_PATH}\n") if host.agent_installed else ShellResult(1)
    if name.startswith("/"):
        return ShellResult(0, f"{name}\n") if _agent_path_exists(name, host) else ShellResult(1)
    packaging = _PACKAGING.get(host.package_family, set())
    return ShellResult(0, f"/usr/bin/{name}\n") if name in _KNOWN | packaging else ShellResult(1)


async def _test(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    if len(argv) != 3 or argv[1] not in ("-x", "-f", "-e", "-d"):
        return ShellResult(2, "", "sh: 1: test: unsupported expression\n")
    flag, path = argv[1], argv[2]
    if path in (LINUX_AGENT_PATH, LINUX_AGENT_ALT_PATH):
        ok = _agent_path_exists(path, host) and flag != "-d"
    else:
        local = host.local_path(path)
        checks = {"-x": lambda: local.is_file() and os.access(local, os.X_OK),
                  "-f": local.is_file, "-e": local.exists, "-d": local.is_dir}
        ok = checks[flag]()
    return ShellResult(0 if ok else 1)


async def _mktemp(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    args = argv[1:]
    directory = "-d" in args
    templates = [a for a in args if not a.startswith("-")]
    template = templates[0] if templates else "/tmp/tmp.XXXXXXXXXX"
    stem = template.rstrip("X")
    count = len(template) - len(stem)
    if count < 3:
        return ShellResult(1, "", f"mktemp: too few X's in template '{template}'\n")
    alphabet = string.ascii_letters + string.digits
    for _ in range(10):
        path = stem + "".join(secrets.choice(alphabet) for _ in range(count))
        local = host.local_path(path)
        if local.exists():
            continue
        try:
            if directory:
                local.mkdir(mode=0o700)
                local.chmod(0o700)
            else:
                local.touch(mode=0o600, exist_ok=False)
        except FileNotFoundError:
            return ShellResult(1, "", f"mktemp: failed to create '{path}': No such file or "
                                      "directory\n")
        return ShellResult(0, f"{path}\n")
    return ShellResult(1, "", f"mktemp: failed to create '{template}': File exists\n")


async def _rm(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    flags: set[str] = set()
    paths: list[str] = []
    options = True
    for arg in argv[1:]:
        if options and arg == "--":
            options = False
        elif options and arg.startswith("-") and len(arg) > 1:
            flags.update(arg[1:])
        else:
            paths.append(arg)
    status = 0
    err: list[str] = []
    for path in paths:
        local = host.local_path(path)
        if local == host.fs_root:
            err.append(f"rm: refusing to remove '{path}'\n")
            status = 1
        elif local.is_dir() and not local.is_symlink():
            if "r" in flags or "R" in flags:
                shutil.rmtree(local, ignore_errors=True)
            else:
                err.append(f"rm: cannot remove '{path}': Is a directory\n")
                status = 1
        elif local.exists() or local.is_symlink():
            local.unlink()
        elif "f" not in flags:
            err.append(f"rm: cannot remove '{path}': No such file or directory\n")
            status = 1
    return ShellResult(status, "", "".join(err))


def _read(host: LabHost, path: str, prog: str) -> bytes | ShellResult:
    local = host.local_path(path)
    try:
        return local.read_bytes()
    except IsADirectoryError:
        return ShellResult(1, "", f"{prog}: {path}: Is a directory\n")
    except OSError:
        if prog == "tail":
            return ShellResult(1, "", f"tail: cannot open '{path}' for reading: No such file or "
                                      "directory\n")
        return ShellResult(1, "", f"{prog}: {path}: No such file or directory\n")


async def _tail(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    args = [a for a in argv[1:] if a != "--"]
    count: int | None = None
    paths: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "-c" and i + 1 < len(args):
            try:
                count = int(args[i + 1])
            except ValueError:
                return ShellResult(1, "", f"tail: invalid number of bytes: '{args[i + 1]}'\n")
            i += 2
        else:
            paths.append(args[i])
            i += 1
    if count is None or len(paths) != 1:
        return ShellResult(1, "", "tail: only 'tail -c N -- PATH' is supported here\n")
    data = _read(host, paths[0], "tail")
    if isinstance(data, ShellResult):
        return data
    return ShellResult(0, data[-count:].decode("utf-8", "replace") if count else "")


async def _cat(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    out: list[str] = []
    for path in argv[1:]:
        if path == "--":
            continue
        data = _read(host, path, "cat")
        if isinstance(data, ShellResult):
            return ShellResult(1, "".join(out), data.stderr)
        out.append(data.decode("utf-8", "replace"))
    return ShellResult(0, "".join(out))


async def _systemctl(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    if len(argv) != 3:
        return ShellResult(1, "", "systemctl: only 'systemctl ACTION UNIT' is supported here\n")
    action, unit = argv[1], argv[2].removesuffix(".service")
    known = host.agent_installed and unit in (LINUX_SERVICE, "arcproxyd", "extd", "gcad")
    if action == "is-active":
        if not known:
            return ShellResult(4, "inactive\n")
        return ShellResult(0, "active\n") if host.service_running else ShellResult(3, "inactive\n")
    if action in ("restart", "start", "stop"):
        if not elevated:
            return ShellResult(1, "", f"Failed to {action} {unit}.service: Interactive "
                                      "authentication required.\n")
        if not known:
            return ShellResult(5, "", f"Failed to {action} {unit}.service: Unit {unit}.service "
                                      "not found.\n")
        if action == "stop":
            host.service_running = False
            host.save()
        else:
            host.restart_service(unit)
        return ShellResult(0)
    return ShellResult(1, "", f"Unknown command verb {action}.\n")


async def _curl(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    done = lab_install.curl_download(argv, host)
    return ShellResult(done.exit_status, done.stdout, done.stderr)


async def _package_remove(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    if argv[0] not in _PACKAGING.get(host.package_family, set()):
        return ShellResult(127, "", f"sh: 1: {argv[0]}: not found\n")
    done = lab_install.package_remove(argv, host, elevated)
    return ShellResult(done.exit_status, done.stdout, done.stderr)


async def _true(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    return ShellResult(0)


async def _false(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    return ShellResult(1)


async def _echo(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    return ShellResult(0, " ".join(argv[1:]) + "\n")


async def _hostname(argv: list[str], host: LabHost, elevated: bool) -> ShellResult:
    return ShellResult(0, f"{host.name}\n")


_PROGRAMS: dict[str, Program] = {
    "sudo": _sudo, "sh": _sh, "bash": _sh, "/bin/sh": _sh, "id": _id, "command": _command,
    "test": _test, "mktemp": _mktemp, "rm": _rm, "tail": _tail, "cat": _cat,
    "systemctl": _systemctl, "true": _true, "false": _false, "echo": _echo,
    "hostname": _hostname, "curl": _curl, "apt-get": _package_remove,
    "dnf": _package_remove, "zypper": _package_remove,
}

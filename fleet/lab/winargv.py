"""How an argument list reaches a Windows program: Windows PowerShell 5.1 joins it into one command
line, and the program splits that line again by its own rules.

A Windows process gets one command-line string, not an argv. arcfleet's agent commands run under
Windows PowerShell 5.1, which builds that string with its legacy rule: an argument with
whitespace outside double quotes is wrapped in ``"..."``; nothing inside is escaped; an empty
argument is dropped. ``azcmagent.exe`` is a Go program; Go splits its command line with the
rules of ``CommandLineToArgvW`` (the Microsoft C runtime's "Parsing C command-line arguments"):
whitespace separates arguments outside quotes; ``2n`` backslashes before a ``"`` give ``n``
backslashes and the quote opens or closes quoting; ``2n+1`` backslashes before a ``"`` give
``n`` backslashes and a literal ``"``; backslashes elsewhere are literal; inside quotes, ``""``
gives a literal ``"`` (Go's syscall.commandLineToArgv, "prior to 2008" rule). The program name
(the first word) is read without escapes, up to the closing quote.

So a value ending in ``\\`` that PowerShell wraps in quotes ends in ``\\"`` on the line, and the
program reads the quote as a literal character: the argument runs on and swallows the options
after it. The lab's WinRM host runs every agent command through :func:`windows_argv` so its
agent sees what azcmagent.exe would.
"""

from __future__ import annotations


def ps51_command_line(program: str, args: list[str]) -> str:
    """The command line Windows PowerShell 5.1 gives a native program for ``& program args``."""
    words = [_ps51_quote(program)]
    words += [_ps51_quote(arg) for arg in args if arg != ""]
    return " ".join(words)


def command_line_to_argv(line: str) -> list[str]:
    """``CommandLineToArgvW`` / Go ``syscall`` splitting of a whole command line."""
    args: list[str] = []
    rest = line.lstrip(" \t")
    if not rest:
        return args
    program, rest = _read_program(rest)
    args.append(program)
    while rest:
        if rest[0] in " \t":
            rest = rest[1:]
            continue
        arg, rest = _read_arg(rest)
        args.append(arg)
    return args


def windows_argv(program: str, args: list[str]) -> list[str]:
    """What the program's argv is (without its name) after PowerShell 5.1 and the C rules."""
    return command_line_to_argv(ps51_command_line(program, args))[1:]


def _ps51_quote(arg: str) -> str:
    quoted = False
    for char in arg:
        if char == '"':
            quoted = not quoted
        elif char.isspace() and not quoted:
            return f'"{arg}"'
    return arg


def _read_program(line: str) -> tuple[str, str]:
    if line[0] == '"':
        end = line.find('"', 1)
        if end < 0:
            return line[1:], ""
        return line[1:end], line[end + 1 :]
    for index, char in enumerate(line):
        if char in " \t":
            return line[:index], line[index:]
    return line, ""


def _read_arg(line: str) -> tuple[str, str]:
    out: list[str] = []
    in_quote = False
    slashes = 0
    index = 0
    while index < len(line):
        char = line[index]
        if char in " \t" and not in_quote:
            out.append("\\" * slashes)
            return "".join(out), line[index + 1 :]
        if char == "\\":
            slashes += 1
            index += 1
            continue
        if char == '"':
            out.append("\\" * (slashes // 2))
            if slashes % 2 == 0:
                if in_quote and index + 1 < len(line) and line[index + 1] == '"':
                    out.append('"')
                    index += 1
                in_quote = not in_quote
            else:
                out.append('"')
            slashes = 0
            index += 1
            continue
        out.append("\\" * slashes)
        slashes = 0
        out.append(char)
        index += 1
    out.append("\\" * slashes)
    return "".join(out), ""

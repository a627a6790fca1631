"""OpenSSH options for an Ansible host, parsed by asyncssh's own SSH config parser.

Ansible's ssh connection runs OpenSSH, which applies ``-o`` options from
``ansible_ssh_common_args``/``ansible_ssh_extra_args`` and then ``~/.ssh/config`` (first value
obtained wins). arcfleet's SSH transport reads no config file itself (the inventory says how to
reach a host), so the inventory resolves these options here, once, with
:class:`asyncssh.config.SSHClientConfig`, and writes the result into the host's settings; only
what Ansible's own variables left unset is taken (Ansible passes ``-o User``/``Port``/
``IdentityFile`` ahead of the config file when it has them).
"""

from __future__ import annotations

import atexit
import getpass
import shlex
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

OPTIONS_READ = ("Hostname", "User", "Port", "IdentityFile", "ProxyJump", "ProxyCommand",
                "UserKnownHostsFile", "ConnectTimeout")


class SshOptionsError(ValueError):
    pass


def command_line_options(args: str) -> list[str]:
    """The ``-o Key=Value`` and ``-J hops`` of an ssh command line, as config lines."""
    try:
        tokens = shlex.split(args)
    except ValueError:
        raise SshOptionsError("cannot be split into arguments (unbalanced quotes)") from None
    lines: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in ("-o", "-J") and index + 1 < len(tokens):
            value = tokens[index + 1]
            lines.append(f"ProxyJump {value}" if token == "-J" else value)
            index += 2
            continue
        if token.startswith("-o") and len(token) > 2:
            lines.append(token[2:])
        elif token.startswith("-J") and len(token) > 2:
            lines.append(f"ProxyJump {token[2:]}")
        index += 1
    return lines


def _load(paths: list[Path], host: str) -> dict[str, Any]:
    from asyncssh.config import ConfigParseError, SSHClientConfig

    try:
        local_user = getpass.getuser()
    except (KeyError, OSError):
        local_user = "root"
    try:
        config = SSHClientConfig.load(None, paths, False, False, False, local_user, (), host, ())
    except ConfigParseError as exc:
        raise SshOptionsError(str(exc)) from None
    except OSError as exc:
        raise SshOptionsError(f"cannot read: {exc.strerror or exc}") from None
    return {name: config.get(name) for name in OPTIONS_READ if config.get(name) is not None}


@cache
def _options_file(lines: tuple[str, ...]) -> Path:
    """The command line's options as a config file (no Host blocks: they apply to every host),
    so asyncssh reads them ahead of ~/.ssh/config with OpenSSH's first-value-wins rule."""
    directory = Path(tempfile.mkdtemp(prefix="arcfleet-ssh-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "options"
    path.write_text("".join(
        "ProxyCommand " + line.split("=", 1)[1] + "\n"
        if line.lower().startswith("proxycommand=") else line + "\n" for line in lines))
    return path


def options_for(host: str, lines: tuple[str, ...], config: Path | None) -> dict[str, Any]:
    """Command-line options first (they win), then the config file's for ``host``."""
    paths = ([_options_file(lines)] if lines else []) + ([config] if config else [])
    return _load(paths, host) if paths else {}


def normalize_hop(hop: str) -> str:
    """``ssh://user@host:port`` and a bare IPv6 address -> ``[user@]host[:port]`` with IPv6 in
    brackets, the form the SSH transport reads."""
    hop = hop.strip()
    if hop.startswith("ssh://"):
        hop = hop[len("ssh://"):].rstrip("/")
    user, at, rest = hop.rpartition("@")
    prefix = f"{user}{at}"
    if rest.count(":") > 1 and not rest.startswith("["):
        rest = f"[{rest}]"
    return prefix + rest

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
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.inventory.ansible_vars import Conversion

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


def _proxycommand_hop(command: str) -> str | None:
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or Path(words[0]).name != "ssh" or "-W" not in words:
        return None
    port = None
    hop = None
    skip = False
    for index, word in enumerate(words[1:], start=1):
        if skip:
            skip = False
            continue
        if word == "-p" and index + 1 < len(words):
            port = words[index + 1]
            skip = True
        elif word in ("-W", "-l", "-i", "-o", "-F"):
            skip = True
        elif not word.startswith("-"):
            hop = word
    if hop and port:
        hop = f"{hop}:{port}"
    return hop


def apply_ssh_options(conv: Conversion, variables: Mapping[str, Any], config: Path | None,
                      target: Any) -> None:
    """-o/-J options of the ssh args, then ~/.ssh/config, through asyncssh's parser."""
    from fleet.inventory.ansible_vars import MAX_LINE, text_of

    lines: list[str] = []
    label = ""
    for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if variables.get(name) is None:
            continue
        text = text_of(variables[name])
        if len(text) > MAX_LINE:
            conv.error(name, f"is longer than {MAX_LINE} characters")
            return
        try:
            lines += command_line_options(text)
        except SshOptionsError as exc:
            conv.error(name, str(exc))
            return
        label = label or name
    if not lines and config is None:
        return
    try:
        found = options_for(text_of(target or "*"), tuple(lines), config)
    except SshOptionsError as exc:
        conv.error(label or str(config), f"SSH options cannot be read: {exc}")
        return
    label = label or str(config)
    unset = {path: not any(variables.get(n) is not None for n in names) for path, names in (
        ("address", ("ansible_host", "ansible_ssh_host")),
        ("port", ("ansible_port", "ansible_ssh_port")),
        ("ssh.user", ("ansible_user", "ansible_ssh_user")),
        ("ssh.key_file", ("ansible_private_key_file", "ansible_ssh_private_key_file")))}
    if found.get("Hostname") and unset["address"]:
        conv.set("address", text_of(found["Hostname"]), label)
    if found.get("Port") and unset["port"]:
        conv.set("port", found["Port"], label)
    if found.get("User") and unset["ssh.user"]:
        conv.set("ssh.user", text_of(found["User"]), label)
    if found.get("IdentityFile") and unset["ssh.key_file"]:
        conv.set("ssh.key_file", text_of(found["IdentityFile"][0]), label)
    jump = text_of(found.get("ProxyJump") or "").strip()
    if jump and jump.lower() != "none":
        conv.set("ssh.jump_hosts", [normalize_hop(h) for h in jump.split(",") if h.strip()],
                 label)
    elif found.get("ProxyCommand") and text_of(found["ProxyCommand"]).lower() != "none":
        hop = _proxycommand_hop(text_of(found["ProxyCommand"]))
        if hop is None:
            conv.error(label, "ProxyCommand is only understood as `ssh -W %h:%p [user@]host`")
        else:
            conv.set("ssh.jump_hosts", [normalize_hop(hop)], label)
    known = found.get("UserKnownHostsFile")
    if known:
        conv.set("ssh.known_hosts", text_of(known[0] if isinstance(known, list) else known),
                 label)
    if found.get("ConnectTimeout"):
        conv.set("ssh.connect_timeout_s", found["ConnectTimeout"], label)

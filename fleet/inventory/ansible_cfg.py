"""The ansible.cfg settings that change how an inventory's hosts are reached.

Found as Ansible finds it: ``$ANSIBLE_CONFIG`` (a file, or a directory holding ansible.cfg), else
``./ansible.cfg``, else ``~/.ansible.cfg``, else ``/etc/ansible/ansible.cfg``; the first that
exists is the only one read. ``ANSIBLE_*`` environment variables win over the file, as in Ansible.

Read: ``remote_user``, ``private_key_file``, ``inventory`` (when no ``-i`` is given),
``host_key_checking``, ``hash_behaviour`` ([defaults]) and ``become``, ``become_method``,
``become_user`` ([privilege_escalation]). They are the lowest layer of every Ansible host's
variables, exactly where Ansible puts them.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (section, key, environment variable, the inventory variable it stands in for)
_SETTINGS = (
    ("defaults", "remote_user", "ANSIBLE_REMOTE_USER", "ansible_user"),
    ("defaults", "private_key_file", "ANSIBLE_PRIVATE_KEY_FILE", "ansible_private_key_file"),
    ("defaults", "host_key_checking", "ANSIBLE_HOST_KEY_CHECKING", "ansible_host_key_checking"),
    ("privilege_escalation", "become", "ANSIBLE_BECOME", "ansible_become"),
    ("privilege_escalation", "become_method", "ANSIBLE_BECOME_METHOD", "ansible_become_method"),
    ("privilege_escalation", "become_user", "ANSIBLE_BECOME_USER", "ansible_become_user"),
)


@dataclass
class AnsibleConfig:
    path: Path | None = None
    # Variables the settings stand in for, with where each came from.
    variables: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    inventory: list[Path] = field(default_factory=list)
    hash_behaviour: str = "replace"
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (source, field, message)


def find_config(env: Mapping[str, str], cwd: Path) -> Path | None:
    given = env.get("ANSIBLE_CONFIG", "").strip()
    candidates: list[Path] = []
    if given:
        path = Path(os.path.expanduser(given))
        candidates.append(path / "ansible.cfg" if path.is_dir() else path)
    candidates.append(cwd / "ansible.cfg")
    home = env.get("HOME") or os.path.expanduser("~")
    candidates += [Path(home) / ".ansible.cfg", Path("/etc/ansible/ansible.cfg")]
    for candidate in candidates:
        if candidate == cwd / "ansible.cfg" and _world_writable(cwd):
            continue  # Ansible ignores ansible.cfg in a world-writable directory
        if candidate.is_file():
            return candidate
    return None


def _world_writable(directory: Path) -> bool:
    try:
        return bool(directory.stat().st_mode & 0o002)
    except OSError:
        return False


def read_config(env: Mapping[str, str], cwd: Path) -> AnsibleConfig:
    config = AnsibleConfig(path=find_config(env, cwd))
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",),
                                       strict=False)
    source = str(config.path) if config.path else ""
    if config.path is not None:
        try:
            parser.read(config.path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError) as exc:
            config.problems.append((source, "ansible.cfg", f"cannot be read: {exc}"))
            return config

    def setting(section: str, key: str, env_name: str) -> tuple[str, str] | None:
        if env.get(env_name, "").strip():
            return env[env_name].strip(), f"<environment> {env_name}"
        if parser.has_option(section, key):
            return parser.get(section, key).strip(), f"{source} [{section}] {key}"
        return None

    base = config.path.parent if config.path else cwd
    for section, key, env_name, variable in _SETTINGS:
        found = setting(section, key, env_name)
        if found is None or not found[0]:
            continue
        value: Any = found[0]
        if key == "private_key_file":
            value = str(base / os.path.expanduser(value)) if not os.path.isabs(
                os.path.expanduser(value)) else os.path.expanduser(value)
        config.variables[variable] = value
        config.sources[variable] = found[1]
    behaviour = setting("defaults", "hash_behaviour", "ANSIBLE_HASH_BEHAVIOUR")
    if behaviour is not None:
        if behaviour[0].lower() not in ("replace", "merge"):
            config.problems.append((behaviour[1], "hash_behaviour", "must be replace or merge"))
        else:
            config.hash_behaviour = behaviour[0].lower()
    inventory = setting("defaults", "inventory", "ANSIBLE_INVENTORY")
    if inventory is not None:
        for item in inventory[0].split(","):
            if item.strip():
                path = Path(os.path.expanduser(item.strip()))
                config.inventory.append(path if path.is_absolute() else base / path)
    return config

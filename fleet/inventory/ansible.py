"""Loaders for Ansible inventories (INI and YAML), read as Ansible reads them.

Only the variables that say how to reach a host (``ansible_host``, ``ansible_port``,
``ansible_user``, ``ansible_connection``, key file, become, ProxyJump, WinRM transport/scheme/cert
validation) and arcfleet's own ``arc_*`` variables are used; any other ``ansible_*`` variable is
Ansible's business and ignored. An unknown ``arc_*`` variable is an error (a typo would otherwise
send a host to the wrong place). Passwords must be references; see docs/inventory.md.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleet.inventory.spec import HostSpec, SettingsSpec, layer_of
from fleet.inventory.tree import (
    ALL,
    UNGROUPED,
    InventoryTree,
    Layer,
    validation_problems,
)
from fleet.inventory.yamlio import VaultValue, load_yaml

MAX_RANGE_HOSTS = 100_000
MAX_LINE = 65_536
_MAX_DEPTH = 64
_RANGE_RE = re.compile(r"\[([0-9]+|[a-zA-Z]):([0-9]+|[a-zA-Z])(?::([0-9]+))?\]")
_LOOKUP_RE = re.compile(
    r"""^\{\{\s*lookup\(\s*['"](env|file)['"]\s*,\s*['"]([^'"]+)['"]\s*\)\s*\}\}$"""
)
_SECTION_RE = re.compile(r"^\[([^\]\s:]+)(?::([A-Za-z]+))?\]\s*(?:[#;].*)?$")
_VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")

_USE_REFERENCE = (
    "set arc_winrm_password_env=VARIABLE_NAME or arc_winrm_password_file=PATH "
    "(or {{ lookup('env', 'NAME') }})"
)
LITERAL_PASSWORD = "holds a literal password, which arcfleet refuses; " + _USE_REFERENCE


# ---------------------------------------------------------------- variables -> settings


class _Conversion:
    """Builds one settings layer from Ansible variables, remembering which variable set what."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self.errors: list[tuple[str, str]] = []
        self.priority: int | None = None

    def set(self, path: str, value: Any, var: str) -> None:
        parts = path.split(".")
        target = self.values
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
        self.labels[path] = var

    def error(self, var: str, message: str) -> None:
        self.errors.append((var, message))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _secret_ref(conv: _Conversion, var: str, value: Any) -> None:
    if value is None or value == "":
        return
    if isinstance(value, str):
        match = _LOOKUP_RE.match(value.strip())
        if match:
            kind, target = match.groups()
            existing = conv.values.get("winrm", {}).get("password")
            if existing is not None and existing != {kind: target}:
                conv.error(var, "the WinRM password is already given by "
                           f"{conv.labels['winrm.password']}; give one reference")
                return
            conv.set("winrm.password", {kind: target}, var)
            return
    if isinstance(value, VaultValue):
        conv.error(var, "is vault-encrypted, which arcfleet cannot use; " + _USE_REFERENCE)
        return
    conv.error(var, LITERAL_PASSWORD)


def _connection(conv: _Conversion, var: str, value: Any) -> None:
    kind = _text(value).strip().lower()
    if kind in ("ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh"):
        conv.set("transport", "ssh", var)
    elif kind in ("winrm", "psrp", "ansible.builtin.winrm", "ansible.windows.psrp"):
        conv.set("transport", "winrm", var)
    else:
        conv.error(var, "unsupported connection; arcfleet speaks ssh, winrm and psrp (as winrm)")


def _winrm_transport(conv: _Conversion, var: str, value: Any) -> None:
    items = value if isinstance(value, list) else _text(value).split(",")
    mapping = {"ntlm": "ntlm", "kerberos": "kerberos", "credssp": "credssp",
               "basic": "basic", "plaintext": "basic", "ssl": "basic"}
    for item in items:
        auth = mapping.get(_text(item).strip().lower())
        if auth:
            conv.set("winrm.auth", auth, var)
            return
    conv.error(var, "unsupported WinRM transport; use ntlm, kerberos, credssp or basic")


def _cert_validation(conv: _Conversion, var: str, value: Any) -> None:
    text = _text(value).strip().lower()
    if text == "ignore":
        conv.set("winrm.cert_validation", False, var)
    elif text == "validate":
        conv.set("winrm.cert_validation", True, var)
    else:
        conv.error(var, "must be 'validate' or 'ignore'")


def _ssh_args(conv: _Conversion, var: str, value: Any) -> None:
    if len(_text(value)) > MAX_LINE:
        conv.error(var, f"is longer than {MAX_LINE} characters")
        return
    try:
        tokens = shlex.split(_text(value))
    except ValueError:
        conv.error(var, "cannot be split into arguments (unbalanced quotes)")
        return
    options: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("-o", "-J") and i + 1 < len(tokens):
            options.append(("ProxyJump=" if token == "-J" else "") + tokens[i + 1])
            i += 2
            continue
        if token.startswith("-o") and len(token) > 2:
            options.append(token[2:])
        elif token.startswith("-J") and len(token) > 2:
            options.append("ProxyJump=" + token[2:])
        i += 1
    for option in options:
        key, sep, rest = option.partition("=")
        if not sep:
            key, _, rest = option.partition(" ")
        key, rest = key.strip().lower(), rest.strip()
        if key == "proxyjump" and rest.lower() != "none":
            conv.set("ssh.jump_hosts", [hop.strip() for hop in rest.split(",") if hop.strip()], var)
        elif key == "proxycommand":
            hop = _proxycommand_hop(rest)
            if hop:
                conv.set("ssh.jump_hosts", [hop], var)
            else:
                conv.error(var, "ProxyCommand is only understood as `ssh -W %h:%p [user@]host`")
        elif key == "userknownhostsfile":
            conv.set("ssh.known_hosts", rest.split()[0] if rest else rest, var)
        elif key == "connecttimeout":
            conv.set("ssh.connect_timeout_s", rest, var)


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


def _tags(conv: _Conversion, var: str, value: Any) -> None:
    if isinstance(value, dict):
        conv.set("azure.tags", value, var)
        return
    text = _text(value).strip()
    if text.startswith("{"):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            conv.set("azure.tags", parsed, var)
            return
        conv.error(var, "is not a valid dict; write k=v,k2=v2")
        return
    tags: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, tag_value = item.partition("=")
        if not sep or not key.strip():
            conv.error(var, "must be k=v,k2=v2 (each item needs a name and '=')")
            return
        tags[key.strip()] = tag_value.strip()
    conv.set("azure.tags", tags, var)


def _setter(path: str) -> Callable[[_Conversion, str, Any], None]:
    return lambda conv, var, value: conv.set(path, value, var)


def _users(conv: _Conversion, var: str, value: Any) -> None:
    conv.set("ssh.user", _text(value), var)
    conv.set("winrm.user", _text(value), var)


def _sp_field(name: str) -> Callable[[_Conversion, str, Any], None]:
    def apply(conv: _Conversion, var: str, value: Any) -> None:
        target = conv.values.setdefault("azure", {}).setdefault("service_principal", {})
        if name != "client_id" and ("secret" in target or "certificate_file" in target):
            conv.error(var, "give only one of arc_sp_secret_env, arc_sp_secret_file and "
                       "arc_sp_certificate_file")
            return
        if name == "secret_env":
            target["secret"] = {"env": _text(value)}
        elif name == "secret_file":
            target["secret"] = {"file": _text(value)}
        else:
            target[name] = _text(value) if name == "client_id" else value
        spec_field = "secret" if name.startswith("secret") else name
        conv.labels[f"azure.service_principal.{spec_field}"] = var
        conv.labels.setdefault("azure.service_principal", var)

    return apply


def _password_ref(kind: str) -> Callable[[_Conversion, str, Any], None]:
    def apply(conv: _Conversion, var: str, value: Any) -> None:
        if "password" in conv.values.get("winrm", {}):
            conv.error(var, f"the WinRM password is already given by "
                       f"{conv.labels['winrm.password']}; give one reference")
            return
        conv.set("winrm.password", {kind: _text(value)}, var)

    return apply


def _priority(conv: _Conversion, var: str, value: Any) -> None:
    try:
        conv.priority = int(_text(value))
    except ValueError:
        conv.error(var, "must be an integer")


_ANSIBLE_VARS: dict[str, Callable[[_Conversion, str, Any], None]] = {
    "ansible_host": _setter("address"),
    "ansible_ssh_host": _setter("address"),
    "ansible_port": _setter("port"),
    "ansible_ssh_port": _setter("port"),
    "ansible_user": _users,
    "ansible_ssh_user": _users,
    "ansible_connection": _connection,
    "ansible_ssh_private_key_file": _setter("ssh.key_file"),
    "ansible_private_key_file": _setter("ssh.key_file"),
    "ansible_become": _setter("ssh.become"),
    "ansible_ssh_common_args": _ssh_args,
    "ansible_ssh_extra_args": _ssh_args,
    "ansible_winrm_transport": _winrm_transport,
    "ansible_winrm_scheme": _setter("winrm.scheme"),
    "ansible_winrm_server_cert_validation": _cert_validation,
    "ansible_winrm_ca_trust_path": _setter("winrm.ca_file"),
    "ansible_password": _secret_ref,
    "ansible_winrm_password": _secret_ref,
    "ansible_ssh_pass": _secret_ref,
    "ansible_ssh_password": _secret_ref,
    "ansible_group_priority": _priority,
}

# arcfleet's own variables; documented in docs/inventory.md.
ARC_VARS: dict[str, Callable[[_Conversion, str, Any], None]] = {
    "arc_resource_name": _setter("azure.resource_name"),
    "arc_tags": _tags,
    "arc_location": _setter("azure.location"),
    "arc_resource_group": _setter("azure.resource_group"),
    "arc_tenant_id": _setter("azure.tenant_id"),
    "arc_subscription_id": _setter("azure.subscription_id"),
    "arc_cloud": _setter("azure.cloud"),
    "arc_correlation_id": _setter("azure.correlation_id"),
    "arc_private_link_scope": _setter("azure.private_link_scope"),
    "arc_gateway_id": _setter("azure.gateway_id"),
    "arc_proxy_url": _setter("azure.proxy_url"),
    "arc_sp_client_id": _sp_field("client_id"),
    "arc_sp_secret_env": _sp_field("secret_env"),
    "arc_sp_secret_file": _sp_field("secret_file"),
    "arc_sp_certificate_file": _sp_field("certificate_file"),
    "arc_winrm_password_env": _password_ref("env"),
    "arc_winrm_password_file": _password_ref("file"),
    "arc_winrm_allow_basic_over_http": _setter("winrm.allow_basic_over_http"),
    "arc_winrm_allow_unverified_tls": _setter("winrm.allow_unverified_tls"),
    "arc_known_hosts": _setter("ssh.known_hosts"),
    "arc_connect_timeout_s": _setter("ssh.connect_timeout_s"),
    "arc_os": _setter("os"),
}


def vars_layer(
    variables: dict[Any, Any], *, base_dir: Path, source: str, host: str | None,
    prefix: str, tree: InventoryTree,
) -> tuple[Layer, int | None]:
    """Convert one set of Ansible variables into a validated settings layer."""
    conv = _Conversion()
    for raw_key, value in variables.items():
        key = str(raw_key)
        if key.startswith("arc_"):
            handler = ARC_VARS.get(key)
            if handler is None:
                conv.error(key, "unknown arcfleet variable (see docs/inventory.md for arc_* names)")
                continue
            handler(conv, key, value)
        elif key.startswith("ansible_"):
            handler = _ANSIBLE_VARS.get(key)
            if handler is not None:
                handler(conv, key, value)
    for var, message in conv.errors:
        tree.problem(source, host, prefix + var, message)
    broken = bool(conv.errors)
    if host is None and "address" in conv.values:
        tree.problem(source, None, prefix + conv.labels["address"],
                     "ansible_host belongs to a host, not to a group")
        conv.values.pop("address")
        broken = True
    if not conv.values:
        return Layer({}, source, broken=broken), conv.priority
    model = HostSpec if host is not None else SettingsSpec
    try:
        spec = model.model_validate(conv.values, context={"base_dir": base_dir})
    except ValidationError as exc:
        tree.problems.extend(validation_problems(exc, source, host, prefix, conv.labels))
        return Layer({}, source, broken=True), conv.priority
    values = layer_of(spec)
    if isinstance(spec, HostSpec) and spec.address is not None:
        values["address"] = spec.address
    return Layer(values, source, broken=broken), conv.priority


# ---------------------------------------------------------------- host patterns


def expand_host_pattern(pattern: str) -> list[str]:
    """``web[01:03].x`` -> web01.x, web02.x, web03.x; ``db-[a:c]`` -> db-a .. db-c."""
    match = _RANGE_RE.search(pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    begin, end, step_text = match.group(1), match.group(2), match.group(3)
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ValueError("host range step must be at least 1")
    values: list[str]
    if begin.isdigit() and end.isdigit():
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        first, last = int(begin), int(end)
        if last < first:
            raise ValueError("host range end is before its start")
        if (last - first) // step + 1 > MAX_RANGE_HOSTS:
            raise ValueError(f"host range expands to more than {MAX_RANGE_HOSTS} hosts")
        values = [str(n).zfill(width) for n in range(first, last + 1, step)]
    elif begin.isalpha() and end.isalpha():
        if ord(end) < ord(begin):
            raise ValueError("host range end is before its start")
        values = [chr(c) for c in range(ord(begin), ord(end) + 1, step)]
    else:
        raise ValueError("host range mixes letters and digits")
    rest = expand_host_pattern(tail)
    if len(values) * len(rest) > MAX_RANGE_HOSTS:
        raise ValueError(f"host range expands to more than {MAX_RANGE_HOSTS} hosts")
    return [f"{head}{value}{suffix}" for value in values for suffix in rest]


def _split_host_port(token: str) -> tuple[str, str | None]:
    # "host:2222" carries a port; an IPv6 address has several colons and carries none.
    if token.count(":") == 1:
        name, _, port = token.partition(":")
        if port.isdigit() and name:
            return name, port
    return token, None


# ---------------------------------------------------------------- INI


def load_ini(text: str, path: Path, source: str, tree: InventoryTree) -> None:
    base_dir = path.resolve().parent
    section, kind = UNGROUPED, "hosts"
    seen_in_section: set[tuple[str, str]] = set()
    group_vars: dict[str, dict[str, Any]] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = f"line {lineno}"
        if len(line) > MAX_LINE:
            tree.problem(source, None, where, f"line is longer than {MAX_LINE} characters")
            continue
        if line.startswith("["):
            match = _SECTION_RE.match(line)
            if not match:
                tree.problem(source, None, where, "malformed section header; expected [group], "
                             "[group:vars] or [group:children]")
                section, kind = "", "invalid"
                continue
            section, kind = match.group(1), (match.group(2) or "hosts").lower()
            if kind not in ("hosts", "vars", "children"):
                tree.problem(source, None, where, f"unknown section kind ':{kind}'; expected "
                             ":vars or :children")
                kind = "invalid"
                continue
            tree.group(section)
            continue
        if kind == "invalid":
            continue
        if kind == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                tree.problem(source, None, f"[{section}:vars] {where}", "expected key=value")
                continue
            group_vars.setdefault(section, {})[key.strip()] = _unquote(value.strip())
            continue
        tokens = _split_words(line)
        if tokens is None:
            tree.problem(source, None, where, "cannot split the line (unbalanced quotes)")
            continue
        if not tokens:
            continue
        if kind == "children":
            child = tokens[0]
            if child == section:
                tree.problem(source, None, f"[{section}:children]", "a group cannot contain itself")
                continue
            tree.add_child(section, child)
            continue
        _ini_host_line(tokens, where, section, source, base_dir, tree, seen_in_section)
    for group, variables in group_vars.items():
        layer, priority = vars_layer(variables, base_dir=base_dir, source=source, host=None,
                                     prefix=f"[{group}:vars] ", tree=tree)
        node = tree.group(group)
        node.layers.append(layer)
        if priority is not None:
            node.priority = priority


def _split_words(line: str) -> list[str] | None:
    """Shell-like words, '#' starts a comment; None for unbalanced quotes."""
    if not any(c in line for c in "'\"\\"):
        return line.split("#", 1)[0].split()  # shlex is slow; most lines need none of it
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _ini_host_line(
    tokens: list[str], where: str, section: str, source: str, base_dir: Path,
    tree: InventoryTree, seen: set[tuple[str, str]],
) -> None:
    name_token, port = _split_host_port(tokens[0])
    try:
        names = expand_host_pattern(name_token)
    except ValueError as exc:
        tree.problem(source, None, where, str(exc))
        return
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            tree.problem(source, names[0], where, "expected key=value after the host name")
            return
        variables[key] = value
    if port is not None:
        variables.setdefault("ansible_port", port)
    layer: Layer | None = None
    for name in names:
        if (section, name) in seen:
            tree.problem(source, name, f"[{section}]",
                         f"host listed twice in this section ({where})")
            continue
        seen.add((section, name))
        node = tree.host(name, source, ansible=True)
        if section != UNGROUPED:
            tree.add_member(section, name)
        if variables:
            if layer is None or len(names) == 1:
                layer, _ = vars_layer(variables, base_dir=base_dir, source=source, host=name,
                                      prefix="", tree=tree)
            node.layers.append(layer)


# ---------------------------------------------------------------- YAML


def load_ansible_yaml(
    data: dict[Any, Any], path: Path, source: str, tree: InventoryTree,
    duplicates: list[tuple[str, int]],
) -> None:
    base_dir = path.resolve().parent
    for key, line in duplicates:
        host = key if key in _yaml_host_names(data) else None
        what = "host defined twice in this file" if host else "key appears twice in one mapping"
        tree.problem(source, host, None if host else key, f"{what} (line {line})")
    for name, body in data.items():
        _walk_group(str(name), body, None, 0, base_dir, source, tree)


def _yaml_host_names(data: Any, depth: int = 0) -> set[str]:
    names: set[str] = set()
    if not isinstance(data, dict) or depth > _MAX_DEPTH:
        return names
    for body in data.values():
        if isinstance(body, dict):
            hosts = body.get("hosts")
            if isinstance(hosts, dict):
                names.update(str(h) for h in hosts)
            names |= _yaml_host_names(body.get("children"), depth + 1)
    return names


def _walk_group(
    name: str, body: Any, parent: str | None, depth: int, base_dir: Path, source: str,
    tree: InventoryTree,
) -> None:
    field = f"group {name}"
    if depth > _MAX_DEPTH:
        tree.problem(source, None, field, "groups are nested too deeply")
        return
    tree.group(name)
    if parent is not None:
        if parent == name:
            tree.problem(source, None, field, "a group cannot contain itself")
        else:
            tree.add_child(parent, name)
    if body is None:
        return
    if not isinstance(body, dict):
        tree.problem(source, None, field, "a group must be a mapping with hosts, vars, children")
        return
    for key in body:
        if key not in ("hosts", "vars", "children"):
            tree.problem(source, None, f"{field}: {key}",
                         "unknown key in a group; expected hosts, vars or children")
    hosts = body.get("hosts")
    if hosts is not None and not isinstance(hosts, dict):
        tree.problem(source, None, f"{field}: hosts", "must be a mapping of host names to vars")
        hosts = None
    for raw_host, host_vars in (hosts or {}).items():
        try:
            names = expand_host_pattern(str(raw_host))
        except ValueError as exc:
            tree.problem(source, str(raw_host), f"{field}: hosts", str(exc))
            continue
        if host_vars is not None and not isinstance(host_vars, dict):
            tree.problem(source, names[0], f"{field}: hosts", "host vars must be a mapping")
            host_vars = None
        for host_name in names:
            node = tree.host(host_name, source, ansible=True)
            if name != ALL:
                tree.add_member(name, host_name)
            if host_vars:
                layer, _ = vars_layer(host_vars, base_dir=base_dir, source=source,
                                      host=host_name, prefix="", tree=tree)
                node.layers.append(layer)
    variables = body.get("vars")
    if variables is not None and not isinstance(variables, dict):
        tree.problem(source, None, f"{field}: vars", "must be a mapping")
    elif variables:
        layer, priority = vars_layer(variables, base_dir=base_dir, source=source, host=None,
                                     prefix=f"{field}: ", tree=tree)
        tree.group(name).layers.append(layer)
        if priority is not None:
            tree.group(name).priority = priority
    children = body.get("children")
    if children is not None and not isinstance(children, dict):
        tree.problem(source, None, f"{field}: children", "must be a mapping of group names")
    elif children:
        for child, child_body in children.items():
            _walk_group(str(child), child_body, name, depth + 1, base_dir, source, tree)


def looks_like_ansible_yaml(data: dict[Any, Any]) -> bool:
    """Top-level keys are groups whose bodies only use hosts/vars/children."""
    if not data:
        return False
    for body in data.values():
        if body is None:
            continue
        if not isinstance(body, dict) or not set(body) <= {"hosts", "vars", "children"}:
            return False
    return True


# ---------------------------------------------------------------- group_vars / host_vars


def load_vars_dirs(inventory_dir: Path, tree: InventoryTree) -> None:
    """Apply ``group_vars/`` and ``host_vars/`` (YAML or JSON) next to an inventory file."""
    for kind in ("group_vars", "host_vars"):
        directory = inventory_dir / kind
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            continue
        known = tree.groups if kind == "group_vars" else tree.hosts
        for entry in entries:
            stem = entry
            for ext in _VARS_EXTENSIONS[1:]:
                if entry.endswith(ext):
                    stem = entry[: -len(ext)]
                    break
            if stem in (ALL, UNGROUPED) and kind == "group_vars":
                tree.group(stem)
            if stem not in known or entry.startswith("."):
                continue
            target = directory / entry
            try:
                files = sorted(p for p in target.iterdir() if p.is_file()) \
                    if target.is_dir() else [target]
            except OSError as exc:
                tree.problem(str(target), None, None, f"cannot read: {exc.strerror or exc}")
                continue
            for file in files:
                _apply_vars_file(file, kind, stem, inventory_dir, tree)


def _apply_vars_file(
    file: Path, kind: str, name: str, inventory_dir: Path, tree: InventoryTree
) -> None:
    source = str(file)
    host = name if kind == "host_vars" else None
    try:
        raw = file.read_bytes()
    except OSError as exc:
        tree.problem(source, host, None, f"cannot read: {exc.strerror}")
        return
    tree.contents.append((source, raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        tree.problem(source, host, None, f"not UTF-8 text (byte {exc.start})")
        return
    result = load_yaml(text)
    if result.error:
        tree.problem(source, host, None, result.error)
        return
    if result.data is None:
        return
    if not isinstance(result.data, dict):
        tree.problem(source, host, None, "must be a mapping of variable names to values")
        return
    prefix = "" if host else f"group {name}: "
    layer, priority = vars_layer(result.data, base_dir=inventory_dir, source=source, host=host,
                                 prefix=prefix, tree=tree)
    if host is not None:
        tree.hosts[name].layers.append(layer)
    else:
        tree.groups[name].layers.append(layer)
        if priority is not None:
            tree.groups[name].priority = priority


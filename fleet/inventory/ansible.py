"""Ansible inventory files (INI and YAML), parsed as Ansible parses them.

These loaders only record structure (groups, children, hosts) and each place's raw variables; a
host's variables are merged later with Ansible's precedence
(:mod:`fleet.inventory.ansible_precedence`) and read by :mod:`fleet.inventory.ansible_vars`. Each
place's variables are also checked on their own right away, so a bad group variable is reported
once, not once per host.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from pathlib import Path
from typing import Any

from fleet.inventory.tree import ALL, UNGROUPED, InventoryTree, RawVars
from fleet.inventory.vars_memo import vars_layer

MAX_RANGE_HOSTS = 100_000
MAX_LINE = 65_536
_MAX_DEPTH = 64
_RANGE_RE = re.compile(r"\[([0-9]+|[a-zA-Z]):([0-9]+|[a-zA-Z])(?::([0-9]+))?\]")
_SECTION_RE = re.compile(r"^\[([^\]\s:]+)(?::([A-Za-z]+))?\]\s*(?:[#;].*)?$")
_PASSWORD_VARS = frozenset({"ansible_password", "ansible_ssh_pass", "ansible_ssh_password",
                            "ansible_winrm_pass", "ansible_winrm_password"})


def is_template(value: Any, depth: int = 0) -> bool:
    """A text with ``{{ }}``/``{% %}``, or a mapping or list holding one."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return depth < 64 and any(is_template(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return depth < 64 and any(is_template(v, depth + 1) for v in value)
    return False


def raw_vars(
    variables: dict[str, Any], *, base_dir: Path, source: str, host: str | None, prefix: str,
    tree: InventoryTree, origin: int = 0,
) -> tuple[RawVars, int | None]:
    """Record one place's variables, checking those that need no other variable to be read."""
    templated = {k for k, v in variables.items() if is_template(v)}
    checkable = {k: v for k, v in variables.items() if k not in templated or k in _PASSWORD_VARS}
    before = len(tree.problems)
    _layer, priority = vars_layer(checkable, base_dir=base_dir, source=source, host=host,
                                  prefix=prefix, tree=tree, partial=True)
    broken = len(tree.problems) > before
    return RawVars(dict(variables), source, base_dir, broken=broken, origin=origin,
                   templated=bool(templated)), priority


def parse_ini_value(text: str) -> Any:
    """Ansible's INI value reading: a Python literal if it is one, else the text itself."""
    if _never_literal(text):
        return text
    return literal_or_text(text)


def literal_or_text(text: str) -> Any:
    """The full reading, without the shortcut for texts that cannot be literals."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return text
    if value is ... or isinstance(value, complex | bytes):
        return text
    if isinstance(value, tuple | set):
        return list(value)
    return value


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=:/@")
_DOTTED_DIGITS = frozenset("0123456789.")


def _never_literal(text: str) -> bool:
    """Texts ``ast.literal_eval`` refuses for sure, told apart cheaply (parsing is slow).

    A letter first and only name characters: a name (only True, False and None are literals),
    an attribute or a syntax error. Digits with two dots or more (an IPv4 address): a syntax
    error, as a number holds one dot at most."""
    if not text:
        return False
    if text[0].isascii() and text[0].isalpha():
        return text not in ("True", "False", "None") and _NAME_CHARS.issuperset(text)
    return text.count(".") >= 2 and _DOTTED_DIGITS.issuperset(text)


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
            group_vars.setdefault(section, {})[key.strip()] = parse_ini_value(value.strip())
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
        group_raw, priority = raw_vars(variables, base_dir=base_dir, source=source, host=None,
                                       prefix=f"[{group}:vars] ", tree=tree)
        node = tree.group(group)
        node.ansible_vars.append(group_raw)
        if priority is not None:
            node.priority = priority


def _split_words(line: str) -> list[str] | None:
    """Shell-like words, '#' starts a comment; None for unbalanced quotes."""
    if "'" not in line and '"' not in line and "\\" not in line:
        return line.split("#", 1)[0].split()  # shlex is slow; most lines need none of it
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return None


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
        variables[key] = parse_ini_value(value)
    if port is not None:
        variables.setdefault("ansible_port", int(port))
    raw: RawVars | None = None
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
            if raw is None:
                raw, _ = raw_vars(variables, base_dir=base_dir, source=source, host=name,
                                  prefix="", tree=tree)
            node.ansible_vars.append(raw)


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
                raw, _ = raw_vars({str(k): v for k, v in host_vars.items()}, base_dir=base_dir,
                                  source=source, host=host_name, prefix="", tree=tree)
                node.ansible_vars.append(raw)
    variables = body.get("vars")
    if variables is not None and not isinstance(variables, dict):
        tree.problem(source, None, f"{field}: vars", "must be a mapping")
    elif variables:
        group_raw, priority = raw_vars({str(k): v for k, v in variables.items()},
                                       base_dir=base_dir, source=source, host=None,
                                       prefix=f"{field}: ", tree=tree)
        tree.group(name).ansible_vars.append(group_raw)
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

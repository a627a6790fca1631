"""The merged, not yet resolved inventory: layers of settings attached to defaults, groups, hosts.

Every loader (arcfleet YAML, Ansible INI, Ansible YAML) adds to one :class:`InventoryTree`; several
``-i`` files add to the same tree in order, so a later file's layer wins and group membership is
the union. Resolution (:mod:`fleet.inventory.resolve`) then flattens the layers per host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleet.errors import Problem
from fleet.inventory.spec import LITERAL_SECRET

# Implicit Ansible groups: every host is in `all`; hosts in no other group are in `ungrouped`.
ALL = "all"
UNGROUPED = "ungrouped"
# Hosts that share groups and values share the work on them (fleet.inventory.vars_memo,
# ansible_host, resolve). False takes the long way for every host: the shortcut tests compare.
MEMOIZE = True


@dataclass
class Layer:
    """Settings one place in one file sets (nested dicts in the arcfleet spec's shape)."""

    values: dict[str, Any]
    source: str
    # True when this layer had errors: hosts using it skip the checks that would only repeat them.
    broken: bool = False


@dataclass
class RawVars:
    """Ansible variables as one place wrote them; merged per host as Ansible does, then read."""

    values: dict[str, Any]
    source: str
    # The directory relative paths in these variables are anchored at (the inventory's).
    base_dir: Path
    # True when checking these variables on their own found errors (already reported).
    broken: bool = False
    # For group_vars/host_vars: index of the inventory directory they belong to.
    origin: int = 0
    # Whether any value holds a template (see has_template); None until asked.
    templated: bool | None = field(default=None, compare=False, repr=False)

    def has_template(self) -> bool:
        """True when some value is or holds a ``{{ }}``/``{% %}`` text."""
        if self.templated is None:
            from fleet.inventory.ansible import is_template

            self.templated = any(is_template(value) for value in self.values.values())
        return self.templated


@dataclass
class GroupVars:
    """What the places of one list of groups give every host of those groups, merged."""

    places: list[RawVars]
    merged: dict[str, Any]
    sources: dict[str, str]
    broken: bool
    templated: bool


@dataclass
class GroupNode:
    name: str
    layers: list[Layer] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    priority: int = 1
    # False for a name only referenced (arcfleet format requires groups to be defined).
    declared: bool = False
    # Ansible: the inventory file's group variables, then group_vars/ files.
    ansible_vars: list[RawVars] = field(default_factory=list)
    vars_files: list[RawVars] = field(default_factory=list)
    # The names in `hosts`, for a membership test that stays fast with 100,000 hosts.
    host_set: set[str] = field(default_factory=set, repr=False)


@dataclass
class HostNode:
    name: str
    source: str
    layers: list[Layer] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    # Came from an Ansible inventory: problems then also name the Ansible variable.
    ansible: bool = False
    # Ansible: the inventory file's host variables, then host_vars/ files.
    ansible_vars: list[RawVars] = field(default_factory=list)
    vars_files: list[RawVars] = field(default_factory=list)


@dataclass
class Reference:
    """A name a file uses that must be defined somewhere (arcfleet format only)."""

    kind: str  # "host" or "group"
    name: str
    source: str
    host: str | None
    field: str


@dataclass
class InventoryTree:
    defaults: list[Layer] = field(default_factory=list)
    groups: dict[str, GroupNode] = field(default_factory=dict)
    hosts: dict[str, HostNode] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # Bytes of every file read (inventory, group_vars, host_vars), in reading order.
    contents: list[tuple[str, bytes]] = field(default_factory=list)
    # Ansible's hash_behaviour (ansible.cfg): "replace" (default) or "merge".
    hash_behaviour: str = "replace"
    # ~/.ssh/config, which OpenSSH (and so Ansible's ssh connection) applies to Ansible hosts.
    ssh_config: Path | None = None
    # Ansible hosts with the same variables from the same places share one settings layer.
    layer_cache: dict[tuple[object, ...], Layer | None] = field(default_factory=dict)
    # Variable sets that converted without a problem (fleet.inventory.vars_memo).
    vars_cache: dict[tuple[object, ...], tuple[Layer, int | None, str | None]] = field(
        default_factory=dict)
    # ansible.cfg settings as the variables they stand in for: below everything else.
    ansible_defaults: list[RawVars] = field(default_factory=list)
    memoize: bool = field(default_factory=lambda: MEMOIZE)
    # Per list of groups (sort_groups order): their places' variables merged once.
    group_vars_cache: dict[tuple[str, ...], GroupVars] = field(default_factory=dict)
    # vars_memo.places_key -> the frozen variables it stands for.
    frozen_cache: dict[tuple[object, ...], tuple[object, ...]] = field(default_factory=dict)
    # Per list of variable names (in order): the names a host's settings read.
    wanted_cache: dict[tuple[str, ...], set[str]] = field(default_factory=dict)

    def group(self, name: str, *, declare: bool = True) -> GroupNode:
        node = self.groups.get(name)
        if node is None:
            node = self.groups[name] = GroupNode(name)
        node.declared = node.declared or declare
        return node

    def host(self, name: str, source: str, *, ansible: bool = False) -> HostNode:
        node = self.hosts.get(name)
        if node is None:
            node = self.hosts[name] = HostNode(name, source, ansible=ansible)
        else:
            node.source = source
            node.ansible = node.ansible or ansible
        return node

    def add_member(self, group: str, host: str) -> None:
        node = self.group(group)
        if len(node.hosts) != len(node.host_set):
            node.host_set = set(node.hosts)  # someone appended to the list directly
        if host not in node.host_set:
            node.hosts.append(host)
            node.host_set.add(host)
        host_node = self.hosts[host]
        if group not in host_node.groups:
            host_node.groups.append(group)

    def add_child(self, parent: str, child: str, *, declare: bool = True) -> None:
        node = self.group(parent)
        self.group(child, declare=declare)
        if child not in node.children:
            node.children.append(child)

    def problem(self, source: str, host: str | None, field_name: str | None, message: str) -> None:
        self.problems.append(Problem(file=source, host=host, field=field_name, message=message))


def error_message(err: Any) -> str:
    """A pydantic error as one line, without the input value (it might be a secret)."""
    kind = err.get("type", "")
    loc = [str(part) for part in err.get("loc", ())]
    if kind == "extra_forbidden":
        name = loc[-1] if loc else ""
        if any(word in name.lower() for word in ("pass", "secret", "token")):
            return f"unknown field; {LITERAL_SECRET}"
        return "unknown field (a typo?)"
    message = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def validation_problems(
    exc: ValidationError, source: str, host: str | None, prefix: str, labels: dict[str, str] | None
) -> list[Problem]:
    """Turn a pydantic error into problems; ``labels`` maps spec paths to Ansible variables."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in err["loc"])
        shown = path
        if labels is not None:
            shown = _label_for(path, labels)
        full = f"{prefix}{shown}" if shown else prefix.rstrip(".")
        out.append(Problem(file=source, host=host, field=full or None, message=error_message(err)))
    return out


def _label_for(path: str, labels: dict[str, str]) -> str:
    probe = path
    while probe:
        if probe in labels:
            return labels[probe]
        probe = probe.rpartition(".")[0]
    return path


def printable(text: str) -> str:
    """Control characters (ANSI escapes, NUL, CR) shown escaped, so a hostile inventory cannot
    drive the terminal through an error message."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


# The same mistake on thousands of hosts is reported for this many, then counted.
SAME_PROBLEM_SHOWN = 10


def clean_problems(problems: list[Problem]) -> list[Problem]:
    """Problems made safe to print, duplicates dropped, order kept; one mistake repeated on many
    hosts (a missing default) is shown for the first hosts and then summarised."""
    seen: set[Problem] = set()
    out: list[Problem] = []
    repeats: dict[tuple[str, str | None, str], int] = {}
    for raw in problems:
        problem = Problem(
            file=printable(raw.file),
            host=printable(raw.host) if raw.host is not None else None,
            field=printable(raw.field) if raw.field is not None else None,
            message=printable(raw.message),
        )
        if problem in seen:
            continue
        seen.add(problem)
        if problem.host is not None:
            key = (problem.file, problem.field, problem.message)
            repeats[key] = repeats.get(key, 0) + 1
            if repeats[key] > SAME_PROBLEM_SHOWN:
                continue
        out.append(problem)
    for (file, field_name, message), count in repeats.items():
        if count > SAME_PROBLEM_SHOWN:
            out.append(Problem(file, None, field_name, f"{message} (and on "
                               f"{count - SAME_PROBLEM_SHOWN} more hosts)"))
    return out

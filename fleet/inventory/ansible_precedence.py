"""``group_vars/``, ``host_vars/`` and a host's variables merged with Ansible's precedence.

Ansible (``VariableManager.get_vars``, default ``precedence`` setting) merges, later wins:

1. the inventory files' variables of group ``all``;
2. the inventory files' variables of the host's other groups, sorted by depth, then
   ``ansible_group_priority``, then name (``sort_groups``);
3. ``group_vars/all`` of each inventory directory, in ``-i`` order;
4. ``group_vars/<group>`` of each inventory directory, groups in the order of 2;
5. the inventory files' host variables;
6. ``host_vars/<host>`` of each inventory directory.

Merging replaces a variable as a whole (``hash_behaviour = replace``, Ansible's default), so a
host's ``arc_tags`` replaces its group's; ``hash_behaviour = merge`` in ansible.cfg merges
mappings recursively, in both Ansible and arcfleet.

Vars files are found as Ansible's ``DataLoader.find_vars_files`` finds them: ``<name>`` (a
directory of files, read recursively in name order, or a file), else ``<name>.yml``,
``<name>.yaml``, ``<name>.json``, first match only; in a directory, hidden files, backups (``~``)
and files with any other extension are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fleet.inventory.ansible import raw_vars
from fleet.inventory.tree import ALL, UNGROUPED, HostNode, InventoryTree, RawVars

_VARS_EXTENSIONS = (".yml", ".yaml", ".json")
_MAX_FILES = 10_000


def combine(base: dict[str, Any], extra: dict[str, Any], *, merge: bool) -> dict[str, Any]:
    """Ansible's ``combine_vars``: replace top-level keys, or merge mappings recursively."""
    if not merge:
        return {**base, **extra}
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = combine(current, value, merge=True)
        else:
            out[key] = value
    return out


def _dir_files(directory: Path, depth: int = 0) -> list[Path]:
    found: list[Path] = []
    if depth > 16:
        return found
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return found
    for name in names:
        if name.startswith(".") or name.endswith("~"):
            continue
        path = directory / name
        extension = os.path.splitext(name)[1]
        if path.is_dir() and not extension:
            found.extend(_dir_files(path, depth + 1))
        elif path.is_file() and (not extension or extension in _VARS_EXTENSIONS):
            found.append(path)
    return found[:_MAX_FILES]


def find_vars_files(directory: Path, name: str) -> list[Path]:
    base = directory / name
    for candidate in (base, *(Path(f"{base}{ext}") for ext in _VARS_EXTENSIONS)):
        if candidate.is_dir():
            return _dir_files(candidate)
        if candidate.exists():
            return [candidate]
    return []


def load_vars_dirs(directories: list[Path], tree: InventoryTree) -> None:
    """Attach ``group_vars/`` and ``host_vars/`` files of each inventory directory."""
    for origin, directory in enumerate(directories):
        for kind in ("group_vars", "host_vars"):
            folder = directory / kind
            if not folder.is_dir():
                continue
            if kind == "group_vars":
                tree.group(ALL)  # implicit in Ansible: always there
                tree.group(UNGROUPED)
            names = list(tree.groups) if kind == "group_vars" else list(tree.hosts)
            for name in names:
                node = tree.groups[name] if kind == "group_vars" else tree.hosts[name]
                for file in find_vars_files(folder, name):
                    raw = _read_vars_file(file, kind, name, directory, origin, tree)
                    if raw is not None:
                        node.vars_files.append(raw)


def _read_vars_file(
    file: Path, kind: str, name: str, inventory_dir: Path, origin: int, tree: InventoryTree
) -> RawVars | None:
    source = str(file)
    host = name if kind == "host_vars" else None
    try:
        raw = file.read_bytes()
    except OSError as exc:
        tree.problem(source, host, None, f"cannot read: {exc.strerror}")
        return None
    tree.contents.append((source, raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        tree.problem(source, host, None, f"not UTF-8 text (byte {exc.start})")
        return None
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        tree.problem(source, host, None, "is vault-encrypted; read it with "
                     "--inventory-engine ansible (and --vault-password-file)")
        return None
    from fleet.inventory.yamlio import load_yaml  # PyYAML only when there are vars files

    result = load_yaml(text)
    if result.error:
        tree.problem(source, host, None, result.error)
        return None
    if result.data is None:
        return None
    if not isinstance(result.data, dict):
        tree.problem(source, host, None, "must be a mapping of variable names to values")
        return None
    prefix = "" if host else f"group {name}: "
    variables = {str(k): v for k, v in result.data.items()}
    vars_raw, priority = raw_vars(variables, base_dir=inventory_dir, source=source, host=host,
                                  prefix=prefix, tree=tree, origin=origin)
    # ansible_group_priority only orders groups when an inventory file sets it.
    del priority
    return vars_raw


def _without_priority(places: list[RawVars]) -> list[RawVars]:
    out: list[RawVars] = []
    for raw in places:
        if "ansible_group_priority" in raw.values:
            values = {k: v for k, v in raw.values.items() if k != "ansible_group_priority"}
            raw = RawVars(values, raw.source, raw.base_dir, raw.broken, raw.origin)
        out.append(raw)
    return out


def group_places(tree: InventoryTree, groups: Iterable[str]) -> list[RawVars]:
    """Every place that gives variables to the hosts of ``groups`` (steps 1-4 above, with
    ansible.cfg's settings first), in precedence order: the same for each host of those groups."""
    root = tree.groups.get(ALL)
    ordered = [tree.groups[g] for g in groups if g != ALL]
    places: list[RawVars] = list(tree.ansible_defaults)
    # An inventory file's ansible_group_priority orders groups; it is no variable in Ansible.
    if root is not None:
        places.extend(_without_priority(root.ansible_vars))
    for group in ordered:
        places.extend(_without_priority(group.ansible_vars))
    # group_vars/all of every inventory directory, then every group's, directory by directory.
    if root is not None:
        places.extend(sorted(root.vars_files, key=lambda raw: raw.origin))
    origins = sorted({raw.origin for g in ordered for raw in g.vars_files})
    for origin in origins:
        for origin_group in ordered:
            places.extend(raw for raw in origin_group.vars_files if raw.origin == origin)
    return places


def own_places(node: HostNode) -> list[RawVars]:
    """The host's own variables (steps 5 and 6 above), in precedence order."""
    return [*node.ansible_vars, *sorted(node.vars_files, key=lambda raw: raw.origin)]


def merge_places(
    places: Iterable[RawVars], *, merge: bool, merged: dict[str, Any] | None = None,
    sources: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """``places`` merged in order over ``merged`` (neither input is modified), and which file
    set each variable."""
    merged = {} if merged is None else merged
    sources = {} if sources is None else dict(sources)
    for raw in places:
        merged = combine(merged, raw.values, merge=merge)
        for key in raw.values:
            sources[key] = raw.source
    return merged, sources


def host_variables(
    tree: InventoryTree, host: str, groups: Iterable[str]
) -> tuple[dict[str, Any], dict[str, str], list[RawVars]] | None:
    """The host's merged Ansible variables, which file set each, and every contributing place.

    ``groups`` are the host's groups in ``sort_groups`` order, without ``all``. None when the
    host has no Ansible variables at all.
    """
    node = tree.hosts[host]
    places = group_places(tree, groups) + own_places(node)
    if len(places) == len(tree.ansible_defaults) and not node.ansible:
        return None
    merged, sources = merge_places(places, merge=tree.hash_behaviour == "merge")
    return merged, sources, places

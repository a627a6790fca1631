"""Loader for the arcfleet YAML inventory format (see docs/inventory.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleet.inventory.spec import GroupSpec, HostSpec, SettingsSpec, layer_of
from fleet.inventory.tree import (
    ALL,
    UNGROUPED,
    InventoryTree,
    Layer,
    Reference,
    validation_problems,
)

_TOP_KEYS = {"arcfleet", "defaults", "groups", "hosts"}


def load_arcfleet(
    data: dict[Any, Any], path: Path, source: str, tree: InventoryTree,
    duplicates: list[tuple[str, int]],
) -> None:
    context = {"base_dir": path.resolve().parent}
    if data.get("arcfleet") != 1 or isinstance(data.get("arcfleet"), bool):
        tree.problem(source, None, "arcfleet", "format marker must be `arcfleet: 1`")
    for key in data:
        if key not in _TOP_KEYS:
            tree.problem(source, None, str(key), "unknown top-level key; expected arcfleet, "
                         "defaults, groups, hosts")

    hosts_raw = _mapping(data.get("hosts"), "hosts", source, tree)
    groups_raw = _mapping(data.get("groups"), "groups", source, tree)
    host_names = {str(name) for name in hosts_raw}
    for key, line in duplicates:
        if key in host_names:
            tree.problem(source, key, "hosts", f"host defined twice in this file (line {line})")
        else:
            tree.problem(source, None, key, f"key appears twice in one mapping (line {line})")

    defaults = data.get("defaults")
    if defaults is not None:
        try:
            spec = SettingsSpec.model_validate(defaults, context=context)
            tree.defaults.append(Layer(layer_of(spec), source))
        except ValidationError as exc:
            tree.problems.extend(validation_problems(exc, source, None, "defaults.", None))
            tree.defaults.append(Layer({}, source, broken=True))

    for raw_name, raw in groups_raw.items():
        name = str(raw_name)
        field = f"groups.{name}"
        if name in (ALL, UNGROUPED):
            tree.problem(source, None, field, f"'{name}' is implicit; put settings for every "
                         "host under defaults")
            continue
        node = tree.group(name)
        try:
            group = GroupSpec.model_validate(raw or {}, context=context)
        except ValidationError as exc:
            tree.problems.extend(validation_problems(exc, source, None, f"{field}.", None))
            node.layers.append(Layer({}, source, broken=True))
            continue
        node.layers.append(Layer(layer_of(group), source))
        for child in group.children:
            tree.references.append(Reference("group", child, source, None, f"{field}.children"))
            tree.add_child(name, child, declare=False)
        for member in group.hosts:
            tree.references.append(Reference("host", member, source, None, f"{field}.hosts"))
            # Membership is applied after all files are read: the host may come from another file.
            if member not in node.hosts:
                node.hosts.append(member)

    for raw_name, raw in hosts_raw.items():
        name = str(raw_name)
        host_node = tree.host(name, source)
        try:
            host = HostSpec.model_validate(raw or {}, context=context)
        except ValidationError as exc:
            tree.problems.extend(validation_problems(exc, source, name, "", None))
            host_node.layers.append(Layer({}, source, broken=True))
            continue
        values = layer_of(host)
        if host.address is not None:
            values["address"] = host.address
        host_node.layers.append(Layer(values, source))
        for group_name in host.groups:
            tree.references.append(Reference("group", group_name, source, name, "groups"))
            tree.group(group_name, declare=False)
            if group_name not in host_node.groups:
                host_node.groups.append(group_name)


def _mapping(value: Any, key: str, source: str, tree: InventoryTree) -> dict[Any, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    tree.problem(source, None, key, "must be a mapping of names to settings")
    return {}

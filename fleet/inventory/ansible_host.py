"""One Ansible host's settings layer: merged variables (Ansible's precedence), rendered, read."""

from __future__ import annotations

from pathlib import Path

from fleet.inventory.ansible_precedence import host_variables
from fleet.inventory.ansible_vars import ARC_VARS, read_variables, vars_layer
from fleet.inventory.templating import TemplateProblem, render_variables
from fleet.inventory.tree import InventoryTree, Layer


def ansible_host_layer(tree: InventoryTree, host: str, groups: list[str]) -> Layer | None:
    """The host's layer; None when its variables have errors (they are reported)."""
    found = host_variables(tree, host, groups)
    if found is None:
        return Layer({}, tree.hosts[host].source)
    variables, sources, places = found
    if any(raw.broken for raw in places):
        return None  # already reported where the bad value is
    wanted = {k for k in variables if k.startswith("arc_") or k in read_variables()}
    wanted |= set(ARC_VARS) & set(variables)
    try:
        rendered = render_variables(variables, host=host, groups=groups, wanted=wanted)
    except TemplateProblem as exc:
        tree.problem(sources.get(exc.var, tree.hosts[host].source), host, exc.var, exc.message)
        return None
    node = tree.hosts[host]
    base_dir = node.ansible_vars[0].base_dir if node.ansible_vars else \
        Path(node.source).resolve().parent
    layer, _priority = vars_layer(rendered, base_dir=base_dir, source=node.source, host=host,
                                  prefix="", tree=tree, labels_source=sources,
                                  ssh_config=tree.ssh_config)
    if layer.broken:
        return None
    return layer

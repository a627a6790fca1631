"""One Ansible host's settings layer: merged variables (Ansible's precedence), rendered, read."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fleet.inventory.ansible import is_template
from fleet.inventory.ansible_precedence import host_variables
from fleet.inventory.ansible_vars import ARC_VARS, read_variables
from fleet.inventory.templating import TemplateProblem, render_variables
from fleet.inventory.tree import InventoryTree, Layer
from fleet.inventory.vars_memo import vars_layer


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
    node = tree.hosts[host]
    base_dir = node.ansible_vars[0].base_dir if node.ansible_vars else \
        _parent(node.source)
    # Hosts of one range or group usually share every variable: read them once. Templates and
    # ~/.ssh/config (Host blocks) depend on the host's name, so those hosts are read each.
    key: tuple[object, ...] | None = None
    templated = any(is_template(variables[k]) for k in wanted)
    if tree.ssh_config is None and not templated:
        key = (base_dir, *(id(raw) for raw in places))
        if key in tree.layer_cache:
            return tree.layer_cache[key]
    rendered = variables  # nothing to render: read as they are (render_variables would copy)
    if templated:
        try:
            rendered = render_variables(variables, host=host, groups=groups, wanted=wanted)
        except TemplateProblem as exc:
            tree.problem(sources.get(exc.var, tree.hosts[host].source), host, exc.var,
                         exc.message)
            return None
    layer, _priority = vars_layer(rendered, base_dir=base_dir, source=node.source, host=host,
                                  prefix="", tree=tree, labels_source=sources,
                                  ssh_config=tree.ssh_config)
    result = None if layer.broken else layer
    if key is not None:
        tree.layer_cache[key] = result
    return result


@cache
def _parent(source: str) -> Path:
    return Path(source).resolve().parent

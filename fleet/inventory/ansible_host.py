"""One Ansible host's settings layer: merged variables (Ansible's precedence), rendered, read.

Thousands of hosts share their groups and most values: with ``tree.memoize`` (the default), the
groups' variables are merged once per list of groups (:class:`GroupVars`), the names a host's
settings read are worked out once per list of variable names, and the conversion is remembered
by the groups' merge plus the host's own values (:mod:`fleet.inventory.vars_memo`). Each gives
what the long way (``host_variables``, every check per host) gives:
tests/test_inventory_fastpaths.py compares the two on random inventories.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fleet.inventory.ansible import is_template
from fleet.inventory.ansible_precedence import (
    group_places,
    host_variables,
    merge_places,
    own_places,
)
from fleet.inventory.ansible_vars import ARC_VARS, read_variables
from fleet.inventory.templating import TemplateProblem, render_variables
from fleet.inventory.tree import GroupVars, InventoryTree, Layer, RawVars
from fleet.inventory.vars_memo import places_key, vars_layer

_Found = tuple[dict[str, Any], dict[str, str], list[RawVars]]


def ansible_host_layer(tree: InventoryTree, host: str, groups: list[str]) -> Layer | None:
    """The host's layer; None when its variables have errors (they are reported)."""
    node = tree.hosts[host]
    shared: GroupVars | None = None
    own: list[RawVars] = []
    if tree.memoize:
        shared = _group_vars(tree, groups)
        own = own_places(node)
        found = _memo_host_variables(tree, shared, own, node.ansible)
    else:
        found = host_variables(tree, host, groups)
    if found is None:
        return Layer({}, node.source)
    variables, sources, places = found
    if any(raw.broken for raw in (places if shared is None or shared.broken else own)):
        return None  # already reported where the bad value is
    wanted = _wanted(tree, variables)
    base_dir = node.ansible_vars[0].base_dir if node.ansible_vars else \
        _parent(node.source)
    # Hosts of one range or group usually share every variable: read them once. Templates and
    # ~/.ssh/config (Host blocks) depend on the host's name, so those hosts are read each.
    key: tuple[object, ...] | None = None
    if shared is not None and not shared.templated and not any(r.has_template() for r in own):
        templated = False  # no place holds a template, so no merged value does
    else:
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
    # The groups' merge (one object per list of groups, kept by the tree) and the host's own
    # values fix the merged variables: the conversion's memo needs no freezing of the rest.
    memo_key = places_key(shared, own) if shared is not None and not templated else None
    layer, _priority = vars_layer(rendered, base_dir=base_dir, source=node.source, host=host,
                                  prefix="", tree=tree, labels_source=sources,
                                  ssh_config=tree.ssh_config, key=memo_key)
    result = None if layer.broken else layer
    if key is not None:
        tree.layer_cache[key] = result
    return result


def _group_vars(tree: InventoryTree, groups: list[str]) -> GroupVars:
    names = tuple(groups)
    found = tree.group_vars_cache.get(names)
    if found is None:
        places = group_places(tree, names)
        merged, sources = merge_places(places, merge=tree.hash_behaviour == "merge")
        found = tree.group_vars_cache[names] = GroupVars(
            places, merged, sources, broken=any(raw.broken for raw in places),
            templated=any(raw.has_template() for raw in places))
    return found


def _memo_host_variables(
    tree: InventoryTree, shared: GroupVars, own: list[RawVars], ansible: bool
) -> _Found | None:
    """:func:`host_variables` from the groups' merge plus the host's own places."""
    if len(shared.places) == len(tree.ansible_defaults) and not own and not ansible:
        return None
    merged, sources = merge_places(own, merge=tree.hash_behaviour == "merge",
                                   merged=shared.merged, sources=shared.sources)
    if merged is shared.merged:
        merged = dict(merged)  # the caller's to keep; the shared one stays as it is
    return merged, sources, [*shared.places, *own]


def _wanted(tree: InventoryTree, variables: dict[str, Any]) -> set[str]:
    """The variables a host's settings read: ``arc_*`` and those the conversion reads.

    Remembered per list of names as the very set the long way builds from them (same
    insertions, same iteration order), so templates render in the same order. Never modified."""
    names = tuple(variables) if tree.memoize else None
    found = tree.wanted_cache.get(names) if names is not None else None
    if found is None:
        wanted = {k for k in variables if k.startswith("arc_") or k in read_variables()}
        wanted |= set(ARC_VARS) & set(variables)
        found = wanted
        if names is not None:
            tree.wanted_cache[names] = found
    return found


@cache
def _parent(source: str) -> Path:
    return Path(source).resolve().parent

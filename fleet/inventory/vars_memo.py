"""One conversion per distinct set of variables: :func:`vars_layer`, remembered per tree.

Thousands of hosts of one group carry the same variables but for their address
(``ansible_host=10.0.0.7``): reading and validating each host's set anew is most of the time an
inventory takes to load. A set that converts without a problem is remembered by its content
(types included, so ``1`` and ``True`` stay apart), with the address's value left out of the
key: the address is the only value that goes through unchanged (checked on its own by
:func:`fleet.inventory.rules.check_plain_text`, as ``HostSpec`` does). Anything that could make
the result depend on more than the key (a problem to report, a vault secret, SSH options or
~/.ssh/config, which read the address) is converted every time, as before.

A host's merged variables are frozen once per :func:`places_key`: the groups' merge (one object
per list of groups) plus the host's own values, frozen as above. Either fixes the merged set but
for its addresses, as merging is a function of the places.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleet.inventory import rules
from fleet.inventory.ansible_vars import text_of
from fleet.inventory.ansible_vars import vars_layer as convert_layer
from fleet.inventory.tree import GroupVars, InventoryTree, Layer, RawVars

_ADDRESS_VARS = frozenset({"ansible_host", "ansible_ssh_host", "ansible_winrm_host",
                           "ansible_psrp_host"})
_SSH_ARGS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
_PLAIN = (str, bool, int, float)
_ADDRESS = object()  # stands in the key for an address variable's text
_MAX_DEPTH = 16


def _freeze(value: Any, depth: int = 0) -> object:
    """A hashable image of a plain value, its type included; raises TypeError otherwise."""
    if value is None or type(value) in _PLAIN:
        return (type(value), value)
    if depth < _MAX_DEPTH and type(value) is dict:
        return (dict, tuple((k, _freeze(v, depth + 1)) for k, v in value.items()))
    if depth < _MAX_DEPTH and type(value) is list:
        return (list, tuple(_freeze(v, depth + 1) for v in value))
    raise TypeError("not a plain value")


def _frozen_values(variables: Mapping[str, Any]) -> tuple[object, ...] | None:
    try:
        return tuple((name, _ADDRESS if name in _ADDRESS_VARS and type(value) is str
                      else _freeze(value)) for name, value in variables.items())
    except TypeError:
        return None


def places_key(shared: GroupVars, own: list[RawVars]) -> tuple[object, ...] | None:
    """A key standing for the variables ``own`` merged over ``shared.merged`` (see above); None
    when a value cannot be frozen. ``shared`` must live as long as the memo (the tree's)."""
    frozen = []
    for raw in own:
        values = _frozen_values(raw.values)
        if values is None:
            return None
        frozen.append(values)
    return ("places", id(shared), *frozen)


def vars_layer(
    variables: Mapping[str, Any], *, base_dir: Path, source: str, host: str | None,
    prefix: str, tree: InventoryTree, labels_source: Mapping[str, str] | None = None,
    partial: bool = False, ssh_config: Path | None = None, key: tuple[object, ...] | None = None,
) -> tuple[Layer, int | None]:
    """:func:`fleet.inventory.ansible_vars.vars_layer`, once per distinct set of variables.

    ``key``: a :func:`places_key` for ``variables``, else they are frozen here."""
    if not tree.memoize or (ssh_config is not None and not partial) or \
            variables.get(_SSH_ARGS[0]) is not None or variables.get(_SSH_ARGS[1]) is not None:
        key = None
    elif key is None:
        key = _frozen_values(variables)
    else:
        # Equal places keys mean equal merged variables (addresses aside), so equal frozen
        # ones: freeze once per places key, and share the memo with other groups' hosts.
        places = key
        key = tree.frozen_cache.get(places)
        if key is None:
            key = _frozen_values(variables)
            if key is not None:
                tree.frozen_cache[places] = key
    if key is not None:
        full_key = (key, base_dir, source, host is None, partial)
        found = tree.vars_cache.get(full_key)
        if found is not None:
            layer, priority, address_var = found
            if address_var is None:
                return layer, priority
            address = text_of(variables[address_var])
            if rules.check_plain_text(address, "address") is None:
                return Layer({**layer.values, "address": address}, source), priority
    before = len(tree.problems)
    layer, priority = convert_layer(
        variables, base_dir=base_dir, source=source, host=host, prefix=prefix, tree=tree,
        labels_source=labels_source, partial=partial, ssh_config=ssh_config)
    if key is not None and not layer.broken and len(tree.problems) == before:
        address_var = None
        if "address" in layer.values:
            # Which variable gave the address: the one whose text it is (the last one set).
            named = [n for n in variables if n in _ADDRESS_VARS and type(variables[n]) is str
                     and variables[n] == layer.values["address"]]
            if len(named) != 1:
                return layer, priority
            address_var = named[0]
        tree.vars_cache[(key, base_dir, source, host is None, partial)] = (
            layer, priority, address_var)
    return layer, priority

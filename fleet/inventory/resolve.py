"""Flatten an :class:`InventoryTree` into :class:`ResolvedHost` objects and check the result.

Order of application, later wins:
  defaults -> groups (by depth from the root, then ``ansible_group_priority``, then name)
  -> host -> AZURE_* environment (only fills what is still empty) -> command-line overrides.
ssh/winrm/azure blocks merge key by key and ``azure.tags`` merge; a service principal and a secret
reference are replaced as a whole (mixing one group's secret with another's certificate would
make a credential nobody wrote).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from fleet.errors import Problem
from fleet.inventory import rules
from fleet.inventory.ansible_host import ansible_host_layer
from fleet.inventory.extras import missing_extra_message
from fleet.inventory.model import (
    Cloud,
    OsFamily,
    ResolvedHost,
    SshSettings,
    Transport,
    WinrmSettings,
)
from fleet.inventory.regions import cloud_of
from fleet.inventory.tree import ALL, UNGROUPED, InventoryTree, Layer, error_message

ENVIRONMENT = "<environment>"
_REPLACED_WHOLE = frozenset({"service_principal", "password", "secret"})
# Post-merge problems name the Ansible variable too, for hosts from Ansible inventories.
_ANSIBLE_NAMES = {
    "ssh.user": "ansible_user",
    "winrm.user": "ansible_user",
    "winrm.password": "arc_winrm_password_env",
    "winrm.auth": "ansible_winrm_transport",
    "winrm.cert_validation": "ansible_winrm_server_cert_validation",
    "winrm.ca_file": "ansible_winrm_ca_trust_path",
    "transport": "ansible_connection",
    "os": "arc_os",
    "address": "ansible_host",
    "azure.tenant_id": "arc_tenant_id",
    "azure.subscription_id": "arc_subscription_id",
    "azure.resource_group": "arc_resource_group",
    "azure.location": "arc_location",
    "azure.resource_name": "arc_resource_name",
    "azure.service_principal": "arc_sp_client_id",
}
_REQUIRED_AZURE = ("tenant_id", "subscription_id", "resource_group", "location")


def merge_layer(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``layer`` over ``base``; neither input is modified."""
    out = dict(base)
    for key, value in layer.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and key not in _REPLACED_WHOLE:
            out[key] = merge_layer(current, value)
        else:
            out[key] = value
    return out


def derive_resource_name(host_name: str) -> str:
    """The Azure resource name for a host without one: the name itself if valid, else the first
    DNS label of a FQDN, or an IP address with its separators turned into hyphens."""
    if rules.check_resource_name(host_name) is None:
        return host_name
    if not _maybe_ip(host_name) or not _is_ip(host_name):
        return host_name.split(".", 1)[0] if "." in host_name else host_name
    return re.sub(r"[.:]+", "-", host_name).strip("-")


_IPV4_CHARS = frozenset("0123456789.")


def _maybe_ip(text: str) -> bool:
    """False for a text ``ipaddress.ip_address`` refuses for sure, told apart cheaply (a refusal
    raises, which is slow): without a colon only an IPv4 address, digits and dots, can parse."""
    return ":" in text or _IPV4_CHARS.issuperset(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass
class EnvironmentFallback:
    """What azure-identity's EnvironmentCredential variables contribute, read once per load."""

    tenant_id: str | None = None
    subscription_id: str | None = None
    service_principal: dict[str, Any] | None = None

    @classmethod
    def read(cls, env: Mapping[str, str], problems: list[Problem]) -> EnvironmentFallback:
        found = cls()
        for var, attr in (("AZURE_TENANT_ID", "tenant_id"),
                          ("AZURE_SUBSCRIPTION_ID", "subscription_id")):
            value = env.get(var, "").strip()
            if not value:
                continue
            message = rules.check_guid(value)
            if message:
                problems.append(Problem(ENVIRONMENT, None, var, message))
            else:
                setattr(found, attr, value)
        client_id = env.get("AZURE_CLIENT_ID", "").strip()
        if client_id:
            message = rules.check_guid(client_id)
            if message:
                problems.append(Problem(ENVIRONMENT, None, "AZURE_CLIENT_ID", message))
            elif env.get("AZURE_CLIENT_SECRET"):
                found.service_principal = {"client_id": client_id,
                                           "secret": {"env": "AZURE_CLIENT_SECRET"}}
            elif env.get("AZURE_CLIENT_CERTIFICATE_PATH", "").strip():
                found.service_principal = {
                    "client_id": client_id,
                    "certificate_file": env["AZURE_CLIENT_CERTIFICATE_PATH"].strip(),
                }
        return found


@dataclass(frozen=True)
class _Plan:
    """What a host's groups decide: the settings layers they give (defaults first), the
    groups its Ansible variables come from, and the groups it is in."""

    layers: tuple[Layer, ...]
    ansible_groups: tuple[str, ...]
    groups: tuple[str, ...]


_SCALARS = frozenset({str, bool, int, float, type(None), Transport, OsFamily, Cloud})


def _values_key(values: dict[str, Any]) -> tuple[object, ...] | None:
    """What a host's checks read but its name and address: each scalar value with its type, and
    each block (``ssh``, ``winrm``, ``azure``) by identity. Blocks are the layers' own dicts,
    shared by every host they apply to and never changed while hosts are built (building
    copies them); the memo keeps them alive, so an equal id is the same dict. None when a
    value is neither."""
    key: list[object] = []
    for name, value in values.items():
        kind = type(value)
        if name == "address":
            continue
        if kind is dict:
            key.append((name, id(value)))
        elif kind in _SCALARS:
            key.append((name, kind, value))
        else:
            return None
    return tuple(key)


@dataclass(frozen=True)
class _Checked:
    """What a host's values alone decide, from a host built the long way without a problem
    (:meth:`Resolver._build_checked`); :meth:`build` adds what the name decides."""

    transport: Transport
    os_family: OsFamily
    port_default: int
    ssh: SshSettings
    winrm: WinrmSettings
    azure: dict[str, Any]  # as given (validated per host), but a name derived from the host's
    derived_name: bool
    blocks: tuple[dict[str, Any], ...]  # kept alive for _values_key's ids

    def build(
        self, name: str, source: str, values: dict[str, Any], groups: tuple[str, ...],
    ) -> ResolvedHost | None:
        """The host; None where the long way would report a problem (it then runs)."""
        if rules.check_plain_text(name, "host name") is not None:
            return None
        azure = self.azure
        if self.derived_name:
            derived = derive_resource_name(name)
            if rules.check_resource_name(derived) is not None:
                return None
            azure = {**azure, "resource_name": derived}
        try:
            # ssh and winrm were validated from the same values: frozen models, shared as they are.
            return ResolvedHost.model_validate(_host_fields(
                name, source, values, groups, self.port_default, self.transport, self.os_family,
                self.ssh, self.winrm, azure))
        except ValidationError:
            return None


def _host_fields(
    name: str, source: str, values: dict[str, Any], groups: tuple[str, ...], default_port: int,
    transport: Transport, os_family: OsFamily, ssh: object, winrm: object, azure: dict[str, Any],
) -> dict[str, Any]:
    """What ``ResolvedHost`` is validated from, on the long way and the short one alike."""
    return {
        "name": name,
        "address": values.get("address", name),
        "port": values.get("port", default_port),
        "transport": transport,
        "os": os_family,
        "groups": groups,
        "ssh": ssh,
        "winrm": winrm,
        "azure": azure,
        "source": source,
    }


class Resolver:
    def __init__(
        self, tree: InventoryTree, *, overrides: dict[str, Any], env: EnvironmentFallback,
        problems: list[Problem],
    ) -> None:
        self.tree = tree
        self.overrides = overrides
        self.env = env
        self.problems = problems
        self.parents: dict[str, list[str]] = {name: [] for name in tree.groups}
        self.depth: dict[str, int] = {}
        self.any_service_principal = self._any_service_principal()
        self._plans: dict[tuple[str, ...], _Plan] = {}
        # Values a host was built from without a problem (its address aside) -> what they gave.
        self._built: dict[tuple[object, ...], _Checked] = {}

    # ------------------------------------------------------------ structure

    def link(self) -> None:
        tree = self.tree
        for ref in tree.references:
            if ref.kind == "host" and ref.name not in tree.hosts:
                self._problem(ref.source, ref.host, ref.field,
                              f"names host '{ref.name}', which no inventory file defines")
            elif ref.kind == "group" and not tree.groups[ref.name].declared:
                self._problem(ref.source, ref.host, ref.field,
                              f"names group '{ref.name}', which no inventory file defines")
        for group in tree.groups.values():
            for member in group.hosts:
                host = tree.hosts.get(member)
                if host is not None and group.name not in host.groups:
                    host.groups.append(group.name)
            for child in group.children:
                self.parents[child].append(group.name)
        for host in tree.hosts.values():
            for name in host.groups:
                tree.group(name, declare=False)
                tree.add_member(name, host.name)
        for name in tree.groups:
            self._depth_of(name, ())

    def _depth_of(self, name: str, path: tuple[str, ...]) -> int:
        if name in self.depth:
            return self.depth[name]
        if name in path:
            cycle = " -> ".join((*path[path.index(name):], name))
            self._problem(self.tree.sources[0] if self.tree.sources else "<inventory>", None,
                          f"group {name}", f"groups contain each other in a cycle: {cycle}")
            return 0
        if name == ALL:
            depth = 0
        else:
            parents = [p for p in self.parents.get(name, []) if p != ALL]
            depth = 1 + max((self._depth_of(p, (*path, name)) for p in parents), default=0)
        self.depth[name] = depth
        return depth

    def ancestors(self, direct: list[str]) -> list[str]:
        """``direct`` and every group containing them, in ``sort_groups`` order."""
        seen: set[str] = set()
        stack = list(direct)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(self.parents.get(name, ()))
        return sorted(seen, key=lambda g: (self.depth.get(g, 0), self.tree.groups[g].priority, g))

    def group_members(self) -> dict[str, list[str]]:
        order = {name: index for index, name in enumerate(self.tree.hosts)}
        memo: dict[str, set[str]] = {}
        out: dict[str, list[str]] = {ALL: list(self.tree.hosts)}
        for name in self.tree.groups:
            if name != ALL:
                out[name] = sorted(self._members(name, frozenset(), memo),
                                   key=order.__getitem__)
        ungrouped = [h.name for h in self.tree.hosts.values()
                     if not [g for g in h.groups if g not in (ALL, UNGROUPED)]]
        if ungrouped:
            out[UNGROUPED] = sorted(set(ungrouped) | set(out.get(UNGROUPED, [])),
                                    key=order.__getitem__)
        return out

    def _members(self, name: str, path: frozenset[str], memo: dict[str, set[str]]) -> set[str]:
        # A method, not a closure: a recursive closure is a reference cycle, which would keep
        # the resolver and its tree (the whole inventory) alive until the cycle collector runs.
        if name in memo:
            return memo[name]
        found = set(self.tree.groups[name].hosts)
        for child in self.tree.groups[name].children:
            if child not in path:
                found |= self._members(child, path | {name}, memo)
        memo[name] = found
        return found

    # ------------------------------------------------------------ hosts

    def _any_service_principal(self) -> bool:
        layers: list[Layer] = list(self.tree.defaults)
        for group in self.tree.groups.values():
            layers.extend(group.layers)
        for host in self.tree.hosts.values():
            layers.extend(host.layers)
        return any("service_principal" in layer.values.get("azure", {}) for layer in layers) or \
            "service_principal" in self.overrides

    def resolve_all(self) -> list[ResolvedHost]:
        resolved: list[ResolvedHost] = []
        for host in self.tree.hosts.values():
            plan = self._plan(tuple(g for g in host.groups if g != ALL))
            layers = plan.layers
            if host.ansible:
                ansible_layer = ansible_host_layer(self.tree, host.name,
                                                   list(plan.ansible_groups))
                if ansible_layer is None:
                    continue
                layers = (*layers, ansible_layer)
            layers = (*layers, *host.layers)
            if any(layer.broken for layer in layers):
                continue  # its errors are already reported; more would only repeat them
            values: dict[str, Any] = {}
            for layer in layers:
                if layer.values:  # merging nothing would only copy
                    values = merge_layer(values, layer.values)
            built = self._build(host.name, host.source, host.ansible, values, plan.groups)
            if built is not None:
                resolved.append(built)
        self._check_fleet(resolved)
        return resolved

    def _plan(self, direct: tuple[str, ...]) -> _Plan:
        """What a host's groups decide (the same for every host of those groups)."""
        found = self._plans.get(direct) if self.tree.memoize else None
        if found is not None:
            return found
        root = self.tree.groups.get(ALL)
        ungrouped = self.tree.groups.get(UNGROUPED)
        groups = self.ancestors(list(direct))
        layers: list[Layer] = list(self.tree.defaults)
        if root is not None:
            layers.extend(root.layers)
        if not groups and ungrouped is not None:
            layers.extend(ungrouped.layers)
        for name in groups:
            layers.extend(self.tree.groups[name].layers)
        ansible_groups = [g for g in groups if g != ALL]
        if not [g for g in ansible_groups if g != UNGROUPED] and ungrouped is not None:
            ansible_groups = [UNGROUPED]
        else:
            ansible_groups = [g for g in ansible_groups if g != UNGROUPED]
        found = _Plan(tuple(layers), tuple(ansible_groups),
                      tuple(g for g in groups if g not in (ALL, UNGROUPED)))
        if self.tree.memoize:
            self._plans[direct] = found
        return found

    def _build(
        self, name: str, source: str, ansible: bool, values: dict[str, Any],
        groups: tuple[str, ...],
    ) -> ResolvedHost | None:
        """The host, or None when it has problems (reported)."""
        key = _values_key(values) if self.tree.memoize else None
        if key is not None:
            seen = self._built.get(key)
            if seen is not None:
                host = seen.build(name, source, values, groups)
                if host is not None:
                    return host
        checked: list[_Checked] = []
        host = self._build_checked(name, source, ansible, values, groups, checked)
        if key is not None and checked:
            self._built[key] = checked[0]
        return host

    def _build_checked(
        self, name: str, source: str, ansible: bool, values: dict[str, Any],
        groups: tuple[str, ...], checked: list[_Checked],
    ) -> ResolvedHost | None:
        """The long way; a host built without a problem adds its :class:`_Checked`."""
        before = len(self.problems)

        def problem(field: str, message: str) -> None:
            label = f"{field} ({_ANSIBLE_NAMES[field]})" if ansible and field in _ANSIBLE_NAMES \
                else field
            self._problem(source, name, label, message)

        name_problem = rules.check_plain_text(name, "host name")
        if name_problem:
            problem("name", name_problem)
        transport = Transport(values.get("transport", Transport.SSH))
        winrm = dict(values.get("winrm", {}))
        ssh = dict(values.get("ssh", {}))
        scheme = winrm.get("scheme", "https")
        default_os = OsFamily.WINDOWS if transport is Transport.WINRM else OsFamily.LINUX
        os_family = OsFamily(values.get("os", default_os))
        default_port = 22 if transport is Transport.SSH else (5986 if scheme == "https" else 5985)
        azure = dict(values.get("azure", {}))

        # Environment fills only what every file left empty.
        if not azure.get("tenant_id") and self.env.tenant_id:
            azure["tenant_id"] = self.env.tenant_id
        if not azure.get("subscription_id") and self.env.subscription_id:
            azure["subscription_id"] = self.env.subscription_id
        if not self.any_service_principal and self.env.service_principal is not None:
            azure["service_principal"] = self.env.service_principal
        # Command-line flags win over files; their tags merge over the host's tags.
        for key, value in self.overrides.items():
            if key == "tags":
                azure["tags"] = {**azure.get("tags", {}), **value}
            else:
                azure[key] = value
        shared_azure = dict(azure)  # every host with these values gets it, before its name
        derived_name = not azure.get("resource_name")
        if derived_name:
            derived = derive_resource_name(name)
            message = rules.check_resource_name(derived)
            if message:
                problem("azure.resource_name", f"host name '{name}' is not usable as the Azure "
                        f"resource name ({message}); set azure.resource_name")
            azure["resource_name"] = derived

        if transport is Transport.SSH:
            if not ssh.get("user"):
                problem("ssh.user", "SSH hosts need a user")
        else:
            if os_family is not OsFamily.WINDOWS:
                problem("os", "WinRM reaches Windows hosts only; set os: windows or use ssh")
            if not winrm.get("user"):
                problem("winrm.user", "WinRM hosts need a user")
            if not winrm.get("password"):
                problem("winrm.password", "WinRM hosts need a password reference "
                        "({env: NAME} or {file: PATH})")
            missing = missing_extra_message(winrm.get("auth", "ntlm"))
            if missing:
                problem("winrm.auth", missing)
            if winrm.get("auth") == "basic" and scheme == "http" and \
                    not winrm.get("allow_basic_over_http"):
                problem("winrm.auth", "basic authentication over plain http sends the password "
                        "readable on the wire; use https, another auth, or set "
                        "allow_basic_over_http: true for this host")
            unverified = scheme == "https" and winrm.get("cert_validation") is False
            if winrm.get("auth") == "basic" and unverified and \
                    not winrm.get("allow_unverified_tls"):
                problem("winrm.cert_validation", "basic authentication over https without "
                        "certificate validation sends the password to whoever answers; validate "
                        "the certificate (winrm.ca_file for an internal CA) or set "
                        "allow_unverified_tls: true for this host")
            ca_file = winrm.get("ca_file")
            if ca_file is not None and (unverified or scheme == "http"):
                problem("winrm.ca_file", "is set but not used: certificate validation is off "
                        "or the scheme is http")
            elif ca_file is not None and not os.access(ca_file, os.R_OK):
                problem("winrm.ca_file", f"cannot read {ca_file}")
        for key in _REQUIRED_AZURE:
            if not azure.get(key):
                problem(f"azure.{key}", "required (set it in the inventory or on the command line)")
        if not azure.get("service_principal"):
            problem("azure.service_principal", "required: client_id plus secret {env|file} or "
                    "certificate_file (or AZURE_CLIENT_ID + AZURE_CLIENT_SECRET in the "
                    "environment when no inventory names one)")
        if azure.get("proxy_bypass") and not azure.get("proxy_url"):
            problem("azure.proxy_bypass", "is set but proxy_url is not: a bypass list only "
                    "applies to a proxy; set proxy_url too, or remove proxy_bypass")
        location = azure.get("location")
        cloud = Cloud(azure.get("cloud", Cloud.AZURE))
        if location and cloud_of(location) is not cloud:
            problem("azure.location", f"region is not part of cloud {cloud.value} (azcmagent "
                    "would fail with AZCM0020); set azure.cloud or another location")
        if len(self.problems) > before:
            return None
        try:
            host = ResolvedHost.model_validate(_host_fields(
                name, source, values, groups, default_port, transport, os_family, ssh, winrm,
                azure))
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                field = ".".join(str(part) for part in err["loc"])
                problem(field, error_message(err))
            return None
        checked.append(_Checked(transport, os_family, default_port, host.ssh, host.winrm,
                                shared_azure, derived_name,
                                tuple(v for v in values.values() if type(v) is dict)))
        return host

    def _check_fleet(self, hosts: list[ResolvedHost]) -> None:
        by_address: dict[tuple[str, int], ResolvedHost] = {}
        by_resource: dict[tuple[str, str, str, str], ResolvedHost] = {}
        for host in hosts:
            key = (host.address.lower(), host.port)
            first = by_address.setdefault(key, host)
            if first is not host:
                self._problem(host.source, host.name, "address",
                              f"{host.address}:{host.port} is also host '{first.name}' "
                              f"({first.source}); one machine, one inventory entry")
            azure = host.azure
            resource_key = (azure.cloud.value, (azure.subscription_id or "").lower(),
                            (azure.resource_group or "").lower(), host.resource_name.lower())
            owner = by_resource.setdefault(resource_key, host)
            if owner is not host:
                self._problem(host.source, host.name, "azure.resource_name",
                              f"Azure resource name '{host.resource_name}' is also used by host "
                              f"'{owner.name}' in resource group {azure.resource_group}; the "
                              "second connect would fail with AZCM0044. Set distinct "
                              "resource names")

    def _problem(self, source: str, host: str | None, field: str | None, message: str) -> None:
        self.problems.append(Problem(file=source, host=host, field=field, message=message))

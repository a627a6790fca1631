"""CLI commands: ``arcfleet inventory show`` and ``arcfleet inventory validate``."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fleet.cli.options import azure_override_options, inventory_option, limit_option
from fleet.inventory import load_inventory, select_hosts
from fleet.inventory.ansible_engine import ENGINES, VaultOptions
from fleet.inventory.model import ResolvedHost, Transport

F = TypeVar("F", bound=Callable[..., Any])


def engine_option_decorators() -> list[Callable[[F], F]]:
    """--inventory-engine and the vault options (onboard, preflight, offboard and the inventory
    commands); the command gets ``engine``, ``vault_password_files``, ``vault_ids`` and
    ``ask_vault_pass``."""
    passed = "Passed to ansible-inventory/ansible-vault (implies the ansible engine)."
    return [
        click.option(
            "--inventory-engine", "engine", type=click.Choice(ENGINES), default=None,
            help="native: arcfleet reads the files; ansible: run ansible-inventory (plugins, "
            "vault, scripts); auto (default): ansible-inventory only when an inventory needs it.",
        ),
        click.option("--vault-password-file", "vault_password_files", multiple=True,
                     metavar="FILE", help=passed),
        click.option("--vault-id", "vault_ids", multiple=True, metavar="ID", help=passed),
        click.option("--ask-vault-pass", "ask_vault_pass", is_flag=True, help=passed),
    ]


def vault_of(kwargs: dict[str, Any]) -> VaultOptions:
    """The vault options a command was given (removed from ``kwargs``)."""
    return VaultOptions(
        password_files=tuple(kwargs.pop("vault_password_files", ()) or ()),
        ids=tuple(kwargs.pop("vault_ids", ()) or ()),
        ask=bool(kwargs.pop("ask_vault_pass", False)),
    )


def engine_options(func: F) -> F:
    """Adds --inventory-engine and the vault options; hands the command ``engine`` and
    ``vault`` (a :class:`VaultOptions`), ready for load_inventory."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, vault=vault_of(kwargs), **kwargs)

    decorated: Callable[..., Any] = wrapper
    for decorator in reversed(engine_option_decorators()):
        decorated = decorator(decorated)
    return decorated  # type: ignore[return-value]


def credential_of(host: ResolvedHost) -> str:
    """Where the host's secrets come from (references only, never values)."""
    parts: list[str] = []
    sp = host.azure.service_principal
    if sp is not None:
        if sp.secret is not None:
            parts.append(f"sp {sp.secret.describe()}")
        elif sp.certificate_file is not None:
            parts.append(f"sp cert:{sp.certificate_file}")
    if host.transport is Transport.WINRM and host.winrm.password is not None:
        parts.append(f"winrm {host.winrm.password.describe()}")
    return ", ".join(parts)


def json_row(host: ResolvedHost) -> str:
    """One host as ``inventory show --json`` prints it: the host's fields, ``credential`` and,
    for WinRM hosts, ``winrm_certificate``, as one line of compact JSON.

    pydantic writes the fields' JSON itself (several times faster than ``model_dump`` and
    ``json.dumps``). It would write other characters than ASCII as they are, where ``json``
    escapes them, and an infinite number as null: such a host takes the long way,
    :func:`json_row_plain` (tests/test_inventory_fastpaths.py compares the two)."""
    tls = _tls(host)
    fields = host.model_dump_json()
    if not fields.isascii() or not math.isfinite(host.ssh.connect_timeout_s):
        return json_row_plain(host)
    return (f'{fields[:-1]},"credential":{json.dumps(credential_of(host))}'
            + (f',"winrm_certificate":{json.dumps(tls)}' if tls else "") + "}")


def json_row_plain(host: ResolvedHost) -> str:
    """:func:`json_row` the long way."""
    tls = _tls(host)
    return json.dumps({**host.model_dump(mode="json"), "credential": credential_of(host),
                       **({"winrm_certificate": tls} if tls else {})}, separators=(",", ":"))


def _user_and_mode(host: ResolvedHost) -> tuple[str, str]:
    if host.transport is Transport.SSH:
        return host.ssh.user or "", "sudo" if host.ssh.become else "-"
    return host.winrm.user or "", f"{host.winrm.auth}/{host.winrm.scheme}"


def _tls(host: ResolvedHost) -> str:
    """The WinRM certificate validation state ("" for SSH hosts)."""
    if host.transport is not Transport.WINRM:
        return ""
    from fleet.inventory.winrm_policy import validation_state

    return validation_state(host)


def _warn_weak_winrm(hosts: list[ResolvedHost]) -> None:
    from fleet.inventory.winrm_policy import winrm_warning

    for host in hosts:
        warning = winrm_warning(host)
        if warning:
            click.echo(f"warning: {warning}", err=True)


@click.group("inventory")
def inventory_group() -> None:
    """Read, check and show inventories (arcfleet YAML, Ansible INI/YAML)."""


@inventory_group.command("show")
@inventory_option
@limit_option
@azure_override_options
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print the resolved hosts as JSON.")
def show(
    inventories: tuple[Path, ...], limit: str | None, azure_overrides: dict[str, object],
    engine: str | None, vault: VaultOptions, as_json: bool,
) -> None:
    """Show every host as arcfleet will treat it (secrets appear as references only)."""
    inventory = load_inventory(list(inventories), azure_overrides=azure_overrides,
                               engine=engine, vault=vault)
    hosts = select_hosts(inventory, limit)
    _warn_weak_winrm(hosts)
    if as_json:
        # One host per line: json's indent= switches to its pure-Python encoder, which took
        # longer than loading a 5,000-host inventory.
        rows = ",\n".join("    " + json_row(host) for host in hosts)
        click.echo(
            "{\n"
            f'  "sources": {json.dumps(inventory.sources)},\n'
            f'  "digest": {json.dumps(inventory.digest)},\n'
            f'  "hosts": [\n{rows}\n  ]\n'
            "}"
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(hosts)} hosts from {', '.join(inventory.sources)}")
    for column in ("name", "address", "transport", "os", "user", "become/auth",
                   "certificate", "resource group", "location", "resource name", "tags",
                   "credential"):
        table.add_column(column, overflow="fold")
    for host in hosts:
        user, mode = _user_and_mode(host)
        tags = ",".join(f"{k}={v}" for k, v in sorted(host.azure.tags.items()))
        table.add_row(
            host.name, f"{host.address}:{host.port}", host.transport.value, host.os.value, user,
            mode, _tls(host), host.azure.resource_group or "", host.azure.location or "",
            host.resource_name, tags, credential_of(host),
        )
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped output is read by people with wide terminals or by grep: do not fold cells.
        console = Console(highlight=False, width=250)
    console.print(table)


@inventory_group.command("validate")
@inventory_option
@limit_option
@azure_override_options
@engine_options
def validate(
    inventories: tuple[Path, ...], limit: str | None, azure_overrides: dict[str, object],
    engine: str | None, vault: VaultOptions,
) -> None:
    """Check inventories without contacting any host; exit status 2 and one line per problem."""
    inventory = load_inventory(list(inventories), azure_overrides=azure_overrides,
                               engine=engine, vault=vault)
    hosts = select_hosts(inventory, limit)
    if any(h.transport is Transport.SSH and h.ssh.key_file for h in hosts):
        # A run refuses these too; validate says so first (asyncssh only when a key is named).
        from fleet.transport.ssh_keys import ClientKeys, check_client_keys

        check_client_keys(hosts, ClientKeys())
    _warn_weak_winrm(hosts)
    click.echo(f"{len(hosts)} hosts OK")


COMMANDS: list[click.Command] = [inventory_group]

"""CLI commands: ``arcfleet inventory show`` and ``arcfleet inventory validate``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from fleet.cli.options import azure_override_options, inventory_option, limit_option
from fleet.inventory import load_inventory, select_hosts
from fleet.inventory.model import ResolvedHost, Transport


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


def _user_and_mode(host: ResolvedHost) -> tuple[str, str]:
    if host.transport is Transport.SSH:
        return host.ssh.user or "", "sudo" if host.ssh.become else "-"
    return host.winrm.user or "", f"{host.winrm.auth}/{host.winrm.scheme}"


def _tls(host: ResolvedHost) -> str:
    """The WinRM certificate validation state ("" for SSH hosts)."""
    if host.transport is not Transport.WINRM:
        return ""
    from fleet.transport.winrm_policy import validation_state

    return validation_state(host)


def _warn_weak_winrm(hosts: list[ResolvedHost]) -> None:
    from fleet.transport.winrm_policy import winrm_warning

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
@click.option("--json", "as_json", is_flag=True, help="Print the resolved hosts as JSON.")
def show(
    inventories: tuple[Path, ...], limit: str | None, azure_overrides: dict[str, object],
    as_json: bool,
) -> None:
    """Show every host as arcfleet will treat it (secrets appear as references only)."""
    inventory = load_inventory(list(inventories), azure_overrides=azure_overrides)
    hosts = select_hosts(inventory, limit)
    _warn_weak_winrm(hosts)
    if as_json:
        document = {
            "sources": inventory.sources,
            "digest": inventory.digest,
            "hosts": [
                {**host.model_dump(mode="json"), "credential": credential_of(host),
                 **({"winrm_certificate": _tls(host)} if _tls(host) else {})}
                for host in hosts
            ],
        }
        click.echo(json.dumps(document, indent=2))
        return
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
def validate(
    inventories: tuple[Path, ...], limit: str | None, azure_overrides: dict[str, object]
) -> None:
    """Check inventories without contacting any host; exit status 2 and one line per problem."""
    inventory = load_inventory(list(inventories), azure_overrides=azure_overrides)
    hosts = select_hosts(inventory, limit)
    _warn_weak_winrm(hosts)
    click.echo(f"{len(hosts)} hosts OK")


COMMANDS: list[click.Command] = [inventory_group]

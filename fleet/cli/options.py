"""Click options shared by commands that read an inventory (inventory, onboard, ...).

Usage::

    @click.command()
    @inventory_option
    @limit_option
    @azure_override_options
    def onboard(inventories: tuple[Path, ...], limit: str | None,
                azure_overrides: dict[str, object]) -> None: ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

inventory_option = click.option(
    "-i",
    "--inventory",
    "inventories",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Inventory file (arcfleet YAML, Ansible INI or Ansible YAML) or Ansible inventory "
    "directory. Repeat to merge (a later file's settings win).",
)

limit_option = click.option(
    "-l",
    "--limit",
    default=None,
    metavar="PATTERN",
    help="Only these hosts: names, groups, globs (web*), a:b or a,b (union), a:&b "
    "(intersection), a:!b (exclusion), @FILE (one host name per line); for runs also "
    "@failed (hosts not connected in the latest run) and, for onboard, @ready (hosts the "
    "latest preflight found ready).",
)

allow_secret_env_option = click.option(
    "--allow-secret-env",
    "allow_secret_env",
    multiple=True,
    metavar="NAME",
    help="Let a secret reference read environment variable NAME although it is outside "
    "AZURE_*, ARC_* and ARCFLEET_* (repeatable). Not carried over to rerun or --resume.",
)

_OVERRIDES = (
    ("tenant_id", "--tenant-id", "Azure tenant id (GUID) for every host."),
    ("subscription_id", "--subscription-id", "Azure subscription id (GUID) for every host."),
    ("resource_group", "--resource-group", "Resource group for every host."),
    ("location", "--location", "Azure region for every host, e.g. westeurope."),
    ("cloud", "--cloud", "AzureCloud, AzureUSGovernment or AzureChinaCloud."),
    ("auth", "--auth", "How every host's agent signs in: service_principal (the secret or "
     "certificate goes to the host) or token (the jump host mints an ARM access token; the "
     "secret stays on the jump host). [default: the inventory's azure.auth, else "
     "service_principal]"),
)


def _parse_tags(values: tuple[str, ...]) -> dict[str, str]:
    """``--tag k=v`` (repeatable) and ``--tags k=v,k2=v2`` both land here."""
    tags: dict[str, str] = {}
    for item in (part for value in values for part in value.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter("expected NAME=VALUE", param_hint="--tag")
        tags[key.strip()] = value.strip()
    return tags


def azure_override_options(func: F) -> F:
    """Adds --tenant-id/--subscription-id/--resource-group/--location/--cloud/--tag and hands
    the command one ``azure_overrides`` dict (only the flags given), ready for load_inventory."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        overrides: dict[str, object] = {}
        for field, _flag, _help in _OVERRIDES:
            value = kwargs.pop(field, None)
            if value:
                overrides[field] = value
        tags = _parse_tags(kwargs.pop("tags", ()) or ())
        if tags:
            overrides["tags"] = tags
        return func(*args, azure_overrides=overrides, **kwargs)

    decorated: Callable[..., Any] = wrapper
    decorated = click.option(
        "--tag", "--tags", "tags", multiple=True, metavar="NAME=VALUE[,...]",
        help="Azure tags for every host, merged over the inventory's tags: --tags k=v,k2=v2 "
        "or repeated --tag k=v.",
    )(decorated)
    for field, flag, help_text in reversed(_OVERRIDES):
        decorated = click.option(flag, field, default=None, help=help_text)(decorated)
    return decorated  # type: ignore[return-value]

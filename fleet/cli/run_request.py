"""What a run command was asked for: its options, how they are recalled by ``rerun`` and
``--resume``, and the pacing they mean (split from :mod:`fleet.cli.run`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from fleet.cli.inventory import engine_option_decorators
from fleet.cli.options import (
    allow_secret_env_option,
    azure_override_options,
    limit_option,
)
from fleet.cli.state_option import store_options
from fleet.engine.playbook import BUILTIN, Playbook
from fleet.errors import Problem
from fleet.inventory.ansible_engine import VaultOptions
from fleet.store import RunRecord
from fleet.transport.ssh_keys import DEFAULT_KNOWN_HOSTS

# --limit values that select hosts from the run store rather than from the inventory.
RUN_SELECTIONS = ("@failed", "@ready")
_NAMED_HOSTS = 3


def connect_pacing(request: RunRequest, playbook: Playbook) -> tuple[float, int]:
    """Connect rate and burst. ``--connect-rate N`` alone means N per second from the start:
    its burst is N (at least 1), not the playbook's, or a rate of 1 would still start the
    playbook's whole burst at once. ``--connect-burst`` sets the burst explicitly."""
    pacing = playbook.pacing
    if request.connect_rate is None:
        return pacing.connect_rate_per_s, request.connect_burst or pacing.connect_burst
    burst = request.connect_burst or max(1, int(request.connect_rate))
    return request.connect_rate, burst


def one_per_reference(problems: Sequence[Problem]) -> list[Problem]:
    """Problems that differ only by host (many hosts share one secret reference, e.g. a
    missing environment variable) as one problem naming the file and how many hosts."""
    hosts: dict[tuple[str, str | None, str], list[str]] = {}
    for problem in problems:
        key = (problem.file, problem.field, problem.message)
        hosts.setdefault(key, [])
        if problem.host:
            hosts[key].append(problem.host)
    merged = []
    for (file, field_name, message), names in hosts.items():
        if len(names) <= 1:
            merged.append(Problem(file, names[0] if names else None, field_name, message))
            continue
        shown = ", ".join(names[:_NAMED_HOSTS])
        more = f", +{len(names) - _NAMED_HOSTS} more" if len(names) > _NAMED_HOSTS else ""
        merged.append(
            Problem(file, None, field_name, f"{message} (referenced by {len(names)} hosts: "
                    f"{shown}{more})")
        )
    return merged


@dataclass
class RunRequest:
    """Everything a run needs, as given on the command line (or recalled for a rerun)."""

    inventories: list[str]
    playbook: str | None = None
    limit: str | None = None
    forks: int | None = None
    connect_rate: float | None = None
    connect_burst: int | None = None
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    azure: dict[str, Any] = field(default_factory=dict)
    azure_check: bool = True  # --no-azure-check turns the Azure preflight off
    register_providers: bool = False
    # How the inventory is read: --inventory-engine and the vault options (file paths and ids
    # only, never a password); recalled by rerun and --resume, except --ask-vault-pass.
    inventory_engine: str | None = None
    vault_password_files: tuple[str, ...] = ()
    vault_ids: tuple[str, ...] = ()
    ask_vault_pass: bool = False
    # Security opt-ins hold for the command line that gives them: a rerun or resume does not
    # recall them (they are not in options()), the operator gives them again.
    allow_secret_env: tuple[str, ...] = ()
    # --delete-stale deletes Azure resources: like the opt-ins above, asked for each time.
    delete_stale: bool = False

    @property
    def vault(self) -> VaultOptions:
        return VaultOptions(password_files=self.vault_password_files, ids=self.vault_ids,
                            ask=self.ask_vault_pass)

    def options(self) -> dict[str, object]:
        return {
            "inventories": self.inventories,
            "playbook": self.playbook,
            "limit": self.limit,
            "forks": self.forks,
            "connect_rate": self.connect_rate,
            "connect_burst": self.connect_burst,
            "known_hosts": self.known_hosts,
            "accept_new_host_keys": self.accept_new_host_keys,
            "azure": self.azure,
            "azure_check": self.azure_check,
            "register_providers": self.register_providers,
            "inventory_engine": self.inventory_engine,
            "vault_password_files": list(self.vault_password_files),
            "vault_ids": list(self.vault_ids),
        }

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RunRequest:
        return cls(
            inventories=list(options.get("inventories") or []),
            playbook=options.get("playbook"),
            limit=options.get("limit"),
            forks=options.get("forks"),
            connect_rate=options.get("connect_rate"),
            connect_burst=options.get("connect_burst"),
            known_hosts=options.get("known_hosts"),
            # Recorded for the record only: trust on first use is asked for again (see above).
            accept_new_host_keys=False,
            azure=dict(options.get("azure") or {}),
            azure_check=bool(options.get("azure_check", True)),
            register_providers=bool(options.get("register_providers")),
            inventory_engine=options.get("inventory_engine"),
            vault_password_files=tuple(options.get("vault_password_files") or ()),
            vault_ids=tuple(options.get("vault_ids") or ()),
        )


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by onboard, preflight, offboard and (as overrides) rerun."""
    decorators = [
        click.option(
            "--playbook",
            help="Built-in name (onboard, preflight, offboard, reconnect) or a playbook file. "
            "[default: the command's own built-in playbook; rerun: the run's]",
        ),
        limit_option,
        click.option(
            "--forks",
            type=click.IntRange(1, 5000),
            help="Agent operations (azcmagent connect/disconnect) at once; as many hosts "
            "again are opened and preflighted ahead. [default: the playbook's pacing.forks, "
            "50 in the built-in playbooks]",
        ),
        click.option(
            "--connect-rate",
            type=click.FloatRange(0),
            help="Connects started per second across the fleet (token bucket; 0 = unpaced, "
            "lab only). Its burst is the same number unless --connect-burst is given. "
            "[default: the playbook's pacing.connect_rate_per_s, 5 for onboard]",
        ),
        click.option(
            "--connect-burst",
            type=click.IntRange(1),
            help="Connects that may start at once before --connect-rate applies. [default: "
            "the --connect-rate value; without --connect-rate the playbook's "
            "pacing.connect_burst, 100 for onboard]",
        ),
        click.option(
            "--known-hosts",
            type=click.Path(dir_okay=False),
            help=f"known_hosts file for SSH host keys [default: {DEFAULT_KNOWN_HOSTS}]",
        ),
        click.option(
            "--accept-new-host-keys",
            is_flag=True,
            help="Trust on first use: add "
            "unknown host keys to known_hosts. A changed key is still refused. Not carried "
            "over to rerun or --resume: give it again.",
        ),
        allow_secret_env_option,
        *engine_option_decorators(),
        azure_override_options,
        click.option(
            "--no-azure-check",
            is_flag=True,
            help="Do not ask Azure first (credential, providers, resource group, region, "
            "role, names); regions are then checked for syntax only.",
        ),
        click.option(
            "--register-providers",
            is_flag=True,
            help="Register the Azure Arc resource providers when the Azure preflight finds "
            "them unregistered (needs */register/action on the subscription).",
        ),
        click.option(
            "--delete-stale",
            is_flag=True,
            help="onboard: delete the Disconnected or Expired Arc machines that have a host's "
            "resource name in its target resource group, before the run (as the onboarding "
            "identity if it may delete, else as the operator's own Azure credential). Not "
            "carried over to rerun or --resume.",
        ),
        click.option(
            "--json", "json_lines", is_flag=True, help="One JSON object per host outcome on stdout."
        ),
        store_options,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _absolute(path: str | None, *, keep: Sequence[str] = ()) -> str | None:
    """A file option as an absolute path: a rerun or resume may start from another directory."""
    if path is None or path in keep:
        return path
    return str(Path(path).resolve())


def given_request(
    inventories: Sequence[Path], azure_overrides: dict[str, Any], flags: dict[str, Any]
) -> RunRequest:
    """The run options given on this command line (see :func:`run_options`)."""
    return RunRequest(
        inventories=[str(Path(p).resolve()) for p in inventories],
        playbook=_absolute(flags.get("playbook"), keep=BUILTIN),
        limit=flags.get("limit"),
        forks=flags.get("forks"),
        connect_rate=flags.get("connect_rate"),
        connect_burst=flags.get("connect_burst"),
        known_hosts=_absolute(flags.get("known_hosts")),
        accept_new_host_keys=bool(flags.get("accept_new_host_keys")),
        azure=azure_overrides,
        azure_check=not flags.get("no_azure_check"),
        register_providers=bool(flags.get("register_providers")),
        inventory_engine=flags.get("engine"),
        vault_password_files=tuple(
            str(Path(p).resolve()) for p in flags.get("vault_password_files") or ()
        ),
        vault_ids=tuple(flags.get("vault_ids") or ()),
        ask_vault_pass=bool(flags.get("ask_vault_pass")),
        allow_secret_env=tuple(flags.get("allow_secret_env") or ()),
        delete_stale=bool(flags.get("delete_stale")),
    )


def recall_request(record: RunRecord) -> RunRequest:
    """The request a recorded run was made with, its playbook named explicitly: a run on the
    default playbook recorded no --playbook, and the default of a rerun is onboard, so a
    rerun of a preflight or offboard run would otherwise connect hosts."""
    request = RunRequest.from_options(record.options)
    if request.playbook is None:
        request.playbook = record.playbook
    return request


def override_request(request: RunRequest, given: RunRequest) -> None:
    """Options given on this command line win over the recalled ones (not the host set)."""
    request.azure.update(given.azure)
    if given.connect_rate is not None and given.connect_burst is None:
        request.connect_burst = None  # a new rate brings its own burst (see connect_pacing)
    for key in ("playbook", "forks", "connect_rate", "connect_burst", "known_hosts"):
        if getattr(given, key) is not None:
            setattr(request, key, getattr(given, key))
    if given.inventory_engine is not None:
        request.inventory_engine = given.inventory_engine
    if given.vault.given:
        request.vault_password_files = given.vault_password_files
        request.vault_ids = given.vault_ids
        request.ask_vault_pass = given.ask_vault_pass
    request.accept_new_host_keys = given.accept_new_host_keys
    request.allow_secret_env = given.allow_secret_env
    request.delete_stale = given.delete_stale
    if not given.azure_check:
        request.azure_check = False
    if given.register_providers:
        request.register_providers = True

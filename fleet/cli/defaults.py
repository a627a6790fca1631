"""Every option's ``--help`` says what happens when it is not given.

Options with a value default show it (``show_default``). Options without one (their default
comes from the inventory, the playbook or another option) get the words from :data:`UNSET`,
keyed by the option's name, so shared option modules need not repeat them.
"""

from __future__ import annotations

from typing import Final

import click

UNSET: Final = {
    "limit": "every host of the inventory",
    "tenant_id": "the inventory's",
    "subscription_id": "the inventory's",
    "resource_group": "the inventory's",
    "location": "the inventory's",
    "cloud": "the inventory's, else AzureCloud",
    "tags": "the inventory's tags only",
    "explain": "none: look codes up instead",
    "exit_code": "unknown",
    "agent_version": "unknown: codes of every agent version",
    "run_started": "unknown: the log is cut at its last connect marker",
    "clock_skew": "unknown: no skew is assumed",
    "categories": "every category",
    "csv_file": "no CSV file",
    "fmt": "csv with --output; otherwise no report on stdout",
    "output": "stdout when --format is given; otherwise no file",
    "html_file": "no HTML file",
    "inventory_out": "<work-dir>/inventory.yaml",
    "work_dir": "a temporary directory",
    "engine": "auto, or $ARCFLEET_INVENTORY_ENGINE",
    "vault_ids": "none",
    "vault_password_files": "none",
    "store_url": "the SQLite file in --state-dir",
    "store_password": "~/.pgpass or PGPASSWORD",
    "site": "none: every host of the inventory, no shared run",
    "allow_secret_env": "none: only AZURE_*, ARC_* and ARCFLEET_* variables",
}


def _has_default_text(option: click.Option) -> bool:
    if option.is_flag or option.required or option.hidden:
        return True  # a flag is off unless given; a required option has no default
    if option.show_default and option.default is not None:
        return True
    return "[default:" in (option.help or "") or "(default:" in (option.help or "")


def document_defaults(command: click.Command) -> None:
    """Append ``[default: ...]`` to the help of every option of ``command`` (and its
    subcommands) that would otherwise not say it."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            document_defaults(sub)
    for param in command.params:
        if not isinstance(param, click.Option) or _has_default_text(param):
            continue
        words = UNSET.get(param.name or "")
        if words is not None:
            param.help = f"{param.help or ''} [default: {words}]".strip()


def options_without_default(command: click.Command, path: str = "arcfleet") -> list[str]:
    """Options whose help still says nothing about their default (for the test)."""
    missing = []
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):  # a lazy group imports each command here
            sub = command.get_command(ctx, name)
            if sub is not None:
                missing += options_without_default(sub, f"{path} {name}")
    for param in command.params:
        if isinstance(param, click.Option) and not _has_default_text(param):
            missing.append(f"{path} {'/'.join(param.opts)}")
    return missing

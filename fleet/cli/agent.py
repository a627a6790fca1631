"""``arcfleet agent bundle --from DIR``: check an offline install bundle before a run uses it.

The operator downloads Microsoft's install scripts and packages once; this command checks the
directory (the files a host needs, their sha256, the MSI's Authenticode signature where
``osslsigncode`` can check it) and prints the playbook line that makes the install stage upload
them. A run with ``agent_bundle`` set checks the same again and records the manifest in its run
folder (``agent-bundle.json``). See docs/install.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("agent", help="The Connected Machine agent itself: check an offline install bundle.")
def agent_group() -> None:
    pass


@agent_group.command("bundle")
@click.option("--from", "directory", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="The directory holding install_linux_azcmagent.sh, the .deb/.rpm packages "
              "and the .msi.")
@click.option("--require-signed", is_flag=True,
              help="Refuse an MSI whose Authenticode signature does not verify "
              "(osslsigncode verify); without it an unsigned MSI is reported, not refused.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def bundle_command(directory: Path, require_signed: bool, as_json: bool) -> None:
    """Check an offline agent bundle and print what each host would get."""
    from fleet.engine.install_bundle import load_bundle

    bundle = load_bundle(str(directory.resolve()), require_signed=require_signed)
    manifest = bundle.manifest()
    if as_json:
        click.echo(json.dumps({"directory": str(bundle.directory), "files": manifest}, indent=2))
        return
    for item in manifest:
        signature = f"  Authenticode: {item['signature']}" if "signature" in item else ""
        click.echo(f"{item['kind']:<15} {item['file']}  {item['bytes']} bytes  "
                   f"sha256 {item['sha256']}{signature}")
    click.echo(f"use it: add `agent_bundle: {bundle.directory}` to the playbook"
               + ("  and `agent_bundle_require_signed: true`" if require_signed else ""))


COMMANDS: list[click.Command] = [agent_group]

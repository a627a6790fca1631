"""Shared helpers for the lab tests: an asyncssh client that does what arcfleet does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncssh

from fleet.lab.fleet import LabFleet

SUBNET = "127.20"  # this suite's loopback range (127.20.0.0/16)


@asynccontextmanager
async def ssh_to(lab: LabFleet, name: str, *, user: str = "arc") -> AsyncIterator[
        asyncssh.SSHClientConnection]:
    host = lab.hosts[name]
    async with asyncssh.connect(
        host.address, lab.ssh_port, username=user, client_keys=[str(lab.key_file)],
        known_hosts=str(lab.known_hosts_file), connect_timeout=10,
    ) as conn:
        yield conn


def config_body(lab: LabFleet, **override: object) -> bytes:
    body: dict[str, object] = {
        "service-principal-id": lab.target.client_id,
        "service-principal-secret": lab.secret,
        "tenant-id": lab.target.tenant_id,
        "subscription-id": lab.target.subscription_id,
        "resource-group": lab.target.resource_group,
        "location": lab.target.location,
        "verbose": True,
    }
    body.update(override)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


async def put_config(conn: asyncssh.SSHClientConnection, body: bytes) -> str:
    """mktemp -d + SFTP write (mode 0600), as arcfleet does; returns the config path."""
    made = await conn.run("mktemp -d /tmp/arcfleet.XXXXXXXX", check=True)
    path = f"{str(made.stdout).strip()}/connect.json"
    async with conn.start_sftp_client() as sftp, sftp.open(
            path, "wb", attrs=asyncssh.SFTPAttrs(permissions=0o600)) as fh:
        await fh.write(body)
    return path


def connect_command(config: str, name: str, *, sudo: bool = True,
                    agent: str = "/usr/bin/azcmagent", extra: str = "") -> str:
    prefix = "sudo -n " if sudo else ""
    return (f"{prefix}{agent} connect --config {config} --verbose --resource-name {name} "
            f"--cloud AzureCloud{extra}")


async def connect_once(lab: LabFleet, name: str, conn: asyncssh.SSHClientConnection,
                       **kw: object) -> asyncssh.SSHCompletedProcess:
    config = await put_config(conn, config_body(lab))
    return await conn.run(connect_command(config, name, **kw))  # type: ignore[arg-type]

"""Host key checks against small SSH servers written here, on loopback (issue 16, item 4).

Trust on first use (``--accept-new-host-keys``) must fail closed: a known_hosts file that cannot be
read, parsed or is not a regular file refuses the host instead of reading as "nothing known", and
"known" is decided by asyncssh's own matching (host name, resolved address, port, ``@revoked`` and
``@cert-authority``), not by an exact address lookup.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncssh
import pytest

from fleet.errors import HostAuthFailed
from fleet.inventory import load_inventory
from fleet.inventory.model import OsFamily, ResolvedHost, SshSettings, Transport
from fleet.lab.fleet import LabFleet
from fleet.transport.ssh import JumpPool, SshTransport
from fleet.transport.ssh_keys import HostKeyPolicy

ADDRESS = "127.72.0.1"  # this file's loopback range: 127.72


class _OpenDoor(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # no authentication: these tests are about the host key only


@asynccontextmanager
async def ssh_server(address: str, key: asyncssh.SSHKey) -> AsyncIterator[int]:
    server = await asyncssh.create_server(_OpenDoor, address, 0, server_host_keys=[key])
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _host(address: str, port: int, known_hosts: Path | None = None) -> ResolvedHost:
    return ResolvedHost(
        name="target", address=address, port=port, transport=Transport.SSH, os=OsFamily.LINUX,
        ssh=SshSettings(user="arc", known_hosts=known_hosts, connect_timeout_s=10),
    )


def _public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


@pytest.fixture
def server_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


async def _open(host: ResolvedHost, known_hosts: Path) -> None:
    transport = SshTransport(host, policy=HostKeyPolicy(known_hosts=known_hosts, accept_new=True))
    try:
        await transport.open()
    finally:
        await transport.close()


async def test_an_unknown_host_is_learned(tmp_path: Path, server_key: asyncssh.SSHKey) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"127.72.9.9 {_public(asyncssh.generate_private_key('ssh-ed25519'))}\n")
    async with ssh_server(ADDRESS, server_key) as port:
        await _open(_host(ADDRESS, port), known)
        assert f"[{ADDRESS}]:{port} {_public(server_key)}" in known.read_text()
        await _open(_host(ADDRESS, port), known)  # and trusted from then on


# Each case: the known_hosts text (given the host's pattern, its old key and its current key).
HOSTILE_FILES = {
    # One line asyncssh rejects made the whole file "no known keys", so the changed key was learned.
    "an unparseable line": lambda pat, old, new: f"{pat} {old}\nnot-a-known-hosts-line\n",
    "a bad marker": lambda pat, old, new: f"{pat} {old}\n@bogus * {old}\n",
    # asyncssh skips a line whose key does not decode: the host looked unknown.
    "an undecodable key for the host": lambda pat, old, new: f"{pat} ssh-ed25519 AAAAC3Nz\n",
    "the current key revoked": lambda pat, old, new: f"@revoked {pat} {new}\n",
    "a CA for the host": lambda pat, old, new: f"@cert-authority {pat} {old}\n",
    "a wildcard pattern for the host": lambda pat, old, new: f"127.72.0.* {old}\n",
}


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
async def test_a_host_the_file_speaks_for_is_never_learned(
    tmp_path: Path, server_key: asyncssh.SSHKey, case: str
) -> None:
    old = _public(asyncssh.generate_private_key("ssh-ed25519"))
    known = tmp_path / "known_hosts"
    async with ssh_server(ADDRESS, server_key) as port:
        known.write_text(HOSTILE_FILES[case](f"[{ADDRESS}]:{port}", old, _public(server_key)))
        before = known.read_text()
        with pytest.raises(HostAuthFailed, match="host key not verified"):
            await _open(_host(ADDRESS, port), known)
    assert known.read_text() == before


async def test_a_host_known_by_its_resolved_address_is_not_new(
    tmp_path: Path, server_key: asyncssh.SSHKey
) -> None:
    """The inventory names the host; the file lists the address the name resolves to."""
    old = _public(asyncssh.generate_private_key("ssh-ed25519"))
    known = tmp_path / "known_hosts"
    async with ssh_server("127.0.0.1", server_key) as port:
        known.write_text(f"[127.0.0.1]:{port} {old}\n")
        with pytest.raises(HostAuthFailed, match="host key not verified"):
            await _open(_host("localhost", port), known)
    assert server_key.export_public_key("openssh").decode().split()[1] not in known.read_text()


@pytest.mark.parametrize("kind", ["/dev/null", "directory", "unreadable"])
async def test_a_known_hosts_path_that_is_not_a_readable_file_is_refused(
    tmp_path: Path, server_key: asyncssh.SSHKey, kind: str
) -> None:
    if kind == "/dev/null":
        known = Path("/dev/null")
    elif kind == "directory":
        known = tmp_path / "known_hosts.d"
        known.mkdir()
    else:
        known = tmp_path / "known_hosts"
        known.write_bytes(b"\xff\xfe not text\n")
    async with ssh_server(ADDRESS, server_key) as port:
        with pytest.raises(HostAuthFailed, match="host key not verified"):
            await _open(_host(ADDRESS, port), known)
    if kind == "/dev/null":
        assert os.stat("/dev/null").st_size == 0


async def test_jump_chains_are_not_shared_across_known_hosts_files(tmp_path: Path) -> None:
    """A target checked against another file must not ride a hop verified against this one."""
    async with LabFleet(tmp_path / "lab", hosts=3, subnet="127.72") as lab:
        hosts = load_inventory([lab.inventory_path]).hosts
        bastion, first, second = hosts
        hop = f"{bastion.address}:{bastion.port}"
        # The second target's file knows the target only, not the bastion.
        only_target = tmp_path / "only_target"
        only_target.write_text("".join(
            line + "\n" for line in lab.known_hosts_file.read_text().splitlines()
            if line.startswith(f"[{second.address}]")
        ))

        def behind(host: ResolvedHost, known: Path) -> ResolvedHost:
            ssh = host.ssh.model_copy(update={"jump_hosts": (hop,), "known_hosts": known})
            return host.model_copy(update={"ssh": ssh})

        pool, policy = JumpPool(), HostKeyPolicy(known_hosts=lab.known_hosts_file)
        through_lab_file = SshTransport(
            behind(first, lab.known_hosts_file), policy=policy, jumps=pool
        )
        await through_lab_file.open()
        try:
            other = SshTransport(behind(second, only_target), policy=policy, jumps=pool)
            with pytest.raises(HostAuthFailed, match="host key not verified"):
                await other.open()
            await other.close()
        finally:
            await through_lab_file.close()
            await pool.aclose()

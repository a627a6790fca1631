"""The real-OpenSSH test infrastructure itself (tests/realsshd.py) works as the interop tests
assume: logins on many addresses, sudo, the agent shim on PATH, a jump-host hop, and host-key
checking through :class:`fleet.transport.ssh.SshTransport`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from fleet.errors import HostAuthFailed, HostUnreachable
from fleet.inventory.model import OsFamily, ResolvedHost, SshSettings, Transport
from fleet.transport.ssh import SshTransport
from fleet.transport.ssh_keys import HostKeyPolicy
from tests import realsshd
from tests.realsshd import SshdGroup, SshdLab

pytestmark = pytest.mark.sshd

ADDRESS_COUNT = 20


def _host(lab: SshdLab, address: str, port: int, *, known_hosts: Path | None = None,
          jump: tuple[str, ...] = (), become: bool = True) -> ResolvedHost:
    return ResolvedHost(
        name=f"h-{address}",
        address=address,
        port=port,
        transport=Transport.SSH,
        os=OsFamily.LINUX,
        ssh=SshSettings(user=realsshd.TEST_USER, key_file=lab.client_key_file,
                        known_hosts=known_hosts or lab.known_hosts, jump_hosts=jump,
                        become=become, connect_timeout_s=3),
    )


async def test_login_and_sudo_on_many_addresses(sshd_lab: SshdLab, sshd_fleet: SshdGroup) -> None:
    async def probe(address: str) -> tuple[str, str, str]:
        async with asyncssh.connect(address, sshd_fleet.port, **sshd_lab.connect_options()) as c:
            user = await c.run("id -u", check=True)
            root = await c.run("sudo -n id -u", check=True)
            dialled = await c.run("echo $SSH_CONNECTION", check=True)
        return str(user.stdout).strip(), str(root.stdout).strip(), str(dialled.stdout).split()[2]

    # OpenSSH serves at most 16 listen sockets per process: 64 addresses need 4 sshd.
    assert len(sshd_fleet.processes) == -(-len(sshd_fleet.addresses) // 16)
    chosen = sshd_fleet.addresses[:ADDRESS_COUNT]
    results = await asyncio.gather(*(probe(address) for address in chosen))
    for address, (user, root, dialled) in zip(chosen, results, strict=True):
        assert user != "0", "the login user must be unprivileged"
        assert root == "0", f"{address}: sudo -n did not elevate"
        # the agent shim picks its host from this field
        assert dialled == address


async def test_agent_shim_is_on_the_login_path(sshd_lab: SshdLab, sshd_fleet: SshdGroup) -> None:
    if sshd_lab.shim_problem:
        pytest.skip(sshd_lab.shim_problem)

    async def probe(address: str) -> tuple[str, str, str]:
        async with asyncssh.connect(address, sshd_fleet.port, **sshd_lab.connect_options()) as c:
            located = await c.run("command -v azcmagent", check=True)
            version = await c.run("azcmagent version", check=True)
            shown = await c.run("sudo -n azcmagent show --json", check=True)
        return str(located.stdout).strip(), str(version.stdout), str(shown.stdout)

    chosen = sshd_fleet.addresses[:ADDRESS_COUNT]
    sshd_lab.reset_hosts(chosen)  # the shared fleet: an earlier test may have connected them
    for located, version, shown in await asyncio.gather(*(probe(a) for a in chosen)):
        assert located == str(sshd_lab.shim_dir / "azcmagent")
        assert version.startswith("azcmagent version ")
        assert '"status": "Disconnected"' in shown


async def test_ssh_transport_runs_commands_and_writes_private_files(
    sshd_lab: SshdLab, sshd_fleet: SshdGroup
) -> None:
    address = sshd_fleet.addresses[0]
    transport = SshTransport(_host(sshd_lab, address, sshd_fleet.port),
                             policy=HostKeyPolicy(known_hosts=sshd_lab.known_hosts))
    await transport.open()
    try:
        made = await transport.run("mktemp -d /tmp/arcfleet.XXXXXXXX", timeout_s=5)
        folder = made.stdout.strip()
        await transport.put_file(f"{folder}/connect.json", b"{}", private=True)
        modes = await transport.run(f"stat -c '%a %U' {folder} {folder}/connect.json", timeout_s=5)
        assert modes.stdout.split("\n")[:2] == [f"700 {realsshd.TEST_USER}",
                                                f"600 {realsshd.TEST_USER}"]
        await transport.run(f"rm -rf -- {folder}", timeout_s=5)
        gone = await transport.run(f"test -e {folder}", timeout_s=5)
        assert gone.exit_status == 1
    finally:
        await transport.close()


async def test_hop_through_the_jump_host(sshd_lab: SshdLab, sshd_fleet: SshdGroup) -> None:
    bastion = sshd_lab.bastion
    assert bastion is not None
    address = sshd_fleet.addresses[5]
    hop = f"{realsshd.TEST_USER}@{bastion.addresses[0]}:{bastion.port}"
    transport = SshTransport(_host(sshd_lab, address, sshd_fleet.port, jump=(hop,)),
                             policy=HostKeyPolicy(known_hosts=sshd_lab.known_hosts))
    await transport.open()
    try:
        result = await transport.run("echo $SSH_CONNECTION", timeout_s=5)
    finally:
        await transport.close()
    assert result.stdout.split()[2] == address
    # The bastion's sshd (LogLevel DEBUG1) logs each forwarded connection it opened.
    assert f"target {address} port {sshd_fleet.port}" in bastion.log_text()


async def test_a_dead_jump_host_makes_the_target_unreachable(
    sshd_lab: SshdLab, sshd_fleet: SshdGroup
) -> None:
    dead = "127.50.9.2"  # nothing listens here
    hop = f"{realsshd.TEST_USER}@{dead}:{sshd_fleet.port}"
    transport = SshTransport(_host(sshd_lab, sshd_fleet.addresses[0], sshd_fleet.port,
                                   jump=(hop,)),
                             policy=HostKeyPolicy(known_hosts=sshd_lab.known_hosts))
    with pytest.raises(HostUnreachable):
        await transport.open()


@pytest.fixture(scope="module")
def rekeyed(sshd_lab: SshdLab) -> SshdGroup:
    """An sshd whose host key differs from the one known_hosts lists for it."""
    group = sshd_lab.serve(["127.50.2.1"], remember_keys=False)
    return group


def _known_hosts_with(path: Path, group: SshdGroup, key: asyncssh.SSHKey) -> Path:
    public = key.export_public_key("openssh").decode().strip()
    path.write_text(f"[{group.addresses[0]}]:{group.port} {public}\n")
    return path


@pytest.mark.parametrize("accept_new", [False, True])
async def test_a_changed_host_key_is_refused(
    sshd_lab: SshdLab, rekeyed: SshdGroup, tmp_path: Path, accept_new: bool
) -> None:
    previous = asyncssh.generate_private_key("ssh-ed25519")
    known = _known_hosts_with(tmp_path / "known_hosts", rekeyed, previous)
    before = known.read_text()
    transport = SshTransport(_host(sshd_lab, rekeyed.addresses[0], rekeyed.port,
                                   known_hosts=known),
                             policy=HostKeyPolicy(known_hosts=known, accept_new=accept_new))
    with pytest.raises(HostAuthFailed, match="host key"):
        await transport.open()
    assert known.read_text() == before, "a changed key must never be written to known_hosts"


async def test_an_unknown_host_key_is_refused_unless_new_keys_are_accepted(
    sshd_lab: SshdLab, rekeyed: SshdGroup, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    host = _host(sshd_lab, rekeyed.addresses[0], rekeyed.port, known_hosts=known)
    with pytest.raises(HostAuthFailed, match="host key"):
        await SshTransport(host, policy=HostKeyPolicy(known_hosts=known)).open()

    trusting = SshTransport(host, policy=HostKeyPolicy(known_hosts=known, accept_new=True))
    await trusting.open()
    await trusting.close()
    learned = known.read_text()
    assert rekeyed.host_key.export_public_key("openssh").decode().split()[1] in learned

    # Now on file: a later connection verifies against it, with or without accept_new.
    again = SshTransport(host, policy=HostKeyPolicy(known_hosts=known))
    await again.open()
    await again.close()


def test_inventory_file_names_the_lab(sshd_lab: SshdLab, sshd_fleet: SshdGroup,
                                      tmp_path: Path) -> None:
    hosts = {f"h-{i:03d}": (a, sshd_fleet.port) for i, a in enumerate(sshd_fleet.addresses[:3])}
    path = sshd_lab.write_inventory(tmp_path / "inv", hosts, jump=True)
    assert realsshd.SP_SECRET not in path.read_text(), "it names the secret file, not the value"
    try:
        from fleet.inventory import load_inventory
    except ImportError:
        pytest.skip("the inventory loader (branch inventory) is not in this tree")
    resolved = load_inventory([path]).hosts
    folder = (tmp_path / "inv").resolve()
    assert [h.address for h in resolved] == sshd_fleet.addresses[:3]
    assert {h.ssh.key_file for h in resolved} == {folder / "id_ed25519"}
    assert {h.ssh.known_hosts for h in resolved} == {folder / "known_hosts"}
    bastion = sshd_lab.bastion
    assert bastion is not None
    hop = f"{realsshd.TEST_USER}@{bastion.addresses[0]}:{bastion.port}"
    assert all(h.ssh.jump_hosts == (hop,) and h.ssh.become for h in resolved)


async def test_a_changed_key_in_the_inventory_known_hosts_is_refused_with_accept_new(
    sshd_lab: SshdLab, rekeyed: SshdGroup, tmp_path: Path
) -> None:
    """The inventory's ssh.known_hosts lists the host with another key; the operator's
    --known-hosts file (the policy's) does not list it. Trust on first use must not apply:
    the host is known, with a different key."""
    previous = asyncssh.generate_private_key("ssh-ed25519")
    inventory_known = _known_hosts_with(tmp_path / "inventory_known_hosts", rekeyed, previous)
    operator_known = tmp_path / "operator_known_hosts"
    operator_known.write_text("")
    host = _host(sshd_lab, rekeyed.addresses[0], rekeyed.port, known_hosts=inventory_known)
    transport = SshTransport(host, policy=HostKeyPolicy(known_hosts=operator_known,
                                                        accept_new=True))
    with pytest.raises(HostAuthFailed, match="host key"):
        await transport.open()
    await transport.close()
    assert operator_known.read_text() == ""


async def test_a_missing_known_hosts_file_is_a_host_key_failure(
    sshd_lab: SshdLab, sshd_fleet: SshdGroup, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "known_hosts"
    host = _host(sshd_lab, sshd_fleet.addresses[0], sshd_fleet.port, known_hosts=missing)
    with pytest.raises(HostAuthFailed, match="host key not verified: no known_hosts file"):
        await SshTransport(host, policy=HostKeyPolicy(known_hosts=missing)).open()
    # With trust on first use the file is created and the key learned.
    trusting = SshTransport(host, policy=HostKeyPolicy(known_hosts=missing, accept_new=True))
    await trusting.open()
    await trusting.close()
    assert sshd_fleet.host_key.export_public_key("openssh").decode().split()[1] in (
        missing.read_text()
    )


async def test_fake_sudo_fallback_elevates_the_simulator(sshd_lab: SshdLab) -> None:
    """Where /usr/bin/sudo is missing, the fake sudo must still let `sudo -n` commands run as
    "root" for the simulator (and only for it: the login user stays unprivileged)."""
    if sshd_lab.shim_problem:
        pytest.skip(sshd_lab.shim_problem)
    fake = SshdLab.create(fake_sudo=True)
    try:
        group = fake.serve(["127.50.4.1"])
        options = fake.connect_options()
        async with asyncssh.connect("127.50.4.1", group.port, **options) as conn:
            which = await conn.run("command -v sudo", check=True)
            root = await conn.run("sudo -n id -u", check=True)
            user = await conn.run("id -u", check=True)
            logs = await conn.run("sudo -n azcmagent logs", check=False)
            unelevated = await conn.run("azcmagent logs", check=False)
    finally:
        fake.close()
    assert str(which.stdout).strip() == str(fake.shim_dir / "sudo")
    assert str(root.stdout).strip() == "0" and str(user.stdout).strip() != "0"
    # `azcmagent logs` needs root in the simulator: the fake elevation must make a difference.
    assert logs.exit_status != unelevated.exit_status, (logs.stderr, unelevated.stderr)

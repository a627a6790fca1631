"""The network-fault helpers (tests/netfaults.py) produce the faults they promise, and
:class:`fleet.transport.ssh.SshTransport` turns each into the error the engine classifies."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleet.errors import HostUnreachable
from fleet.inventory.model import OsFamily, ResolvedHost, SshSettings, Transport
from fleet.transport.ssh import SshTransport
from fleet.transport.ssh_keys import HostKeyPolicy
from tests import netfaults, realsshd
from tests.netfaults import FaultNamespace, NamespaceCallError, SilentListener
from tests.realsshd import SshdLab

TIMEOUT_S = 1.0
BLACKHOLED, REFUSED, SILENT = "127.50.20.1", "127.50.20.2", "127.50.20.3"
FAULT_PORT = 2298


def _host(address: str, port: int, key_file: Path | None = None,
          known_hosts: Path | None = None) -> ResolvedHost:
    return ResolvedHost(
        name=f"h-{address}", address=address, port=port, transport=Transport.SSH,
        os=OsFamily.LINUX,
        ssh=SshSettings(user=realsshd.TEST_USER, key_file=key_file, known_hosts=known_hosts,
                        connect_timeout_s=TIMEOUT_S),
    )


async def _open(host: ResolvedHost, known_hosts: Path) -> str:
    """Open and close an SSH session; "ok" or "<ExceptionType>: <reason>"."""
    if not known_hosts.exists():
        known_hosts.write_text("")  # a missing file is a different error (OSError)
    transport = SshTransport(host, policy=HostKeyPolicy(known_hosts=known_hosts))
    try:
        await transport.open()
        result = await transport.run("echo $SSH_CONNECTION", timeout_s=5)
    except HostUnreachable as exc:
        return f"HostUnreachable: {exc.reason}"
    finally:
        await transport.close()
    return f"ok: {result.stdout.strip()}"


# -- helpers that run inside the namespace (module level, so they pickle by reference) -------


async def _faults_seen_inside(known_hosts: Path) -> dict[str, tuple[str, str]]:
    """Something listens on every address; the rules decide what a client sees."""
    listeners = [SilentListener(address, FAULT_PORT) for address in (BLACKHOLED, REFUSED, SILENT)]
    try:
        seen: dict[str, tuple[str, str]] = {}
        for address in (BLACKHOLED, REFUSED, SILENT):
            raw = netfaults.tcp_probe(address, FAULT_PORT, TIMEOUT_S)
            seen[address] = (raw, await _open(_host(address, FAULT_PORT), known_hosts))
        return seen
    finally:
        for listener in listeners:
            listener.close()


def _links_inside() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return [line.split(":")[1].strip() for line in out.stdout.splitlines()]


def _raise_inside(kind: str) -> None:
    if kind == "value":
        raise ValueError("raised in the namespace")
    raise HostUnreachable("h-1", "cannot pickle my two-argument constructor")


# -- tests ----------------------------------------------------------------------------------


async def test_silent_listener_is_a_banner_timeout(tmp_path: Path) -> None:
    with SilentListener("127.50.30.1") as silent:
        outcome = await _open(_host(silent.address, silent.port), tmp_path / "known_hosts")
        accepted = silent.accepted
    assert outcome == f"HostUnreachable: no SSH answer within {TIMEOUT_S:g}s"
    assert accepted == 1, "TCP connected: the timeout is the missing banner, not the connect"


def test_namespace_has_only_loopback_and_is_removed(netns_unavailable: str | None) -> None:
    if netns_unavailable:
        pytest.skip(netns_unavailable)
    with FaultNamespace.create() as namespace:
        assert namespace.call(_links_inside) == ["lo"]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert namespace.name in listed
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert namespace.name not in listed


def test_call_brings_exceptions_back(fault_ns: FaultNamespace) -> None:
    with pytest.raises(ValueError, match="raised in the namespace"):
        fault_ns.call(_raise_inside, "value")
    with pytest.raises(NamespaceCallError) as caught:
        fault_ns.call(_raise_inside, "transport")
    assert caught.value.type_name == "fleet.errors.HostUnreachable"


def test_blackhole_refuse_and_silence_inside_the_namespace(
    fault_ns: FaultNamespace, tmp_path: Path
) -> None:
    fault_ns.blackhole(BLACKHOLED)
    fault_ns.refuse(REFUSED, FAULT_PORT)
    seen = fault_ns.call(_faults_seen_inside, tmp_path / "known_hosts")

    raw, transport = seen[BLACKHOLED]
    assert raw == "timeout"  # the SYN was dropped although something listens
    assert transport == f"HostUnreachable: no SSH answer within {TIMEOUT_S:g}s"

    raw, transport = seen[REFUSED]
    assert raw == "refused"  # reset by the rule although something listens
    assert transport.startswith("HostUnreachable: Connection refused (")

    raw, transport = seen[SILENT]
    assert raw == "connected"  # no rule: the listener answers TCP, then says nothing
    assert transport == f"HostUnreachable: no SSH answer within {TIMEOUT_S:g}s"


def test_the_rules_stay_inside_the_namespace(fault_ns: FaultNamespace) -> None:
    fault_ns.refuse(REFUSED, FAULT_PORT)
    with SilentListener(REFUSED, 0) as root_listener:
        fault_ns.refuse(REFUSED, root_listener.port)
        # From the root namespace the same address and port still connect.
        assert netfaults.tcp_probe(REFUSED, root_listener.port) == "connected"
    ours = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert netfaults.TABLE not in ours


async def _sessions_inside(lab_key: Path, known_hosts: Path, address: str, port: int,
                           ) -> str:
    return await _open(_host(address, port, key_file=lab_key, known_hosts=known_hosts),
                       known_hosts)


@pytest.mark.sshd
def test_real_sshd_in_the_namespace_then_faults(
    sshd_lab: SshdLab, fault_ns: FaultNamespace
) -> None:
    address = "127.50.21.1"
    group = sshd_lab.serve([address], port=FAULT_PORT, netns=fault_ns.name)
    args = (sshd_lab.client_key_file, sshd_lab.known_hosts, address, FAULT_PORT)
    try:
        healthy = fault_ns.call(_sessions_inside, *args)
        assert healthy.startswith("ok: ") and healthy.split()[3] == address

        fault_ns.blackhole(address)
        assert fault_ns.call(_sessions_inside, *args) == (
            f"HostUnreachable: no SSH answer within {TIMEOUT_S:g}s"
        )

        fault_ns.clear()
        fault_ns.refuse(address, FAULT_PORT)
        refused = fault_ns.call(_sessions_inside, *args)
        assert refused.startswith("HostUnreachable: Connection refused ("), refused
    finally:
        group.stop()
    # Never reachable from the root namespace: the sshd listens only inside.
    assert netfaults.tcp_probe(address, FAULT_PORT) == "refused"

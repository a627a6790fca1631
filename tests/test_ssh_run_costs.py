"""SshTransport's per-run savings: known_hosts and client keys read once, AES-GCM with the lab.

Both came out of the benchmarks (docs/benchmarks.md); these tests pin the behaviour, not timing.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh

from fleet.inventory import load_inventory
from fleet.lab.fleet import LabFleet
from fleet.transport.ssh import ClientKeys, HostKeyPolicy, SshTransport

SUBNET = "127.65"  # the benchmark helper's range, 127.64-69


def _policy_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_known_hosts_is_parsed_once_and_reparsed_when_the_file_changes(tmp_path: Path) -> None:
    first = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    second = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    path = _policy_file(tmp_path, [f"[127.65.0.1]:2222 {first}"])
    policy = HostKeyPolicy(known_hosts=path)

    loaded = policy.load(path)
    assert loaded is not None
    assert policy.load(path) is loaded  # same object: no second parse
    assert policy.is_known("127.65.0.1", 2222)
    assert not policy.is_known("127.65.0.2", 2222)

    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"[127.65.0.2]:2222 {second}\n")
    assert policy.load(path) is not loaded
    assert policy.is_known("127.65.0.2", 2222)


def test_unreadable_known_hosts_is_left_to_asyncssh(tmp_path: Path) -> None:
    policy = HostKeyPolicy(known_hosts=tmp_path / "missing")
    assert policy.load(tmp_path / "missing") is None
    broken = _policy_file(tmp_path, ["@bogus-marker 127.65.0.1 ssh-ed25519 AAAA"])
    assert policy.load(broken) is None
    assert not policy.is_known("127.65.0.1", 22)


async def test_lab_session_uses_aes_gcm_and_the_shared_known_hosts(tmp_path: Path) -> None:
    async with LabFleet(tmp_path / "lab", hosts=2, subnet=SUBNET) as lab:
        hosts = load_inventory([lab.inventory_path]).hosts
        policy = HostKeyPolicy(known_hosts=lab.known_hosts_file)
        keys = ClientKeys()
        ciphers = []
        for host in hosts:
            transport = SshTransport(host, policy=policy, client_keys=keys)
            await transport.open()
            try:
                conn = transport._require()
                ciphers.append(conn.get_extra_info("send_cipher"))
                result = await transport.run("id -u", timeout_s=10)
                assert result.exit_status == 0
            finally:
                await transport.close()
        assert ciphers == ["aes256-gcm@openssh.com"] * 2
        assert len(policy._parsed) == 1  # both hosts matched against one parsed file
        assert list(keys._loaded) == [lab.key_file]  # and logged in with one loaded key


def test_client_keys_are_loaded_once_or_left_to_asyncssh(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    plain = tmp_path / "id_plain"
    plain.write_bytes(key.export_private_key())
    locked = tmp_path / "id_locked"
    locked.write_bytes(key.export_private_key("pkcs8-pem", passphrase="not given"))
    keys = ClientKeys()
    loaded = keys.get(plain)
    assert loaded is not None and loaded[0].public_data == key.public_data
    assert keys.get(plain) is loaded
    assert keys.get(locked) is None  # asyncssh asks for / reports the passphrase itself
    assert keys.get(tmp_path / "missing") is None

"""SshTransport's per-run savings: known_hosts and client keys read once, AES-GCM with the lab.

Both came out of the benchmarks (docs/benchmarks.md); these tests pin the behaviour, not timing.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import pytest

from fleet.inventory import load_inventory
from fleet.lab.fleet import LabFleet
from fleet.transport.ssh import SshTransport
from fleet.transport.ssh_keys import ClientKeys, HostKeyPolicy, KnownHostsUnusable

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
    assert policy.is_known("127.65.0.1", "127.65.0.1", 2222)
    assert not policy.is_known("127.65.0.2", "127.65.0.2", 2222)

    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"[127.65.0.2]:2222 {second}\n")
    assert policy.load(path) is not loaded
    assert policy.is_known("127.65.0.2", "127.65.0.2", 2222)


def test_unusable_known_hosts_is_refused_not_treated_as_empty(tmp_path: Path) -> None:
    policy = HostKeyPolicy(known_hosts=tmp_path / "missing")
    with pytest.raises(KnownHostsUnusable, match="no known_hosts file"):
        policy.load(tmp_path / "missing")
    broken = _policy_file(tmp_path, ["@bogus-marker 127.65.0.1 ssh-ed25519 AAAA"])
    with pytest.raises(KnownHostsUnusable, match="bogus"):
        policy.load(broken)


async def test_lab_session_uses_aes_gcm_and_the_shared_known_hosts(tmp_path: Path) -> None:
    async with LabFleet(tmp_path / "lab", hosts=2, subnet=SUBNET) as lab:
        hosts = load_inventory([lab.inventory_path]).hosts
        policy = HostKeyPolicy(known_hosts=lab.known_hosts_file)
        keys = ClientKeys()
        ciphers = []
        known_text = lab.known_hosts_file.read_bytes()
        key_text = lab.key_file.read_bytes()
        try:
            for index, host in enumerate(hosts):
                if index == 1:
                    _spoil_behind_the_caches(lab.known_hosts_file, lab.key_file)
                transport = SshTransport(host, policy=policy, client_keys=keys)
                await transport.open()
                try:
                    conn = transport._require()
                    ciphers.append(conn.get_extra_info("send_cipher"))
                    result = await transport.run("id -u", timeout_s=10)
                    assert result.exit_status == 0
                finally:
                    await transport.close()
        finally:
            lab.known_hosts_file.write_bytes(known_text)
            lab.key_file.write_bytes(key_text)
        assert ciphers == ["aes256-gcm@openssh.com"] * 2
        assert len(policy._parsed) == 1  # both hosts matched against one parsed file
        assert list(keys._loaded) == [lab.key_file]  # and logged in with one loaded key


def _spoil_behind_the_caches(known_hosts: Path, key_file: Path) -> None:
    """Make both files unusable while keeping what the parse-once caches key on (size and
    mtime): the second connection succeeds only if the transport hands asyncssh the parsed
    copies, not the paths (asyncssh would read and parse these again, and fail)."""
    stat = known_hosts.stat()
    known_hosts.write_bytes(b"@garbage " + b"x" * (stat.st_size - 10) + b"\n")
    os.utime(known_hosts, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    key_file.write_bytes(b"not a key\n")


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

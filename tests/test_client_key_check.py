"""A client key file that cannot be used is bad input: refused before any host is contacted.

Before, a missing key file made every host of the inventory fail at its handshake as
"unreachable" ("check the address, port and firewall"), and a garbage or passphrase-protected
one as an "internal error"; ``inventory validate`` said OK. Each case here runs the real CLI in
its own process against a real listening socket that counts the connections it accepts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncssh
import pytest

from fleet.transport.ssh_keys import ClientKeys
from tests._inventory_util import ARC_VARS_INI

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def counting_listeners() -> Iterator[tuple[list[int], list[int]]]:
    """Two TCP ports on loopback (one per host); the list grows by one for every connection
    either accepts."""
    accepted: list[int] = []
    servers = [socket.socket(), socket.socket()]
    for server in servers:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.2)
    stop = threading.Event()

    def serve(server: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield [s.getsockname()[1] for s in servers], accepted
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for server in servers:
            server.close()


def _key_files(tmp_path: Path) -> dict[str, Path]:
    good = asyncssh.generate_private_key("ssh-ed25519")
    files = {
        "good": tmp_path / "id_good",
        "missing": tmp_path / "id_missing",
        "garbage": tmp_path / "id_garbage",
        "passphrase": tmp_path / "id_locked",
        "public": tmp_path / "id_good.pub",
        "directory": tmp_path / "id_dir",
    }
    files["good"].write_bytes(good.export_private_key())
    files["public"].write_bytes(good.export_public_key())
    files["garbage"].write_text("not a key\n")
    locked = asyncssh.generate_private_key("ssh-ed25519")
    files["passphrase"].write_bytes(
        locked.export_private_key("pkcs8-pem", passphrase="s3cret-pass"))
    files["directory"].mkdir()
    for path in files.values():
        if path.is_file():
            path.chmod(0o600)
    return files


def _yaml_inventory(tmp_path: Path, ports: list[int], key: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    hosts = "".join(f"  web{i}:\n    address: 127.0.0.1\n    port: {port}\n"
                    for i, port in enumerate(ports, 1))
    path.write_text(
        "arcfleet: 1\n"
        "defaults:\n"
        "  transport: ssh\n"
        f"  ssh: {{user: arc, key_file: {key}, known_hosts: {tmp_path / 'known_hosts'}}}\n"
        "  azure:\n"
        "    tenant_id: 7a3c2f10-5b1e-4d2a-9c6f-0e8b4a1d2c3e\n"
        "    subscription_id: 3f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f\n"
        "    resource_group: rg-keys\n"
        "    location: westeurope\n"
        "    service_principal:\n"
        "      client_id: c0ffee00-1234-4abc-8def-00000000a11e\n"
        f"      secret: {{file: {tmp_path / 'sp_secret'}}}\n"
        f"hosts:\n{hosts}",
        encoding="utf-8",
    )
    (tmp_path / "known_hosts").write_text("")
    secret = tmp_path / "sp_secret"
    secret.write_text("sp-secret-value\n")
    secret.chmod(0o600)
    return path


def _arcfleet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True,
                          text=True, cwd=cwd, env={**env, "PYTHONPATH": str(REPO)},
                          timeout=120)


EXPECTED = {
    "missing": "no such file",
    "garbage": "not a private key asyncssh can read",
    "passphrase": "passphrase-protected",
    "public": "a public key (.pub)",
    "directory": "a directory",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_an_unusable_key_file_is_refused_by_validate_and_by_the_run(
        tmp_path: Path, case: str) -> None:
    keys = _key_files(tmp_path)
    with counting_listeners() as (ports, accepted):
        inventory = _yaml_inventory(tmp_path, ports, keys[case])
        for args in (["inventory", "validate", "-i", str(inventory)],
                     ["onboard", "-i", str(inventory), "--state-dir", str(tmp_path / "state"),
                      "--no-azure-check"]):
            done = _arcfleet(*args, cwd=tmp_path)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            lines = done.stderr.strip().splitlines()
            # One line per key file (not per host), naming the file, the host and the field.
            prefix = f"error: {inventory}: host web1: field ssh.key_file: key file {keys[case]}: "
            assert len(lines) == 1 and lines[0].startswith(prefix), done.stderr
            assert EXPECTED[case] in lines[0]
            assert "Traceback" not in done.stderr
        assert accepted == [], "a host was contacted"
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("run.log"))


def test_a_good_key_file_passes_and_the_run_reaches_the_host(tmp_path: Path) -> None:
    keys = _key_files(tmp_path)
    with counting_listeners() as (ports, accepted):
        inventory = _yaml_inventory(tmp_path, ports, keys["good"])
        done = _arcfleet("inventory", "validate", "-i", str(inventory), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "2 hosts OK" in done.stdout
        # The listener is no SSH server: the hosts fail, but they were contacted.
        run = _arcfleet("onboard", "-i", str(inventory), "--state-dir", str(tmp_path / "state"),
                        "--no-azure-check", "--json", cwd=tmp_path)
        assert run.returncode == 1, run.stderr
        assert len(accepted) >= 2


def test_an_ansible_private_key_file_that_is_missing_is_refused(tmp_path: Path) -> None:
    with counting_listeners() as ([port, _], accepted):
        inventory = tmp_path / "hosts.ini"
        inventory.write_text(
            f"[web]\napp1 ansible_host=127.0.0.1 ansible_port={port}\n\n[web:vars]\n"
            "ansible_ssh_private_key_file=keys/absent\n\n" + ARC_VARS_INI, encoding="utf-8")
        done = _arcfleet("inventory", "validate", "-i", str(inventory), cwd=tmp_path)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "host app1" in done.stderr and "ssh.key_file" in done.stderr
        assert "absent: no such file" in done.stderr
        assert accepted == []


def test_keys_load_once_and_a_good_file_has_no_problem(tmp_path: Path) -> None:
    keys = _key_files(tmp_path)
    client_keys = ClientKeys()
    assert client_keys.problem(keys["good"]) is None
    first = client_keys.get(keys["good"])
    assert first is not None and client_keys.get(keys["good"]) is first
    assert client_keys.get(keys["missing"]) is None
    # The reason never carries the key's text.
    reason = client_keys.problem(keys["passphrase"]) or ""
    assert "PRIVATE KEY" not in reason and "s3cret" not in reason

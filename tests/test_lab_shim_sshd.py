"""The standalone shim (``arcfleet-lab-azcmagent``) as ``azcmagent`` behind a real OpenSSH sshd.

Skipped when /usr/sbin/sshd is missing or we are not root (we create a throwaway user). sshd runs
in the foreground (-D) as our subprocess and is killed at teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

import fleet

SSHD = Path("/usr/sbin/sshd")
USER = "arclabshim"
ADDRESSES = ("127.21.0.1", "127.21.0.2")
WORKTREE = Path(fleet.__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.sshd,
    pytest.mark.skipif(not SSHD.exists(), reason="needs OpenSSH sshd at /usr/sbin/sshd "
                       "(apt-get install openssh-server)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a throwaway login user"),
]


def _world_reachable(path: Path, bit: int = stat.S_IXOTH) -> bool:
    """Every directory up to ``path`` is traversable by others and the file has ``bit``."""
    real = path.resolve()
    if not real.exists() or not os.stat(real).st_mode & bit:
        return False
    return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in real.parents)


def _python_for_user() -> str | None:
    for candidate in (Path(sys.executable), Path("/usr/bin/python3")):
        if not _world_reachable(candidate):
            continue
        probe = subprocess.run([str(candidate), "-c", "import yaml"], capture_output=True)
        if probe.returncode == 0:
            return str(candidate.resolve())
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESSES[0], 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Sshd:
    port: int
    key: asyncssh.SSHKey
    known_hosts: str
    lab_root: Path
    base: Path


@pytest.fixture()
def sshd() -> Iterator[Sshd]:
    python = _python_for_user()
    if python is None:
        pytest.skip("no Python with PyYAML that an unprivileged user can run")
    if not _world_reachable(WORKTREE / "fleet" / "__init__.py", stat.S_IROTH):
        pytest.skip(f"{WORKTREE} is not readable by other users")
    base = Path(tempfile.mkdtemp(prefix="arcfleet-sshd-", dir="/tmp"))
    base.chmod(0o755)
    created_user = False
    process: subprocess.Popen[bytes] | None = None
    try:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "-M", "-d", str(base / "home"), "-s", "/bin/sh", USER],
                           check=True)
            created_user = True
        subprocess.run(["usermod", "-p", "*", "-d", str(base / "home"), USER], check=True)
        (base / "home").mkdir()
        shutil.chown(base / "home", USER)
        bin_dir = base / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "azcmagent"
        wrapper.write_text(f'#!/bin/sh\nexec {python} -m fleet.lab.agent.shim "$@"\n')
        wrapper.chmod(0o755)
        lab_root = base / "lab"
        lab_root.mkdir()
        lab_root.chmod(0o1777)
        scenario_file = base / "scenarios.yaml"
        scenario_file.write_text(f"default: success\nhosts:\n  {ADDRESSES[1]}: already_connected\n")
        host_key = base / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                       check=True)
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        (base / "authorized_keys").write_bytes(client_key.export_public_key("openssh"))
        port = _free_port()
        config = base / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", *(f"ListenAddress {a}" for a in ADDRESSES),
            f"HostKey {host_key}", f"PidFile {base / 'sshd.pid'}", "UsePAM no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", f"AllowUsers {USER}",
            f"AuthorizedKeysFile {base / 'authorized_keys'}", "StrictModes no", "UseDNS no",
            "PrintMotd no", "PrintLastLog no", "MaxStartups 100", "MaxSessions 50",
            f"SetEnv PATH={bin_dir}:/usr/bin:/bin ARCFLEET_LAB_ROOT={lab_root} "
            f"ARCFLEET_LAB_SCENARIO={scenario_file} PYTHONPATH={WORKTREE}",
            "Subsystem sftp internal-sftp", ""]))
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen([str(SSHD), "-D", "-f", str(config), "-E",
                                    str(base / "sshd.log")])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((ADDRESSES[0], port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"sshd did not start: {(base / 'sshd.log').read_text()}")
                time.sleep(0.05)
        pub = (base / "host_ed25519.pub").read_text().split()
        known = "".join(f"[{a}]:{port} {pub[0]} {pub[1]}\n" for a in ADDRESSES)
        yield Sshd(port, client_key, known, lab_root, base)
    finally:
        if process is not None:
            process.kill()
            process.wait(timeout=10)
        if created_user:
            subprocess.run(["userdel", USER], check=False)
        shutil.rmtree(base, ignore_errors=True)


async def _run(env: Sshd, address: str, *commands: str) -> list[asyncssh.SSHCompletedProcess]:
    async with asyncssh.connect(address, env.port, username=USER, client_keys=[env.key],
                                known_hosts=asyncssh.import_known_hosts(env.known_hosts)) as c:
        return [await c.run(command) for command in commands]


def test_shim_under_real_sshd(sshd: Sshd) -> None:
    first, second = ADDRESSES
    version, show, uid, missing = asyncio.run(_run(
        sshd, first, "azcmagent version", "azcmagent show --json", "id -u",
        "azcmagent connect --config /tmp/arcfleet.none/connect.json --verbose"))
    assert version.exit_status == 0 and "azcmagent version" in str(version.stdout)
    assert json.loads(str(show.stdout))["status"] == "Disconnected"
    assert str(uid.stdout).strip() != "0"
    assert missing.exit_status == 19  # the shim read the real filesystem: no such file

    async def with_config() -> asyncssh.SSHCompletedProcess:
        async with asyncssh.connect(first, sshd.port, username=USER, client_keys=[sshd.key],
                                    known_hosts=asyncssh.import_known_hosts(sshd.known_hosts)
                                    ) as conn:
            made = await conn.run("mktemp -d /tmp/arcfleet.XXXXXXXX", check=True)
            path = f"{str(made.stdout).strip()}/connect.json"
            async with conn.start_sftp_client() as sftp, sftp.open(
                    path, "w", attrs=asyncssh.SFTPAttrs(permissions=0o600)) as fh:
                await fh.write(json.dumps({"service-principal-id": "x", "verbose": True}))
            result = await conn.run(f"azcmagent connect --config {path} --verbose")
            await conn.run(f"rm -rf -- {path.rsplit('/', 1)[0]}")
            return result

    unelevated = asyncio.run(with_config())
    assert unelevated.exit_status == 18  # config found, but the login user is not root
    assert "AZCM0018: Admin Privileges Needed" in str(unelevated.stdout)

    # The second address has its own scenario (already connected), chosen by SSH_CONNECTION.
    (other,) = asyncio.run(_run(sshd, second, "azcmagent show --json"))
    assert json.loads(str(other.stdout))["status"] == "Connected"
    assert (sshd.lab_root / second / "state.json").exists()

    # State persists per host: connect as root directly, then the SSH user sees it connected.
    env = {**os.environ, "SSH_CONNECTION": f"127.0.0.1 1 {first} {sshd.port}",
           "ARCFLEET_LAB_ROOT": str(sshd.lab_root), "PYTHONPATH": str(WORKTREE)}
    config = sshd.base / "root-connect.json"
    config.write_text(json.dumps({
        "service-principal-id": "c0ffee00-1234-4abc-8def-00000000a11e",
        "service-principal-secret": "anything", "tenant-id": "7a3c2f10-5b1e-4d2a-9c6f-0e8b4a1d2c3e",
        "subscription-id": "3f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f", "resource-group": "rg-arclab",
        "location": "westeurope"}))
    root_run = subprocess.run(
        [sys.executable, "-m", "fleet", "lab", "agent-shim", "connect", "--config",
         str(config), "--resource-name", "shimhost"],
        env=env, capture_output=True, text=True, timeout=60)
    assert root_run.returncode == 0, root_run.stdout + root_run.stderr
    (after,) = asyncio.run(_run(sshd, first, "azcmagent show --json"))
    shown = json.loads(str(after.stdout))
    assert (shown["status"], shown["resourceName"]) == ("Connected", "shimhost")

"""arcfleet's own steps on real OpenSSH (issue 16 item 12): the private directory is 0700 and the
config file 0600 while ``azcmagent connect`` runs, and one SSH session per host does the whole
common path (counted from sshd's own log). A script that made the directory 0755, or wrote the
file without ``umask 077``, fails here: the modes are read from this machine's /tmp (the "hosts"
are this machine) by a watcher, while the real script runs under the real ``sh`` and ``sudo``.
"""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import fleet
from fleet.inventory.model import OsFamily, ResolvedHost, SshSettings, Transport
from fleet.transport.base import StdinGate
from fleet.transport.ssh import SshTransport
from fleet.transport.ssh_keys import HostKeyPolicy
from tests import realsshd
from tests.realsshd import SshdGroup, SshdLab

pytestmark = pytest.mark.sshd

WORKTREE = Path(fleet.__file__).resolve().parents[1]
HOSTS = 4


def _watch(stop: threading.Event, seen: dict[str, tuple[int, int, int]]) -> None:
    """Record (dir mode, file mode, file owner uid) of every config file that shows up."""
    while not stop.is_set():
        for config in Path("/tmp").glob("arcfleet.????????/connect.json"):
            try:
                dir_mode = stat.S_IMODE(config.parent.stat().st_mode)
                info = config.stat()
            except FileNotFoundError:
                continue
            seen.setdefault(str(config), (dir_mode, stat.S_IMODE(info.st_mode), info.st_uid))
        stop.wait(0.02)


def test_private_modes_and_one_session_per_host_on_real_sshd(
    sshd_lab: SshdLab, tmp_path: Path
) -> None:
    lab = sshd_lab
    if lab.shim_problem:
        pytest.skip(lab.shim_problem)
    group = lab.serve(realsshd.addresses("127.50.12.1", HOSTS), log_level="VERBOSE")
    try:
        lab.reset_hosts(group.addresses)
        # A connect long enough for the watcher to see the file.
        lab.set_scenario({"default": {"scenario": "slow", "latency_s": 1.5}})
        inventory = lab.write_inventory(
            tmp_path / "inv",
            {f"m-{i}": (address, group.port) for i, address in enumerate(group.addresses)})
        seen: dict[str, tuple[int, int, int]] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(stop, seen), daemon=True)
        watcher.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "fleet", "onboard", "-i", str(inventory),
                 "--state-dir", str(tmp_path / "state"), "--json"],
                capture_output=True, text=True, timeout=180, cwd=WORKTREE, check=False)
        finally:
            stop.set()
            watcher.join()
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert done.stdout.count('"category": "connected"') == HOSTS
        assert len(seen) == HOSTS, seen
        # 0700 directory, 0600 file, owned by root (written under sudo), for every host.
        assert set(seen.values()) == {(0o700, 0o600, 0)}, seen
        assert not list(Path("/tmp").glob("arcfleet.????????/connect.json"))
        sessions = group.log_text().count("Starting session:")
        assert sessions == HOSTS, group.log_text()[-3000:]
    finally:
        lab.set_scenario("default: success\n")
        lab.reset_hosts(group.addresses)
        group.stop()
        lab.groups.remove(group)


def test_a_config_written_without_privacy_would_be_seen() -> None:
    # The watcher is not blind: a 0755 directory with a 0644 file is recorded as such.
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="arcfleet.", dir="/tmp"))
    try:
        if len(scratch.name) != len("arcfleet.") + 8:
            pytest.skip("tempfile made a name of another length")
        scratch.chmod(0o755)
        (scratch / "connect.json").write_text("{}")
        (scratch / "connect.json").chmod(0o644)
        seen: dict[str, tuple[int, int, int]] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(stop, seen), daemon=True)
        watcher.start()
        time.sleep(0.2)
        stop.set()
        watcher.join()
        assert seen[str(scratch / "connect.json")][:2] == (0o755, 0o644)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def test_time_at_the_gate_does_not_count_against_the_script_deadline(
    sshd_lab: SshdLab, sshd_fleet: SshdGroup
) -> None:
    # The engine opens a gated script's stdin when it holds an agent slot, which may take
    # longer than the script's deadline: that wait is not the host's. A script that has not
    # said it waits (no ready record) is on the clock as before.
    address = sshd_fleet.addresses[1]
    host = ResolvedHost(
        name=f"h-{address}", address=address, port=sshd_fleet.port, transport=Transport.SSH,
        os=OsFamily.LINUX,
        ssh=SshSettings(user=realsshd.TEST_USER, key_file=sshd_lab.client_key_file,
                        known_hosts=sshd_lab.known_hosts, connect_timeout_s=10),
    )
    transport = SshTransport(host, policy=HostKeyPolicy(known_hosts=sshd_lab.known_hosts))
    await transport.open()
    try:
        for at_gate in (True, False):
            gate = StdinGate()

            async def open_late(gate: StdinGate = gate, at_gate: bool = at_gate) -> None:
                if at_gate:
                    gate.waiting()
                await asyncio.sleep(2.5)
                gate.open(b"go\nthe config")

            opener = asyncio.create_task(open_late())
            result = await transport.run_script(
                "read -r go; echo \"$go\"; cat", gate, timeout_s=1.5, output_cap=65536)
            opener.cancel()
            if at_gate:
                assert not result.timed_out, result
                assert result.stdout == b"go\nthe config"
                assert result.exit_status == 0
            else:
                assert result.timed_out, result
    finally:
        await transport.close()

"""``arcfleet lab up`` in the foreground: writes a ready inventory, serves it, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import asyncssh
import yaml


def test_lab_up_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    inventory = tmp_path / "out" / "lab.yaml"
    process = subprocess.Popen(
        [sys.executable, "-m", "fleet", "lab", "up", "--hosts", "3", "--subnet", "127.21",
         "--scenario", "success", "--work-dir", str(tmp_path / "work"),
         "--inventory-out", str(inventory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("run: "):
                break
        assert lines[-1] == f"run: arcfleet onboard -i {inventory}\n", lines
        body = yaml.safe_load(inventory.read_text())
        assert body["defaults"]["ssh"]["key_file"] == "../work/id_ed25519"
        host = body["hosts"]["lab-0002"]
        assert host["address"] == "127.21.0.2"

        async def version() -> str:
            async with asyncssh.connect(
                host["address"], host["port"], username="arc",
                client_keys=[str(tmp_path / "work" / "id_ed25519")],
                known_hosts=str(tmp_path / "work" / "known_hosts")) as conn:
                return str((await conn.run("azcmagent version", check=True)).stdout)

        assert asyncio.run(version()).startswith("azcmagent version ")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_lab_up_rejects_an_unknown_scenario(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleet", "lab", "up", "--hosts", "1", "--subnet", "127.21",
         "--scenario", "no-such-thing", "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no-such-thing: field --scenario:")

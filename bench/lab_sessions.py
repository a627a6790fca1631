"""Benchmark: one lab process serving N SSH hosts (and M WinRM hosts when the WinRM lab server is
in the tree); a separate client process opens a session to every host and runs
``azcmagent version``. Prints wall times; asserts nothing.

    /work/venv/bin/python bench/lab_sessions.py [--hosts 500] [--windows 100] [--concurrency 500]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncssh
import yaml

REPO = Path(__file__).resolve().parents[1]
# Measure arcfleet as installed: Python keeps its modules' compiled bytecode (pip writes it, and a
# source tree gets it on first import) unless PYTHONDONTWRITEBYTECODE is set, as on some CI and
# sandbox machines, where every run would compile all of arcfleet again (~0.25 s of CPU).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def start_lab(work: Path, hosts: int, windows: int, subnet: str) -> tuple[subprocess.Popen[str],
                                                                          dict[str, Any]]:
    inventory = work / "inventory.yaml"
    process = subprocess.Popen(
        [sys.executable, "-m", "fleet", "lab", "up", "--hosts", str(hosts), "--windows",
         str(windows), "--scenario", "success", "--subnet", subnet, "--work-dir", str(work),
         "--inventory-out", str(inventory)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("run: "):
            break
    else:
        raise SystemExit(f"lab did not start (exit {process.wait()})")
    return process, yaml.safe_load(inventory.read_text())


async def ssh_all(work: Path, hosts: list[dict[str, Any]], concurrency: int) -> int:
    key = asyncssh.read_private_key(str(work / "id_ed25519"))
    known = asyncssh.read_known_hosts(str(work / "known_hosts"))
    gate = asyncio.Semaphore(concurrency)

    async def one(host: dict[str, Any]) -> bool:
        async with gate, asyncssh.connect(host["address"], host["port"], username="arc",
                                          client_keys=[key], known_hosts=known) as conn:
            result = await conn.run("azcmagent version")
            return result.exit_status == 0

    results = await asyncio.gather(*(one(h) for h in hosts), return_exceptions=True)
    return sum(1 for r in results if r is True)


def winrm_all(work: Path, hosts: list[dict[str, Any]], threads: int) -> int:
    import winrm  # type: ignore[import-untyped,unused-ignore]

    password = (work / "winrm_password").read_text().strip()
    # The same PowerShell arcfleet sends (the lab's PowerShell understands arcfleet's forms).
    from fleet.azcm.commands_windows import WindowsAgentCommands  # type: ignore[import-not-found,unused-ignore]

    agent = r"C:\Program Files\AzureConnectedMachineAgent\azcmagent.exe"
    script = str(WindowsAgentCommands().version(agent))

    def one(host: dict[str, Any]) -> bool:
        session = winrm.Session(f"http://{host['address']}:{host['port']}/wsman",
                                auth=("arcadmin", password), transport="basic")
        return int(session.run_ps(script).status_code) == 0

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(one, hosts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--subnet", default="127.21")
    args = parser.parse_args()
    have_winrm = importlib.util.find_spec("fleet.lab.winrm_server") is not None
    windows = args.windows if have_winrm else 0
    with tempfile.TemporaryDirectory(prefix="arcfleet-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        lab, inventory = start_lab(work, args.hosts, windows, args.subnet)
        print(f"lab up: {args.hosts} SSH + {windows} WinRM hosts in "
              f"{time.perf_counter() - started:.2f}s"
              + ("" if have_winrm else " (no fleet.lab.winrm_server in this tree)"))
        try:
            entries = list(inventory["hosts"].values())
            ssh_hosts = [h for h in entries if h.get("transport", "ssh") == "ssh"]
            t0 = time.perf_counter()
            ok = asyncio.run(ssh_all(work, ssh_hosts, args.concurrency))
            ssh_s = time.perf_counter() - t0
            print(f"ssh:   {ok}/{len(ssh_hosts)} sessions ran 'azcmagent version' in "
                  f"{ssh_s:.2f}s ({len(ssh_hosts) / ssh_s:.0f} hosts/s)")
            win_hosts = [h for h in entries if h.get("transport") == "winrm"]
            if win_hosts:
                t0 = time.perf_counter()
                ok = winrm_all(work, win_hosts, min(100, len(win_hosts)))
                win_s = time.perf_counter() - t0
                print(f"winrm: {ok}/{len(win_hosts)} shells ran 'azcmagent version' in "
                      f"{win_s:.2f}s ({len(win_hosts) / win_s:.0f} hosts/s)")
        finally:
            lab.send_signal(signal.SIGTERM)
            print(f"lab exit status {lab.wait(timeout=60)}")


if __name__ == "__main__":
    main()

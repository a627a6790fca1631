"""Onboarding Windows hosts over WinRM at scale against the lab: wall time as a ratio to ideal.

A fresh lab (``python -m fleet lab up --hosts 0 --windows N --latency L``) per measurement, in
its own process, so its CPU is not charged to the tool; every connect sleeps L s on the host. The
ideal wall time at a given forks is ceil(N / forks) x L. The server is the lab's in-process
WS-Management endpoint (Basic over HTTP on loopback), not a Windows host: a real WinRM service
costs more per exchange, so the ratio says what arcfleet's own scheduling costs, nothing more.

    .venv/bin/python bench/winrm_scale.py                       # 200 hosts, L 5 s, forks 200
    .venv/bin/python bench/winrm_scale.py --cases 200:200,96:96,96:32 \\
        --baseline /tmp/main     # each case also run from another checkout (before/after)
    .venv/bin/python bench/winrm_scale.py --floor   # first a bare pywinrm loop (WINRM_FLOOR)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from onboard_scale import raise_fd_limit, run_measured

REPO = Path(__file__).resolve().parents[1]
# Measure arcfleet as installed: Python keeps its modules' compiled bytecode (pip writes it, and a
# source tree gets it on first import) unless PYTHONDONTWRITEBYTECODE is set, as on some CI and
# sandbox machines, where every run would compile all of arcfleet again (~0.25 s of CPU).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
PYTHON = sys.executable


@dataclass
class Row:
    label: str
    hosts: int
    latency_s: float
    forks: int
    wall_s: float
    ideal_s: float
    ok_hosts: int
    peak_rss_mb: float
    cpu_s: float  # arcfleet's user + system time
    load_after: float  # 1-minute load average after the run (noise indicator)
    checkout: str

    @property
    def ratio(self) -> float:
        return self.wall_s / self.ideal_s


@contextlib.contextmanager
def windows_lab(hosts: int, latency_s: float, scratch: Path, subnet: str) -> Iterator[Path]:
    """A fresh lab of ``hosts`` Windows hosts in its own process; yields its inventory."""
    work = Path(tempfile.mkdtemp(prefix="lab-", dir=scratch))
    log_path = work / "lab.log"
    command = [PYTHON, "-m", "fleet", "lab", "up", "--hosts", "0", "--windows", str(hosts),
               "--latency", str(latency_s), "--scenario", "success", "--work-dir", str(work),
               "--subnet", subnet, "--port", "0", "--winrm-port", "0"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while "lab: serving" not in log_path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"lab did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            yield work / "inventory.yaml"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            shutil.rmtree(work, ignore_errors=True)


def run_onboard(checkout: Path, inventory: Path, forks: int,
                scratch: Path) -> tuple[float, int, float, float]:
    state = Path(tempfile.mkdtemp(prefix="state-", dir=scratch))
    command = [PYTHON, "-m", "fleet", "onboard", "-i", str(inventory), "--forks", str(forks),
               "--connect-rate", "0", "--state-dir", str(state), "--json"]
    # The checkout's own package wins over the installed one (cwd first on sys.path with -m).
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done, _ = run_measured(command, env=env, cwd=checkout)
    ok = sum(1 for line in done.stdout.splitlines()
             if line.startswith("{") and json.loads(line).get("category") == "connected")
    return done.wall_s, ok, done.max_rss_kb / 1024, done.cpu_s


# The least any pywinrm tool can do against the same lab: one shell and one command per host,
# `forks` threads, the command being only the agent's connect (its config file placed on every
# host beforehand, outside the timing): Create, Command, Receive until done, Delete. No
# inventory, no store, no report, no Azure preflight, no script.
WINRM_FLOOR = r"""
import json, sys
from concurrent.futures import ThreadPoolExecutor
from winrm.protocol import Protocol
spec = json.loads(sys.stdin.read())
def one(target):
    proto = Protocol(target["endpoint"], transport="basic", username=spec["user"],
                     password=spec["password"], operation_timeout_sec=20, read_timeout_sec=30)
    shell = proto.open_shell(noprofile=True, codepage=65001)
    command = proto.run_command(shell, target["program"], target["args"])
    done, status = False, None
    while not done:
        _, _, status, done = proto.get_command_output_raw(shell, command)
    proto.close_shell(shell)
    return status == 0
with ThreadPoolExecutor(spec["forks"]) as pool:
    print(sum(pool.map(one, spec["targets"])))
"""


def run_floor(inventory: Path, forks: int) -> tuple[float, int, float, float]:
    """WINRM_FLOOR against the lab of ``inventory``: wall, hosts connected, RSS, CPU."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, str(REPO))
    from fleet.azcm.commands import connect_config
    from fleet.azcm.commands_windows import WindowsAgentCommands
    from fleet.inventory import load_inventory
    from fleet.inventory.model import ResolvedHost
    from fleet.lab.host import WINDOWS_AGENT_PATH
    from fleet.transport.powershell import command_line
    from fleet.transport.winrm import WinrmTransport

    hosts = load_inventory([inventory]).hosts
    password = (inventory.parent / "winrm_password").read_text(encoding="utf-8").strip()
    secret = (inventory.parent / "sp_secret").read_text(encoding="utf-8").strip()
    config = r"C:\Windows\Temp\arcbench-connect.json"
    targets = []
    executor = ThreadPoolExecutor(64)

    async def place(host: ResolvedHost) -> None:
        transport = WinrmTransport(host, password=password, executor=executor)
        await transport.put_file(config, connect_config(host, secret))
        await transport.close()
        program, args = command_line(WindowsAgentCommands().connect(
            WINDOWS_AGENT_PATH, config, host))
        targets.append({"endpoint": transport.endpoint, "program": program, "args": args})

    async def place_all() -> None:
        await asyncio.gather(*(place(h) for h in hosts))

    asyncio.run(place_all())
    executor.shutdown()
    user = hosts[0].winrm.user
    spec = json.dumps({"user": user, "password": password, "forks": forks, "targets": targets})
    with tempfile.TemporaryFile() as feed:  # the password goes on stdin, not in argv
        feed.write(spec.encode("utf-8"))
        feed.seek(0)
        done, _ = run_measured([PYTHON, "-c", WINRM_FLOOR], stdin=feed)
    if done.status:
        print(done.stderr[-2000:], file=sys.stderr)
    ok = int(done.stdout.strip() or 0)
    return done.wall_s, ok, done.max_rss_kb / 1024, done.cpu_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="200:200",
                        help="HOSTS:FORKS,... (default: issue 15's target case 200:200; "
                             "its example was 96:96,96:32)")
    parser.add_argument("--latency", type=float, default=5.0)
    parser.add_argument("--baseline", type=Path, help="another checkout to run the same cases "
                        "from (for example main before a change)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--floor", action="store_true",
                        help="first, per case, a bare pywinrm loop on a fresh lab (WINRM_FLOOR)")
    args = parser.parse_args()
    cases = [tuple(int(n) for n in case.split(":")) for case in args.cases.split(",")]
    raise_fd_limit(max(hosts for hosts, _ in cases) * 4 + 1024)
    checkouts = [("arcfleet", REPO)]
    if args.baseline:
        checkouts.insert(0, ("baseline", args.baseline.resolve()))
    if args.floor:
        checkouts.insert(0, ("floor", REPO))
    rows: list[Row] = []
    turn = 0
    with tempfile.TemporaryDirectory(prefix="arcfleet-winrm-bench-") as tmp:
        scratch = Path(tmp)
        for hosts, forks in cases:
            ideal = math.ceil(hosts / forks) * args.latency
            for label, checkout in checkouts:
                subnet = f"127.{71 + turn % 4}"  # a fresh address range per lab
                turn += 1
                with windows_lab(hosts, args.latency, scratch, subnet) as inventory:
                    if label == "floor":
                        wall, ok, rss, cpu = run_floor(inventory, forks)
                    else:
                        wall, ok, rss, cpu = run_onboard(checkout, inventory, forks, scratch)
                rows.append(Row(label, hosts, args.latency, forks, wall, ideal, ok, rss, cpu,
                                os.getloadavg()[0], str(checkout)))
                r = rows[-1]
                print(f"{r.label:9s} N={r.hosts} L={r.latency_s:g}s forks={r.forks} "
                      f"wall {r.wall_s:6.2f} s  ideal {r.ideal_s:5.1f} s  ratio {r.ratio:4.2f}  "
                      f"ideal+cpu {r.ideal_s + r.cpu_s:5.1f} s  ok {r.ok_hosts}/{r.hosts}  "
                      f"cpu {r.cpu_s:5.1f} s  rss {r.peak_rss_mb:4.0f} MB  "
                      f"load {r.load_after:.1f}  [{checkout}]", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "server": "lab WS-Management endpoint (fleet/lab/winrm_server.py), Basic over HTTP",
            "results": [{**asdict(r), "ratio": r.ratio} for r in rows]}, indent=2),
            encoding="utf-8")


if __name__ == "__main__":
    main()

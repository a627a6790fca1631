"""WinrmTransport against the lab WinRM server: many hosts through a few executor threads.

Each host: open a shell, check elevation, locate the agent, run ``azcmagent version``, close.
Prints wall time, hosts per second and hosts per thread. Usage::

    python bench/winrm_transport.py --hosts 200 --threads 16
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from fleet.azcm.commands_windows import WindowsAgentCommands
from fleet.inventory.model import OsFamily, ResolvedHost, Transport, WinrmSettings
from fleet.lab.host import LabHost, LabTarget
from fleet.lab.winrm_server import LabWinrmServer
from fleet.transport.winrm import WinrmTransport

USER, PASSWORD = "benchadmin", "bench-Pa55-word"


async def bench(count: int, threads: int, subnet: str, work: Path) -> None:
    hosts = [
        LabHost(name=f"w{i:04d}", address=f"{subnet}.{i // 250}.{i % 250 + 1}",
                fs_root=work / f"h{i}", target=LabTarget("t", "s"), os="windows")
        for i in range(count)
    ]
    server = LabWinrmServer(hosts, bind_port=0, users={USER: PASSWORD})
    await server.start()
    commands = WindowsAgentCommands()
    try:
        with ThreadPoolExecutor(threads) as executor:

            async def one(lab: LabHost) -> bool:
                host = ResolvedHost(
                    name=lab.name, address=lab.address, port=server.port,
                    transport=Transport.WINRM, os=OsFamily.WINDOWS,
                    winrm=WinrmSettings(user=USER, auth="basic", scheme="http",
                                        allow_basic_over_http=True))
                transport = WinrmTransport(host, password=PASSWORD, executor=executor)
                await transport.open()
                try:
                    ok = (await transport.run(commands.check_elevation(), timeout_s=60)).ok
                    agent = (await transport.run(commands.locate_agent(), timeout_s=60)).stdout
                    version = await transport.run(commands.version(agent.strip()), timeout_s=60)
                    return ok and version.ok
                finally:
                    await transport.close()

            started = time.perf_counter()
            results = await asyncio.gather(*(one(h) for h in hosts))
            wall = time.perf_counter() - started
    finally:
        await server.stop()
    print(f"{sum(results)}/{count} hosts ok with {threads} threads in {wall:.2f}s: "
          f"{count / wall:.0f} hosts/s, {count / threads:.1f} hosts per thread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--subnet", default="127.30")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="arcfleet-winrm-bench-") as tmp:
        asyncio.run(bench(args.hosts, args.threads, args.subnet, Path(tmp)))


if __name__ == "__main__":
    main()

"""What one host costs arcfleet and the lab in CPU, step by step, without contention.

Starts a lab (its own process, no latency), then walks ``--hosts`` hosts one at a time with
arcfleet's SshTransport, doing what an onboard does to a host: open the session (TCP, key
exchange, host key check, public key login), run ``--commands`` short commands (an onboard runs
8), upload the ``--config`` file over SFTP, close. For each step it prints the client's CPU
(this process) and the lab's CPU (its process), per host, and the wall time per host.

    /work/venv/bin/python bench/ssh_costs.py [--hosts 200] [--commands 8]

This is the profile behind the ratio-to-ideal figures in docs/benchmarks.md: a host's steps
before and after ``azcmagent connect`` cost CPU on both sides, the hosts of one fork wave all
want it at the same moment, and the client's event loop is one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from onboard_scale import lab

from fleet.inventory import load_inventory
from fleet.transport.ssh import SshTransport
from fleet.transport.ssh_keys import ClientKeys, HostKeyPolicy


async def walk(inventory: Path, known_hosts: Path, commands: int,
               lab_cpu: object) -> dict[str, list[float]]:
    hosts = load_inventory([inventory]).hosts
    policy = HostKeyPolicy(known_hosts=known_hosts)
    keys = ClientKeys()
    spent: dict[str, list[float]] = {step: [0.0, 0.0, 0.0] for step in
                                     ("open", "commands", "sftp put", "close")}

    def mark() -> tuple[float, float, float]:
        return time.process_time(), lab_cpu(), time.perf_counter()  # type: ignore[operator]

    def add(step: str, before: tuple[float, float, float]) -> tuple[float, float, float]:
        now = mark()
        for i in range(3):
            spent[step][i] += now[i] - before[i]
        return now

    for host in hosts:
        transport = SshTransport(host, policy=policy, client_keys=keys)
        at = mark()
        await transport.open()
        at = add("open", at)
        for _ in range(commands):
            result = await transport.run("sudo -n id -u", timeout_s=30)
            assert result.exit_status == 0, result
        at = add("commands", at)
        await transport.put_file("/tmp/bench-config.json", b'{"verbose": true}\n', private=True)
        at = add("sftp put", at)
        await transport.close()
        add("close", at)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--commands", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="arcfleet-bench-") as tmp, \
            lab(args.hosts, 0.0, Path(tmp)) as lab_:
        spent = asyncio.run(walk(lab_.inventory, lab_.known_hosts, args.commands, lab_.cpu_s))
    n = args.hosts
    print(f"{n} hosts, one at a time; per host (ms):")
    print(f"{'step':34s} {'client CPU':>10s} {'lab CPU':>8s} {'wall':>7s}")
    total = [0.0, 0.0, 0.0]
    for step, (client, lab_cpu, wall) in spent.items():
        label = f"{step} (x{args.commands})" if step == "commands" else step
        print(f"{label:34s} {1000 * client / n:10.2f} {1000 * lab_cpu / n:8.2f} "
              f"{1000 * wall / n:7.2f}")
        total = [total[0] + client, total[1] + lab_cpu, total[2] + wall]
    print(f"{'total':34s} {1000 * total[0] / n:10.2f} {1000 * total[1] / n:8.2f} "
          f"{1000 * total[2] / n:7.2f}")


if __name__ == "__main__":
    main()

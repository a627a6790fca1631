"""A WinRM host that stops answering mid-command holds no worker thread past its deadline.

The lab server's ``drip`` fault answers Receive one byte at a time, forever: no per-read timeout
fires. One executor thread serves two hosts, so if the dripping host kept the thread, the healthy
host's command could never run.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fleet.azcm.commands_windows import WindowsAgentCommands
from fleet.lab.scenario import ScenarioKind
from fleet.lab.winrm_server import FaultMode
from fleet.transport.winrm import WinrmTransport
from tests.winrm_support import PASSWORD, winrm_lab

CMDS = WindowsAgentCommands()
# Far beyond any deadline used here: reaching it means a thread was held (checked, not timed).
STUCK_S = 60


async def test_a_dripping_receive_ends_at_the_command_deadline(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS, ScenarioKind.SUCCESS], base=60) as lab:
        with ThreadPoolExecutor(max_workers=1) as executor:
            dripping, healthy = (
                WinrmTransport(lab.resolved(i), password=PASSWORD, executor=executor)
                for i in (0, 1)
            )
            await dripping.open()
            await healthy.open()
            lab.server.set_fault(lab.host(0).address, FaultMode.DRIP)
            result = await asyncio.wait_for(
                dripping.run(CMDS.check_elevation(), timeout_s=2), STUCK_S)
            assert result.timed_out and result.exit_status is None
            # The one thread is free again: the healthy host's command runs.
            other = await asyncio.wait_for(
                healthy.run(CMDS.check_elevation(), timeout_s=10), STUCK_S)
            assert other.exit_status == 0
            lab.server.set_fault(lab.host(0).address, FaultMode.NONE)
            again = await dripping.run(CMDS.check_elevation(), timeout_s=10)
            assert again.exit_status == 0  # a new connection and shell after the cut
            await dripping.close()
            await healthy.close()


async def test_a_cancelled_run_frees_its_thread_at_once(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS, ScenarioKind.SUCCESS], base=62) as lab:
        with ThreadPoolExecutor(max_workers=1) as executor:
            dripping, healthy = (
                # Long polls near STUCK_S: without the cut, the Receive would hold the thread.
                WinrmTransport(lab.resolved(i), password=PASSWORD, executor=executor,
                               read_timeout_s=STUCK_S, long_poll_s=STUCK_S - 5)
                for i in (0, 1)
            )
            await dripping.open()
            await healthy.open()
            lab.server.set_fault(lab.host(0).address, FaultMode.DRIP)
            task = asyncio.create_task(dripping.run(CMDS.check_elevation(), timeout_s=STUCK_S))
            await asyncio.sleep(1.0)  # inside the dripping Receive by now
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            other = await asyncio.wait_for(
                healthy.run(CMDS.check_elevation(), timeout_s=10), STUCK_S / 2)
            assert other.exit_status == 0
            await healthy.close()
            await dripping.close()


async def test_the_pool_has_a_thread_for_every_winrm_session_of_the_run(tmp_path: Path) -> None:
    """Issue 15: WinRM hosts run at the concurrency forks asks for, not 32 at a time."""
    import threading

    from fleet.inventory.model import Transport
    from fleet.transport.factory import TransportFactory
    from fleet.transport.ssh_keys import HostKeyPolicy

    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS], base=64) as lab:
        windows = [lab.resolved(0).model_copy(update={"name": f"w{i}"}) for i in range(150)]
        linux = [lab.resolved(0).model_copy(update={"name": f"l{i}", "transport": Transport.SSH})
                 for i in range(500)]
        factory = TransportFactory(HostKeyPolicy())
        before = {t.ident for t in threading.enumerate()}
        factory.plan_sessions(400, [*windows, *linux])  # forks 200 + 200 prepared ahead
        started = [t for t in threading.enumerate()
                   if t.ident not in before and t.name.startswith("winrm")]
        assert factory.winrm_threads == len(started) == 150  # one per WinRM host, no more
        await factory.aclose()

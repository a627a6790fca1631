"""Pick the transport and the command dialect for a host."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from fleet.azcm.commands import AgentCommands
from fleet.azcm.commands_linux import LinuxAgentCommands
from fleet.inventory.model import OsFamily, ResolvedHost
from fleet.inventory.model import Transport as TransportKind
from fleet.transport.base import Transport
from fleet.transport.ssh import JumpPool, SshTransport
from fleet.transport.ssh_keys import ClientKeys, HostKeyPolicy

log = structlog.get_logger(__name__)


# pywinrm blocks a thread per HTTP exchange; more sessions than this wait for a thread.
MAX_WINRM_THREADS = 1024


@dataclass
class TransportFactory:
    policy: HostKeyPolicy
    connect_timeout_s: float | None = None
    # pywinrm is blocking: a WinRM session holds a thread for each exchange (a Receive long-poll
    # included), so the pool has one thread per session the run keeps open (forks plus the hosts
    # prepared ahead, no more than the WinRM hosts: see plan_sessions).
    winrm_threads: int = 32
    # Key files are read once per run, not once per host.
    client_keys: ClientKeys = field(default_factory=ClientKeys)
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _jumps: JumpPool = field(default_factory=JumpPool, repr=False)

    def transport_for(self, host: ResolvedHost, *, winrm_password: str | None = None) -> Transport:
        if host.transport is TransportKind.SSH:
            return SshTransport(
                host,
                policy=self.policy,
                connect_timeout_s=self.connect_timeout_s,
                jumps=self._jumps,
                client_keys=self.client_keys,
            )
        from fleet.inventory.winrm_policy import winrm_warning
        from fleet.transport.winrm import WinrmTransport  # imported only when a host needs it

        warning = winrm_warning(host)
        if warning:
            log.warning("weak winrm settings", host=host.name, detail=warning)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.winrm_threads, thread_name_prefix="winrm")
        return WinrmTransport(
            host,
            password=winrm_password or "",
            executor=self._executor,
            open_timeout_s=self.connect_timeout_s or 30.0,
        )

    def plan_sessions(self, sessions: int, hosts: Sequence[ResolvedHost]) -> None:
        """The run keeps up to ``sessions`` of ``hosts`` open at once: one WinRM thread for each
        WinRM session, started now, before any host is contacted (a thread started mid-run
        waits for the GIL while the event loop waits for the thread)."""
        windows = sum(1 for host in hosts if host.transport is TransportKind.WINRM)
        if self._executor is not None or windows == 0:
            return
        self.winrm_threads = max(1, min(sessions, windows, MAX_WINRM_THREADS))
        self._executor = ThreadPoolExecutor(self.winrm_threads, thread_name_prefix="winrm")
        _start_threads(self._executor, self.winrm_threads)

    async def aclose(self) -> None:
        await self._jumps.aclose()
        if self._executor is not None:
            from fleet.transport.winrm_http import abort_all

            # A worker blocked on a host that stopped answering would hold the process's exit.
            abort_all()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _start_threads(executor: ThreadPoolExecutor, count: int) -> None:
    """Start ``count`` worker threads: each submitted task holds its thread until all are up,
    so the executor has to start a new thread for every submission."""
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> None:
        started.release()
        release.wait(10)

    for _ in range(count):
        executor.submit(hold)
    for _ in range(count):
        if not started.acquire(timeout=10):
            break
    release.set()


def commands_for(
    host: ResolvedHost, *, elevated: bool | None = None, cleanup_after_s: int | None = None
) -> AgentCommands:
    """The command dialect for a host; ``elevated`` overrides the inventory's become;
    ``cleanup_after_s``: when the Windows private directory's scheduled task removes it."""
    if host.os is OsFamily.WINDOWS:
        from fleet.azcm.commands_windows import WindowsAgentCommands

        if cleanup_after_s is None:
            return WindowsAgentCommands()
        return WindowsAgentCommands(cleanup_after_s=cleanup_after_s)
    return LinuxAgentCommands(become=host.ssh.become if elevated is None else elevated)

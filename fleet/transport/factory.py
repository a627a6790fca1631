"""Pick the transport and the command dialect for a host."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from fleet.azcm.commands import AgentCommands
from fleet.azcm.commands_linux import LinuxAgentCommands
from fleet.inventory.model import OsFamily, ResolvedHost
from fleet.inventory.model import Transport as TransportKind
from fleet.transport.base import Transport
from fleet.transport.ssh import ClientKeys, HostKeyPolicy, JumpPool, SshTransport

log = structlog.get_logger(__name__)


# pywinrm blocks a thread per HTTP exchange; more sessions than this wait for a thread.
MAX_WINRM_THREADS = 1024


@dataclass
class TransportFactory:
    policy: HostKeyPolicy
    connect_timeout_s: float | None = None
    # pywinrm is blocking: a WinRM session holds a thread for each exchange (a Receive long-poll
    # included), so the pool has one thread per session the run keeps open (forks plus the hosts
    # prepared ahead: see plan_sessions); threads start only when needed.
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
        from fleet.transport.winrm import WinrmTransport  # imported only when a host needs it
        from fleet.transport.winrm_policy import winrm_warning

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

    def plan_sessions(self, sessions: int) -> None:
        """The run keeps up to ``sessions`` hosts open at once: one WinRM thread each."""
        if self._executor is None:
            self.winrm_threads = max(self.winrm_threads, min(sessions, MAX_WINRM_THREADS))

    async def aclose(self) -> None:
        await self._jumps.aclose()
        if self._executor is not None:
            from fleet.transport.winrm_http import abort_all

            # A worker blocked on a host that stopped answering would hold the process's exit.
            abort_all()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def commands_for(host: ResolvedHost, *, elevated: bool | None = None) -> AgentCommands:
    """The command dialect for a host; ``elevated`` overrides the inventory's become."""
    if host.os is OsFamily.WINDOWS:
        from fleet.azcm.commands_windows import WindowsAgentCommands

        return WindowsAgentCommands()
    return LinuxAgentCommands(become=host.ssh.become if elevated is None else elevated)

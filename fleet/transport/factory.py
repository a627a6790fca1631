"""Pick the transport and the command dialect for a host."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fleet.azcm.commands import AgentCommands
from fleet.azcm.commands_linux import LinuxAgentCommands
from fleet.inventory.model import OsFamily, ResolvedHost
from fleet.inventory.model import Transport as TransportKind
from fleet.transport.base import Transport
from fleet.transport.ssh import ClientKeys, HostKeyPolicy, JumpPool, SshTransport


@dataclass
class TransportFactory:
    policy: HostKeyPolicy
    connect_timeout_s: float | None = None
    # pywinrm is blocking: every WinRM host shares this bounded pool.
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

        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.winrm_threads, thread_name_prefix="winrm")
        return WinrmTransport(host, password=winrm_password or "", executor=self._executor)

    async def aclose(self) -> None:
        await self._jumps.aclose()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def commands_for(host: ResolvedHost, *, elevated: bool | None = None) -> AgentCommands:
    """The command dialect for a host; ``elevated`` overrides the inventory's become."""
    if host.os is OsFamily.WINDOWS:
        from fleet.azcm.commands_windows import WindowsAgentCommands

        return WindowsAgentCommands()
    return LinuxAgentCommands(become=host.ssh.become if elevated is None else elevated)

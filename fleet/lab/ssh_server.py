"""The lab's SSH side: one asyncssh listener per simulated Linux host, all in one process.

Each host listens on its own loopback address (same port) with its own ed25519 host key. Login is
by public key only, as the lab's one user; commands go to :mod:`fleet.lab.shell`; SFTP is chrooted
to the host's directory and records the path and mode of every file written (never content). A host
forwards direct-tcpip channels to loopback addresses, so it can serve as a jump host.

A running command is an asyncio task in ``LabHost.running``: a signal from the client or the
channel closing cancels it, so a deadline on the client really stops the simulated process. EOF on
stdin does not: clients send it right after starting a non-interactive command.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.stream import SSHReader, SSHServerStreamSession, SSHWriter

from fleet.lab.host import LabHost, RunningCommand, SftpWrite, TcpForward
from fleet.lab.host_script import ABORT, SCRIPT_MARK, STDIN, STDIN_READ, WRITE
from fleet.lab.scenario import ScenarioKind
from fleet.lab.shell import LOGIN_USER, run_shell, split_command

# Output is written in chunks this size, each awaiting flow control, so megabytes of output
# neither block the loop nor sit in one buffer.
WRITE_CHUNK = 64 * 1024


class _HostSession(SSHServerStreamSession[str]):
    """One channel: a command (exec) or the SFTP subsystem."""

    def __init__(self, host: LabHost) -> None:
        super().__init__(self._handle, sftp_factory=self._make_sftp, sftp_version=3)
        self._host = host
        self._running: RunningCommand | None = None
        self._signal: str | None = None

    def _make_sftp(self, chan: SSHChannel[bytes]) -> asyncssh.SFTPServer:
        return _HostSftp(cast(asyncssh.SSHServerChannel[bytes], chan), self._host)

    def signal_received(self, signal: str) -> None:
        self._signal = signal
        if self._running is not None:
            self._running.task.cancel()
        super().signal_received(signal)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._running is not None:
            self._running.task.cancel()
        super().connection_lost(exc)

    async def _handle(self, stdin: SSHReader[str], stdout: SSHWriter[str],
                      stderr: SSHWriter[str]) -> None:
        chan = cast(asyncssh.SSHServerChannel[str], stdout.channel)
        command = chan.get_command()
        if not command:
            stderr.write("This lab host accepts commands only, not interactive shells.\n")
            chan.exit(1)
            return
        host = self._host
        if SCRIPT_MARK in command:
            # The whole script in its own record; the commands list gets a short label and
            # then, from the lab's script runner, each step's command as the host ran it.
            host.scripts.append(command)
            host.commands.append(command.split(" -c ", 1)[0] + " -c <arcfleet host script>")
        else:
            host.commands.append(command)
        if host.scenario.kind is ScenarioKind.CONNECTION_DROP and _is_agent_connect(command):
            # The exec request was accepted and the agent "started"; now the network goes away
            # (no SSH disconnect message, no exit status), as when a host or link dies mid-run.
            chan.get_connection().abort()
            return
        if SCRIPT_MARK in command:
            # arcfleet's host script reads the --config file from stdin (a few KB, then EOF);
            # a gated script reads it only after its "ready" record (the engine sends it then).
            if '"gate":true' in command.split("\n", 1)[0]:
                STDIN_READ.set(stdin.read)
            else:
                STDIN.set(await stdin.read())
            ABORT.set(chan.get_connection().abort)

            async def write(text: str) -> None:
                await _write_chunked(stdout, text)

            WRITE.set(write)
        running = host.spawn(command, run_shell(command, host))
        self._running = running
        try:
            result = await running.task
        except asyncio.CancelledError:
            # Stopped by a signal (answer like OpenSSH: exit-signal) or the channel went away.
            if self._signal is not None and not chan.is_closing():
                chan.exit_with_signal(self._signal)
            return
        finally:
            self._running = None
        try:
            await _write_chunked(stdout, result.stdout)
            await _write_chunked(stderr, result.stderr)
            chan.exit(result.exit_status)
        except (asyncssh.Error, BrokenPipeError, ConnectionError):
            pass


def _is_agent_connect(command: str) -> bool:
    try:  # split_command has a fast path: the host script is a 15 KB word
        words = [word for _op, argv in split_command(command) for word in argv]
    except ValueError:
        return False
    return "connect" in words and any(w.rsplit("/", 1)[-1] == "azcmagent" for w in words)


async def _write_chunked(writer: SSHWriter[str], text: str) -> None:
    for start in range(0, len(text), WRITE_CHUNK):
        writer.write(text[start:start + WRITE_CHUNK])
        await writer.drain()


class _HostSftp(asyncssh.SFTPServer):
    """SFTP chrooted to the host's directory; honours and records requested modes."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], host: LabHost) -> None:
        super().__init__(chan, chroot=os.fsencode(host.fs_root))
        self._host = host

    @staticmethod
    def _name(path: bytes) -> str:
        text = path.decode("utf-8", "replace")
        return text if text.startswith("/") else "/" + text

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        writing = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_APPEND))
        local = self.map_path(path)
        existed = os.path.exists(local)
        handle = super().open(path, pflags, attrs)
        if writing:
            self._host.sftp_writes.append(SftpWrite(self._name(path), attrs.permissions))
            if attrs.permissions is not None and not existed:
                os.chmod(local, attrs.permissions & 0o7777)  # exact mode, whatever our umask
        return handle

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        if attrs.permissions is not None:
            self._host.sftp_writes.append(
                SftpWrite(self._name(path), attrs.permissions, op="setstat"))
        super().setstat(path, attrs)


class _HostServer(asyncssh.SSHServer):
    def __init__(self, host: LabHost, user: str, client_key: asyncssh.SSHKey) -> None:
        self._host = host
        self._user = user
        self._client_key = client_key

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._user and (
            key.public_data == self._client_key.public_data)

    def session_requested(self) -> _HostSession:
        return _HostSession(self._host)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        # A lab host can be a bastion (jump host): forward, like sshd's AllowTcpForwarding,
        # but only on loopback, where the lab lives.
        allowed = dest_host.startswith("127.") or dest_host == "localhost"
        self._host.forwards.append(TcpForward(dest_host, dest_port, allowed))
        return allowed


@dataclass
class LabSshServer:
    """Serves ``hosts`` over SSH; :meth:`start` binds them all on ``port`` (0 = a free port)."""

    hosts: Sequence[LabHost]
    client_key: asyncssh.SSHKey  # the public half is what logins must present
    port: int = 0
    user: str = LOGIN_USER
    host_keys: dict[str, asyncssh.SSHKey] = field(default_factory=dict)
    _servers: list[asyncssh.SSHAcceptor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._requested_port = self.port

    async def start(self) -> None:
        for host in self.hosts:
            if host.address not in self.host_keys:
                self.host_keys[host.address] = asyncssh.generate_private_key("ssh-ed25519")
        for attempt in range(20):
            self.port = self._requested_port
            try:
                await self._bind_all()
                return
            except OSError as exc:
                # Port 0: the port picked on the first address may be taken on another one.
                await self.stop()
                if exc.errno != errno.EADDRINUSE or self._requested_port or attempt == 19:
                    raise

    async def _bind_all(self) -> None:
        for host in self.hosts:
            server = await asyncssh.create_server(
                self._factory(host), host.address, self.port,
                server_host_keys=[self.host_keys[host.address]],
                backlog=1024, reuse_address=True, allow_scp=False)
            self._servers.append(server)
            if self.port == 0:
                self.port = server.sockets[0].getsockname()[1]

    def _factory(self, host: LabHost) -> Any:
        return lambda: _HostServer(host, self.user, self.client_key)

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        for host in self.hosts:
            host.cancel_running()

    def known_hosts_lines(self) -> list[str]:
        lines = []
        for host in self.hosts:
            key = self.host_keys[host.address].export_public_key("openssh").decode().split()
            where = host.address if self.port == 22 else f"[{host.address}]:{self.port}"
            lines.append(f"{where} {key[0]} {key[1]}")
        return lines

"""SSH transport on asyncssh: one connection per host, reused for every step.

Host keys are verified against a known_hosts file by default. Trust on first use happens only when
the operator asked for it (``accept_new_host_keys``), and even then a host whose key is on file
with a different value is refused. A command that passes its deadline is signalled (TERM) and its
channel closed, so nothing is left running on the host: without a PTY, sshd would otherwise let it
run on, orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh
from asyncssh.encryption import get_default_encryption_algs

from fleet.errors import ConnectionDropped, HostAuthFailed, HostUnreachable
from fleet.inventory.model import ResolvedHost
from fleet.transport.base import (
    OUTPUT_CAP_BYTES,
    CappedOutput,
    CommandResult,
    ScriptResult,
    StdinGate,
)
from fleet.transport.ssh_keys import (
    ClientKeys,
    HostKeyPolicy,
    KnownHostsUnusable,
    _HostKeyCheck,
)

KEEPALIVE_INTERVAL_S = 15
# Offered only to hosts whose inventory sets ``ssh.compression: true`` (a slow link).
COMPRESSION_ALGS = ["zlib@openssh.com", "zlib", "none"]
# AES-GCM is offered before asyncssh's default first choice, ChaCha20-Poly1305: asyncssh builds
# ChaCha20-Poly1305 out of several cipher calls per packet (about 10 us a packet here, against
# 2 us for AES-GCM, which AES-NI speeds up), and a fleet run is tens of thousands of packets. The
# rest of asyncssh's list follows unchanged for servers that do not offer AES-GCM.
PREFERRED_CIPHERS = ("aes256-gcm@openssh.com", "aes128-gcm@openssh.com")
ENCRYPTION_ALGS = [
    *PREFERRED_CIPHERS,
    *(
        name
        for name in (alg.decode() for alg in get_default_encryption_algs())
        if name not in PREFERRED_CIPHERS
    ),
]


class JumpPool:
    """Jump-host chains shared by every target behind them: 500 hosts behind one bastion make
    one connection to it, each target a channel inside it (as OpenSSH's ProxyJump would with
    ControlMaster)."""

    def __init__(self) -> None:
        self._chains: dict[tuple[str, ...], asyncio.Task[list[asyncssh.SSHClientConnection]]] = {}

    def chain(
        self,
        key: tuple[str, ...],
        build: Callable[[], Awaitable[list[asyncssh.SSHClientConnection]]],
    ) -> asyncio.Task[list[asyncssh.SSHClientConnection]]:
        task = self._chains.get(key)
        if task is None or (
            task.done()
            and (
                task.cancelled()
                or task.exception() is not None
                or any(c.is_closed() for c in task.result())
            )
        ):
            task = asyncio.ensure_future(build())
            self._chains[key] = task
        return task

    async def aclose(self) -> None:
        for task in self._chains.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                for conn in reversed(task.result()):
                    conn.close()
            else:
                task.cancel()
        self._chains.clear()


def _parse_hop(hop: str) -> tuple[str | None, str, int]:
    user, _, rest = hop.rpartition("@")
    host, _, port = rest.partition(":")
    return (user or None), host, int(port) if port else 22


class SshTransport:
    """Transport over one asyncssh connection (and its jump hosts, outermost first)."""

    def __init__(
        self,
        host: ResolvedHost,
        *,
        policy: HostKeyPolicy,
        connect_timeout_s: float | None = None,
        jumps: JumpPool | None = None,
        client_keys: ClientKeys | None = None,
    ) -> None:
        self.host = host
        self.host_name = host.name
        self._policy = policy
        self._client_keys = client_keys or ClientKeys()
        self._settings = host.ssh
        # The inventory's per-host timeout (a slow link) beats the playbook's fleet-wide one.
        if "connect_timeout_s" in host.ssh.model_fields_set or not connect_timeout_s:
            self._timeout = host.ssh.connect_timeout_s
        else:
            self._timeout = connect_timeout_s
        self._conn: asyncssh.SSHClientConnection | None = None
        self._hops: list[asyncssh.SSHClientConnection] = []  # owned here when not pooled
        self._jumps = jumps

    def _known_hosts_file(self) -> Path:
        # The inventory's file, when it names one, is the one checked *and* learned into: a
        # host listed there with another key is known, so trust on first use never applies.
        return self._settings.known_hosts or self._policy.known_hosts

    def _options(self, **extra: object) -> dict[str, object]:
        options: dict[str, object] = {
            "username": self._settings.user,
            "connect_timeout": self._timeout,
            "login_timeout": self._timeout,
            "keepalive_interval": KEEPALIVE_INTERVAL_S,
            "keepalive_count_max": 3,
            "config": None,  # the inventory, not ~/.ssh/config, says how to reach hosts
            "encryption_algs": ENCRYPTION_ALGS,
            # zlib lets a hostile server inflate each packet a thousandfold in our memory
            # (a compression bomb); only an inventory that asks for it gets it.
            "compression_algs": COMPRESSION_ALGS if self._settings.compression else ["none"],
        }
        if self._settings.key_file:
            loaded = self._client_keys.get(self._settings.key_file)
            options["client_keys"] = [str(self._settings.key_file)] if loaded is None else loaded
            options["agent_path"] = None
        options.update(extra)
        return options

    async def _connect_hops(self) -> list[asyncssh.SSHClientConnection]:
        hops: list[asyncssh.SSHClientConnection] = []
        tunnel: asyncssh.SSHClientConnection | None = None
        try:
            for hop in self._settings.jump_hosts:
                user, address, port = _parse_hop(hop)
                tunnel = await asyncssh.connect(
                    address,
                    port,
                    **self._options(
                        username=user or self._settings.user,
                        known_hosts=self._policy.load(self._known_hosts_file()),
                        tunnel=tunnel,
                    ),
                )
                hops.append(tunnel)
        except BaseException:
            for conn in hops:
                conn.close()
            raise
        return hops

    async def _tunnel(self) -> asyncssh.SSHClientConnection | None:
        if not self._settings.jump_hosts:
            return None
        if self._jumps is None:
            self._hops = await self._connect_hops()
            return self._hops[-1]
        key = (
            *self._settings.jump_hosts,
            str(self._settings.key_file),
            str(self._settings.user),
            # Hosts checked against another file must not ride a hop verified against this one.
            str(self._known_hosts_file()),
        )
        # shield: one host's cancellation must not cancel the chain other hosts wait on
        hops = await asyncio.shield(self._jumps.chain(key, self._connect_hops))
        return hops[-1]

    async def open(self) -> None:
        known = self._known_hosts_file()
        try:
            entries = self._policy.load(known)
            if self._settings.jump_hosts and not known.exists():
                # Jump hosts are always verified against the file, never learned.
                raise KnownHostsUnusable(
                    known,
                    "no such file",
                    message=f"no known_hosts file at {known} (jump hosts are never learned)",
                )
        except KnownHostsUnusable as exc:
            # Without this, asyncssh's "No such file" would read as an unreachable host.
            raise HostAuthFailed(self.host_name, f"host key not verified: {exc}") from None
        check = _HostKeyCheck(self._policy, known)
        try:
            tunnel = await self._tunnel()
            self._conn, _ = await asyncssh.create_connection(
                lambda: check,
                self.host.address,
                self.host.port,
                **self._options(known_hosts=entries, tunnel=tunnel),
            )
            if check.learned is not None:
                await self._policy.remember(self.host.address, self.host.port, check.learned, known)
        except KnownHostsUnusable as exc:  # changed under us between the check and a hop
            await self.close()
            raise HostAuthFailed(self.host_name, f"host key not verified: {exc}") from None
        except asyncssh.HostKeyNotVerifiable as exc:
            await self.close()
            raise HostAuthFailed(self.host_name, f"host key not verified: {exc.reason}") from None
        except asyncssh.PermissionDenied as exc:
            await self.close()
            raise HostAuthFailed(self.host_name, f"login refused: {exc.reason}") from None
        except asyncssh.KeyExchangeFailed as exc:
            await self.close()
            if "host key" in exc.reason:
                # The file trusts only a CA, or revoked the key the host has: no usable key.
                raise HostAuthFailed(
                    self.host_name, f"host key not verified: {exc.reason}"
                ) from None
            raise HostUnreachable(self.host_name, f"SSH handshake failed: {exc.reason}") from None
        except (asyncssh.DisconnectError, asyncssh.ConnectionLost) as exc:
            await self.close()
            raise HostUnreachable(self.host_name, f"SSH handshake failed: {exc.reason}") from None
        except asyncssh.ChannelOpenError as exc:
            # A jump host would not (or could not) open the tunnel to the next hop.
            await self.close()
            raise HostUnreachable(
                self.host_name, f"jump host could not reach {self.host.address}: {exc.reason}"
            ) from None
        except socket.gaierror as exc:
            await self.close()
            reason = f"name does not resolve: {exc.strerror}"
            raise HostUnreachable(self.host_name, reason) from None
        except TimeoutError:
            await self.close()
            raise HostUnreachable(
                self.host_name, f"no SSH answer within {self._timeout:g}s"
            ) from None
        except OSError as exc:
            await self.close()
            # asyncio words a refused connect as "Connect call failed (addr, port)"; the errno
            # says what happened (Connection refused, No route to host, ...).
            what = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
            reason = f"{what} ({self.host.address}:{self.host.port})"
            raise HostUnreachable(self.host_name, reason) from None

    def _require(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise ConnectionDropped(self.host_name, "session is not open")
        return self._conn

    async def _start(
        self, conn: asyncssh.SSHClientConnection, command: str
    ) -> asyncssh.SSHClientProcess[bytes]:
        """One session running ``command`` (bytes in, bytes out), or the host is dropped."""
        try:
            return await conn.create_process(command, encoding=None)
        except (
            asyncssh.ChannelOpenError,
            asyncssh.DisconnectError,
            asyncssh.ConnectionLost,
            OSError,
        ) as exc:
            raise ConnectionDropped(self.host_name, f"cannot start command: {exc}") from None

    async def run(self, command: str, *, timeout_s: float) -> CommandResult:
        conn = self._require()
        started = time.monotonic()
        out, err = CappedOutput(OUTPUT_CAP_BYTES), CappedOutput(OUTPUT_CAP_BYTES)
        process = await self._start(conn, command)

        async def pump(reader: asyncssh.SSHReader[bytes], sink: CappedOutput) -> None:
            while chunk := await reader.read(65536):
                sink.add(chunk)

        timed_out = False
        try:
            await asyncio.wait_for(
                asyncio.gather(pump(process.stdout, out), pump(process.stderr, err)), timeout_s
            )
            await asyncio.wait_for(process.wait_closed(), max(1.0, timeout_s / 10))
        except TimeoutError:
            timed_out = True
        except (asyncssh.DisconnectError, asyncssh.ConnectionLost, OSError) as exc:
            raise ConnectionDropped(self.host_name, f"session lost during command: {exc}") from None
        except asyncio.CancelledError:
            self._stop(process)
            raise
        if timed_out:
            self._stop(process)
        return CommandResult(
            command=command,
            exit_status=None if timed_out else process.exit_status,
            stdout=out.text(),
            stderr=err.text(),
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            truncated_bytes=out.dropped + err.dropped,
        )

    async def run_script(
        self,
        command: str,
        stdin: bytes | StdinGate,
        *,
        timeout_s: float,
        output_cap: int,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> ScriptResult:
        """Run one host script with ``stdin`` (the --config file, or nothing; or a gate the
        caller opens later) on its standard input: one session for the whole common path (see
        :mod:`fleet.azcm.script_linux`)."""
        conn = self._require()
        started = time.monotonic()
        out, err = CappedOutput(output_cap), CappedOutput(OUTPUT_CAP_BYTES)
        process = await self._start(conn, command)
        gate = stdin if isinstance(stdin, StdinGate) else None

        async def pump(
            reader: asyncssh.SSHReader[bytes],
            sink: CappedOutput,
            tell: Callable[[bytes], None] | None = None,
        ) -> None:
            while chunk := await reader.read(65536):
                kept = sink.add(chunk)
                if tell is not None and kept:
                    tell(kept)

        timed_out = False
        lost = ""
        feeder: asyncio.Task[None] | None = None
        try:
            if gate is None:
                assert isinstance(stdin, bytes)
                process.stdin.write(stdin)
                process.stdin.write_eof()
            else:
                feeder = asyncio.create_task(_feed_at_gate(process, gate))
            await _within(
                asyncio.gather(pump(process.stdout, out, on_stdout), pump(process.stderr, err)),
                timeout_s,
                gate,
            )
            await asyncio.wait_for(process.wait_closed(), max(1.0, timeout_s / 10))
        except TimeoutError:
            timed_out = True
        except (asyncssh.DisconnectError, asyncssh.ConnectionLost, OSError) as exc:
            lost = f"session lost during command: {exc}"
        except asyncio.CancelledError:
            self._stop(process)
            raise
        finally:
            if feeder is not None:
                feeder.cancel()
        if timed_out:
            self._stop(process)
        return ScriptResult(
            command=command,
            exit_status=None if timed_out or lost else process.exit_status,
            stdout=out.data(),
            stderr=err.text(),
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            truncated_bytes=out.dropped + err.dropped,
            lost=lost,
        )

    @staticmethod
    def _stop(process: asyncssh.SSHClientProcess[bytes]) -> None:
        # TERM first: OpenSSH honours the signal request; closing the channel covers servers
        # that do not.
        with contextlib.suppress(OSError, asyncssh.Error):
            process.send_signal("TERM")
        process.close()

    async def put_file(self, path: str, content: bytes, *, private: bool = True) -> None:
        conn = self._require()
        attrs = asyncssh.SFTPAttrs(permissions=0o600 if private else 0o644)
        try:
            async with conn.start_sftp_client() as sftp:
                async with sftp.open(path, "wb", attrs) as remote:
                    await remote.write(content)
                if private:
                    await sftp.chmod(path, 0o600)
        except (asyncssh.SFTPError, asyncssh.ChannelOpenError) as exc:
            raise ConnectionDropped(self.host_name, f"cannot write {path}: {exc}") from None

    async def read_tail(self, path: str, max_bytes: int, *, elevated: bool = False) -> str:
        prefix = "sudo -n " if elevated and self._settings.become else ""
        result = await self.run(
            f"{prefix}tail -c {int(max_bytes)} -- {shlex.quote(path)}", timeout_s=30
        )
        return result.stdout if result.exit_status == 0 else ""

    async def close(self) -> None:
        for conn in [self._conn, *reversed(self._hops)]:
            if conn is not None:
                conn.close()
                with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                    await asyncio.wait_for(conn.wait_closed(), 5)
        self._conn = None
        self._hops = []


async def _feed_at_gate(process: asyncssh.SSHClientProcess[bytes], gate: StdinGate) -> None:
    """The script's stdin once its gate opens: the bytes, then EOF (EOF alone if refused)."""
    data = await gate.data()
    with contextlib.suppress(OSError, asyncssh.Error):
        if data:
            process.stdin.write(data)
        process.stdin.write_eof()


async def _within(work: Awaitable[object], timeout_s: float, gate: StdinGate | None) -> None:
    """Await ``work`` for at most ``timeout_s`` seconds, not counting the time the script
    waits at its gate (the caller's own wait for an agent slot). Cancels it on TimeoutError."""
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    try:
        while not task.done():
            if gate is not None and gate.is_waiting:
                remaining = 1.0  # look again: time at the gate does not count
            else:
                paused = gate.paused_s if gate is not None else 0.0
                remaining = started + timeout_s + paused - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
            await asyncio.wait({task}, timeout=remaining)
    except BaseException:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise
    task.result()

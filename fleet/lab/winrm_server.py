"""The lab's WS-Management endpoint: enough of WinRM's shell resource for pywinrm to run commands.

One listening socket per lab host address, all on the same port; the host is the address the client
dialled. HTTP/1.1 with keep-alive (pywinrm uses a ``requests`` session), Basic authentication,
optionally NTLM with message encryption. Implements the WinRS ``cmd`` shell resource: Create,
Command, Send, Receive (long-poll bounded by the request's OperationTimeout), Signal (terminate)
and Delete. The command itself is interpreted by
:mod:`fleet.lab.winrm_powershell`, which runs the agent simulator for ``azcmagent.exe``.

Fault modes for tests (per host, see :class:`FaultMode`) make Receive answer with a non-timeout
SOAP fault or with XML that does not parse, so the client's error paths run over real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import ssl
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from fleet.lab import winrm_soap as soap
from fleet.lab.host import LabHost
from fleet.lab.scenario import ScenarioKind
from fleet.lab.winrm_ntlm import CONTENT_TYPE as ntlm_content_type
from fleet.lab.winrm_ntlm import NtlmConnection, NtlmError, restore_user_file, use_user_file
from fleet.lab.winrm_powershell import CommandOutput, WindowsRecord, _decoded_script, interpret
from fleet.lab.winrm_tasks import TaskScheduler

_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 4 * 1024 * 1024


# Re-exported: tests import these from here.
OPERATION_TIMEOUT_FAULT = soap.OPERATION_TIMEOUT_FAULT
INJECTED_FAULT = soap.INJECTED_FAULT


class FaultMode(StrEnum):
    """How a host's Receive answers, for testing the client's error handling."""

    NONE = "none"
    FAULT = "fault"  # HTTP 500 with a SOAP fault that is not the operation timeout
    MALFORMED = "malformed"  # HTTP 200 with a body that is not XML
    DRIP = "drip"  # HTTP 200 whose body arrives one byte every DRIP_INTERVAL_S, never ending


@dataclass
class _Command:
    command_id: str
    command_line: str
    output: CommandOutput
    task: asyncio.Task[None] | None = None


@dataclass
class _Shell:
    shell_id: str
    user: str
    commands: dict[str, _Command] = field(default_factory=dict)


@dataclass
class ShellRecord:
    """What the server saw of one shell, for tests."""

    shell_id: str
    address: str
    user: str
    deleted: bool = False
    command_ids: list[str] = field(default_factory=list)
    signalled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _BadRequest(Exception):
    pass


class _DropConnection(Exception):
    """Scenario ``connection_drop``: cut the TCP connection without an answer."""


class _Drip(Exception):
    """Fault mode ``drip``: answer one byte at a time until the client goes away."""


DRIP_INTERVAL_S = 0.5


class LabWinrmServer:
    """WS-Man over HTTP for a set of lab hosts, one listening socket per host address.

    ``users`` maps user name to password (Basic auth). ``bind_port`` 0 picks a free port on the
    first address and reuses it for the others; :attr:`port` is the bound port. With
    ``ssl_context`` the endpoint is HTTPS. With ``ntlm_user_file`` (a path the server writes the
    users to) NTLM is accepted too, with WinRM message encryption over HTTP (see
    :mod:`fleet.lab.winrm_ntlm`; it sets ``NTLM_USER_FILE`` for the whole process).
    """

    def __init__(
        self,
        hosts: Sequence[LabHost],
        *,
        bind_port: int,
        users: dict[str, str],
        ssl_context: ssl.SSLContext | None = None,
        ntlm_user_file: Path | None = None,
    ) -> None:
        self._hosts = list(hosts)
        self._ssl = ssl_context
        self._ntlm_user_file = ntlm_user_file
        self._previous_user_file: str | None = None
        #: requests that arrived NTLM-sealed (so tests can see encryption was used)
        self.encrypted_requests = 0
        self._bind_port = bind_port
        self._users = dict(users)
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._shells: dict[str, dict[str, _Shell]] = {h.address: {} for h in self._hosts}
        #: the bound port (0 until start())
        self.port = 0
        self.faults: dict[str, FaultMode] = {}
        self.shell_records: dict[str, ShellRecord] = {}
        #: per host address: files written, ACLs set, directories removed, agent argv
        self.records: dict[str, WindowsRecord] = {
            h.address: WindowsRecord(tasks=TaskScheduler(h)) for h in self._hosts
        }

    def url(self, address: str) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{address}:{self.port}/wsman"

    def set_fault(self, address: str, mode: FaultMode) -> None:
        self.faults[address] = mode

    def open_shells(self, address: str) -> list[str]:
        return sorted(self._shells.get(address, {}))

    def running_commands(self, address: str) -> list[str]:
        """Command ids whose simulated process is still running on this host."""
        return [
            cmd.command_id
            for shell in self._shells.get(address, {}).values()
            for cmd in shell.commands.values()
            if cmd.task is not None and not cmd.task.done()
        ]

    async def start(self) -> None:
        if self._ntlm_user_file is not None:
            self._previous_user_file = use_user_file(self._ntlm_user_file, self._users)
        port = self._bind_port
        try:
            for host in self._hosts:
                server = await asyncio.start_server(
                    functools.partial(self._serve_connection, host),
                    host=host.address,
                    port=port,
                    reuse_address=True,
                    ssl=self._ssl,
                )
                self._servers.append(server)
                if port == 0:
                    port = server.sockets[0].getsockname()[1]
        except BaseException:
            await self.stop()
            raise
        self.port = port

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._connections):
            writer.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        for address, shells in self._shells.items():
            for shell in list(shells.values()):
                await self._delete_shell(address, shell)
        if self._ntlm_user_file is not None:
            restore_user_file(self._previous_user_file)

    async def __aenter__(self) -> LabWinrmServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # --- HTTP -----------------------------------------------------------------------------

    async def _serve_connection(
        self, host: LabHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._connections.add(writer)
        ntlm = NtlmConnection()
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                status, headers, body = await self._answer(host, request, ntlm)
                keep_alive = request.headers.get("connection", "").lower() != "close"
                _write_response(writer, status, headers, body, keep_alive=keep_alive)
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ssl.SSLError):
            return
        except asyncio.CancelledError:
            # Only stop() cancels a connection; ending quietly keeps asyncio's stream callback
            # from logging the cancellation as an error.
            return
        except _DropConnection:
            writer.transport.abort()  # no HTTP answer, no FIN: the host "died" mid-command
        except _Drip:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8"
                         b"\r\nContent-Length: 1000000\r\n\r\n")
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while not writer.is_closing():
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(DRIP_INTERVAL_S)
        except _BadRequest:
            with contextlib.suppress(ConnectionError):
                _write_response(writer, 400, {}, b"", keep_alive=False)
                await writer.drain()
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _answer(
        self, host: LabHost, request: _Request, ntlm: NtlmConnection
    ) -> tuple[int, dict[str, str], bytes]:
        if request.method != "POST" or request.path.split("?")[0].lower() != "/wsman":
            return 404, {}, b""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        user: str | None = None
        if self._ntlm_user_file is not None and scheme.lower() in ("ntlm", "negotiate"):
            try:
                challenge = ntlm.step(token.strip())
            except NtlmError:
                return 401, {"WWW-Authenticate": "NTLM"}, b""
            if challenge is not None:
                return 401, {"WWW-Authenticate": f"NTLM {challenge}"}, b""
            if ntlm.user not in self._users:
                return 401, {"WWW-Authenticate": "NTLM"}, b""
            if not request.body:
                return 200, {}, b""  # the handshake's own empty POST (pywinrm, encryption)
            user = ntlm.user
        elif scheme.lower() == "basic":
            user = self._authenticate(header)
        elif not header and ntlm.authenticated:
            user = ntlm.user
        if user is None:
            offer = 'NTLM, Basic realm="WSMAN"' if self._ntlm_user_file else 'Basic realm="WSMAN"'
            return 401, {"WWW-Authenticate": offer}, b""
        body = request.body
        encrypted = "multipart/encrypted" in request.headers.get("content-type", "")
        if encrypted:
            try:
                body = ntlm.decrypt(body)
            except NtlmError:
                return 400, {}, b""
            self.encrypted_requests += 1
        try:
            envelope = ET.fromstring(body)
        except ET.ParseError:
            return 400, {}, b""
        status, answer = await self._dispatch(host, user, envelope)
        if encrypted:
            return status, {"Content-Type": ntlm_content_type}, ntlm.encrypt(answer)
        return status, {"Content-Type": "application/soap+xml;charset=UTF-8"}, answer

    def _authenticate(self, header: str) -> str | None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if user in self._users and self._users[user] == password:
            return user
        return None

    # --- WS-Man ---------------------------------------------------------------------------

    async def _dispatch(self, host: LabHost, user: str, env: ET.Element) -> tuple[int, bytes]:
        action = soap.header_text(env, soap.NS_ADDR, "Action")
        message_id = soap.header_text(env, soap.NS_ADDR, "MessageID")
        shell_id = soap.shell_id(env)
        shells = self._shells[host.address]
        if action == soap.ACTION_CREATE:
            shell = _Shell(shell_id=str(uuid.uuid4()).upper(), user=user)
            shells[shell.shell_id] = shell
            self.shell_records[shell.shell_id] = ShellRecord(shell.shell_id, host.address, user)
            return 200, soap.created_response(message_id, shell.shell_id)
        shell_or_none = shells.get(shell_id or "")
        if shell_or_none is None:
            return 500, soap.fault_response(
                message_id, INJECTED_FAULT, "The request for the Windows Remote Shell with "
                f"ShellId {shell_id} failed because the shell was not found on the server."
            )
        shell = shell_or_none
        if action == soap.ACTION_COMMAND:
            return 200, self._start_command(host, shell, env, message_id)
        if action == soap.ACTION_RECEIVE:
            return await self._receive(host, shell, env, message_id)
        if action == soap.ACTION_SEND:
            return self._send(shell, message_id, env)
        if action == soap.ACTION_SIGNAL:
            signal = env.find(f".//{{{soap.NS_SHELL}}}Signal")
            command_id = signal.get("CommandId", "") if signal is not None else ""
            command = shell.commands.get(command_id)
            if command is not None:
                await _cancel(command)
                self.shell_records[shell.shell_id].signalled.append(command_id)
            return 200, soap.signal_response(message_id)
        if action == soap.ACTION_DELETE:
            await self._delete_shell(host.address, shell)
            return 200, soap.deleted_response(message_id)
        return 500, soap.fault_response(message_id, INJECTED_FAULT, f"unsupported action {action}")

    def _start_command(
        self, host: LabHost, shell: _Shell, env: ET.Element, message_id: str
    ) -> bytes:
        command_el = env.find(f".//{{{soap.NS_SHELL}}}Command")
        args_el = env.find(f".//{{{soap.NS_SHELL}}}Arguments")
        program = (command_el.text or "") if command_el is not None else ""
        arguments = (args_el.text or "") if args_el is not None else ""
        command_line = f"{program} {arguments}".strip()
        command = _Command(str(uuid.uuid4()).upper(), command_line, CommandOutput())
        shell.commands[command.command_id] = command
        self.shell_records[shell.shell_id].command_ids.append(command.command_id)
        command.task = host.spawn(command_line, self._run(host, command)).task
        return soap.command_response(message_id, command.command_id)

    def _send(self, shell: _Shell, message_id: str, env: ET.Element) -> tuple[int, bytes]:
        for stream in env.iter(f"{{{soap.NS_SHELL}}}Stream"):
            command = shell.commands.get(stream.get("CommandId", ""))
            if command is None or stream.get("Name") != "stdin":
                return 500, soap.fault_response(message_id, INJECTED_FAULT, "unknown CommandId")
            try:
                data = base64.b64decode((stream.text or "").strip(), validate=True)
            except binascii.Error:
                return 500, soap.fault_response(message_id, INJECTED_FAULT, "stdin is not base64")
            command.output.feed_stdin(data, end=stream.get("End", "").lower() == "true")
        return 200, soap.envelope(
            f"{soap.NS_SHELL}/SendResponse", message_id, "<rsp:SendResponse/>"
        )

    async def _run(self, host: LabHost, command: _Command) -> None:
        record = self.records[host.address]
        try:
            status = await interpret(host, command.command_line, command.output, record=record)
        except asyncio.CancelledError:
            command.output.finish(None)
            raise
        except Exception as exc:  # a simulator bug must not hang the client
            command.output.stderr += f"lab: internal error: {exc!r}\r\n".encode()
            command.output.finish(1)
            return
        command.output.finish(status)

    async def _receive(
        self, host: LabHost, shell: _Shell, env: ET.Element, message_id: str
    ) -> tuple[int, bytes]:
        mode = self.faults.get(host.address, FaultMode.NONE)
        if mode is FaultMode.FAULT:
            return 500, soap.fault_response(
                message_id, INJECTED_FAULT, "The WS-Management service cannot process the "
                "request (lab fault injection)."
            )
        if mode is FaultMode.MALFORMED:
            return 200, b"<s:Envelope><s:Body><rsp:ReceiveResponse>not xml at all"
        if mode is FaultMode.DRIP:
            raise _Drip
        stream = env.find(f".//{{{soap.NS_SHELL}}}DesiredStream")
        command_id = stream.get("CommandId", "") if stream is not None else ""
        command = shell.commands.get(command_id)
        if command is None:
            return 500, soap.fault_response(message_id, INJECTED_FAULT, "unknown CommandId")
        if host.scenario.kind is ScenarioKind.CONNECTION_DROP and (
                command.output.connect_started or _runs_agent_connect(command.command_line)):
            raise _DropConnection
        timeout_s = soap.operation_timeout_s(env)
        output = command.output
        if not output.has_news():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(output.changed.wait(), timeout_s)
        if not output.has_news():
            return 500, soap.fault_response(
                message_id, OPERATION_TIMEOUT_FAULT, "The WS-Management service cannot complete "
                "the operation within the time specified in OperationTimeout."
            )
        # Like Windows, never answer more than the client's MaxEnvelopeSize: the rest of the
        # output waits for the next Receive, and Done comes with the last of it.
        room = soap.stream_room(env)
        stdout = bytes(output.stdout[:room])
        del output.stdout[: len(stdout)]
        stderr = bytes(output.stderr[: room - len(stdout)])
        del output.stderr[: len(stderr)]
        done, status = False, None
        if not output.stdout and not output.stderr:
            _, _, done, status = output.take()
        return 200, soap.receive_response(message_id, command_id, stdout, stderr, done, status)

    async def _delete_shell(self, address: str, shell: _Shell) -> None:
        for command in shell.commands.values():
            await _cancel(command)
        self._shells[address].pop(shell.shell_id, None)
        record = self.shell_records.get(shell.shell_id)
        if record is not None:
            record.deleted = True


def _runs_agent_connect(command_line: str) -> bool:
    script = _decoded_script(command_line.split()[1:]) or ""
    return "azcmagent.exe' connect " in script


async def _cancel(command: _Command) -> None:
    task = command.task
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


# --- HTTP framing ---------------------------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadRequest from None
        return None
    if len(head) > _MAX_HEADER_BYTES:
        raise _BadRequest
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _BadRequest
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest from None
    if length < 0 or length > _MAX_BODY_BYTES:
        raise _BadRequest
    body = await reader.readexactly(length) if length else b""
    return _Request(parts[0], parts[1], headers, body)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            500: "Internal Server Error"}


def _write_response(
    writer: asyncio.StreamWriter,
    status: int,
    headers: dict[str, str],
    body: bytes,
    *,
    keep_alive: bool,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Server: arcfleet-lab-wsman"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: " + ("keep-alive" if keep_alive else "close"))
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

"""WinRM transport: pywinrm's ``Protocol`` driven by hand, its blocking calls in a shared executor.

pywinrm is synchronous, so every HTTP exchange runs in the engine's
:class:`~concurrent.futures.ThreadPoolExecutor` (sized by the factory to the sessions the run keeps
open); a thread is held for one exchange (at most one long-poll), not for a whole command.

Every exchange goes through :class:`~fleet.transport.winrm_http.BoundedAdapter`: identity encoding
only, a byte cap, and a deadline after which its socket is shut down. Each blocking call also gets
a deadline of its own (opening: ``open_timeout_s``; a command's exchanges: no later than the
command's deadline), and a call the event loop stops waiting for (cancellation) is cut at once, so
no worker thread outlives the host it served.

``Session.run_cmd`` retries Receive forever on a hung command, so :meth:`WinrmTransport.run`
drives Command / Receive itself against a deadline. Each Receive long-polls for at most the time
left (the WS-Man OperationTimeout); on the deadline the command is signalled (terminate) and the
shell deleted, and the partial output is returned with ``timed_out=True``.

Errors:

* connection refused / timed out / DNS -> :class:`HostUnreachable` (when opening);
* an answer that breaks a bound (size, encoding, exchange deadline) -> :class:`HostUnreachable`
  when opening, :class:`ConnectionDropped` once a command runs;
* HTTP 401 -> :class:`HostAuthFailed`; TLS certificate not trusted -> :class:`HostAuthFailed`;
* basic auth over plain HTTP without ``allow_basic_over_http``, or over HTTPS without certificate
  validation and without ``allow_unverified_tls`` -> :class:`InputError` from the constructor
  (nothing is contacted; :func:`winrm_settings_problem` lets a loader check first);
* anything that breaks the exchange once a command runs (connection lost, a SOAP fault other than
  the operation timeout, a response that is not XML) -> :class:`ConnectionDropped`: the command's
  outcome on the host is unknown, which is what the engine must be told. The shell is abandoned
  and the next command opens a new one.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import requests
import winrm.transport
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from fleet.errors import (
    ConnectionDropped,
    HostAuthFailed,
    HostUnreachable,
    InputError,
    TransportError,
)
from fleet.inventory.model import ResolvedHost
from fleet.inventory.winrm_policy import winrm_settings_problem
from fleet.redact import redact, register_secret
from fleet.transport.base import OUTPUT_CAP_BYTES, CommandResult, ScriptResult
from fleet.transport.powershell import (
    SCRIPT_BOOTSTRAP_LABEL,
    clixml_to_text,
    command_line,
    put_file_script,
    read_tail_script,
    script_bootstrap,
    script_stdin,
)
from fleet.transport.winrm_http import (
    AnswerRefused,
    BoundedAdapter,
    ExchangeDeadline,
    bound_transport,
    call_deadline,
    trust_context,
)

_T = TypeVar("_T")

# Windows answers "access denied" (ERROR_ACCESS_DENIED) as WSManFault code 5.
_ACCESS_DENIED = 5
# pywinrm sends Send input in one envelope; stay well under WinRM's default MaxEnvelopeSize.
_STDIN_CHUNK = 64 * 1024
_FILE_TIMEOUT_S = 60.0
# A large upload (the agent MSI, tens of MB, in 64 KiB Send chunks) gets more time: at least
# this many bytes per second are assumed on top of the fixed budget.
_UPLOAD_FLOOR_BPS = 256 * 1024
# How long the best-effort Signal + Delete after a cancelled or timed-out command may take.
_ABANDON_S = 5.0
# What a Receive may take beyond its OperationTimeout before the exchange is cut.
_LONG_POLL_GRACE_S = 5.0


class WinrmTransport:
    """:class:`fleet.transport.base.Transport` over WinRM (WS-Management, WinRS shell)."""

    def __init__(
        self,
        host: ResolvedHost,
        *,
        password: str,
        executor: ThreadPoolExecutor,
        read_timeout_s: int = 30,
        long_poll_s: int = 5,
        open_timeout_s: float = 30.0,
    ) -> None:
        problem = winrm_settings_problem(host)
        if problem is not None:
            raise InputError(problem)
        register_secret(password)
        self.host_name = host.name
        self._host = host
        self._password = password
        self._executor = executor
        self._read_timeout_s = max(int(read_timeout_s), 3)
        # Opening (TCP, TLS, authentication, Create) as a whole, not per read.
        self._open_timeout_s = max(float(open_timeout_s), 1.0)
        self._adapter: BoundedAdapter | None = None
        # One Receive holds an executor thread for up to this long, so it is kept short (WinRM's
        # own default is 20 s); it must end before the HTTP read timeout, or a quiet command
        # looks like a dead connection.
        self._max_operation_timeout_s = max(1, min(int(long_poll_s), self._read_timeout_s - 2))
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None
        # The Signal + Delete of a command the engine gave up on; the next command (say, the
        # config file's cleanup) waits for it, so a cancelled write cannot land after the
        # cleanup that was meant to remove it.
        self._abandoning: concurrent.futures.Future[None] | None = None
        # (shell, command) of the last finished command, not yet signalled: see _exchange.
        self._unsignalled: tuple[str, str] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WinrmTransport({self.host_name!r}, {self.endpoint!r})"

    @property
    def endpoint(self) -> str:
        address = self._host.address
        if ":" in address and not address.startswith("["):
            address = f"[{address}]"
        return f"{self._host.winrm.scheme}://{address}:{self._host.port}/wsman"

    # --- Transport ---------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._lock:
            if self._protocol is not None and self._shell_id is not None:
                return
            try:
                await self._call(self._open_sync, budget_s=self._open_timeout_s)
            except Exception as exc:
                raise self._open_error(exc) from None

    async def run(self, command: str, *, timeout_s: float) -> CommandResult:
        async with self._lock:
            return await self._execute(command, timeout_s=timeout_s)

    async def put_file(self, path: str, content: bytes, *, private: bool = True) -> None:
        script = put_file_script(path, private=private)
        async with self._lock:
            timeout_s = _FILE_TIMEOUT_S + len(content) / _UPLOAD_FLOOR_BPS
            result = await self._execute(script, timeout_s=timeout_s, stdin=content)
        if not result.ok:
            raise TransportError(
                self.host_name,
                redact(f"cannot write {path}: {_first_line(result.stderr) or _status(result)}"),
            )

    async def read_tail(self, path: str, max_bytes: int, *, elevated: bool = False) -> str:
        # A WinRM session of an Administrator is already elevated: ``elevated`` changes nothing.
        # The tail travels base64 on stdout, which the output cap must not cut.
        script = read_tail_script(path, min(max_bytes, OUTPUT_CAP_BYTES * 3 // 4))
        async with self._lock:
            result = await self._execute(script, timeout_s=_FILE_TIMEOUT_S)
        if not result.ok:
            raise TransportError(
                self.host_name,
                redact(f"cannot read {path}: {_first_line(result.stderr) or _status(result)}"),
            )
        try:
            data = base64.b64decode(result.stdout.strip(), validate=True)
        except ValueError:
            raise TransportError(self.host_name, f"cannot read {path}: unexpected output") from None
        return data.decode("utf-8", errors="replace")

    async def close(self) -> None:
        async with self._lock:
            self._unsignalled = None  # the shell's Delete ends its finished command too
            if self._protocol is None:
                return
            with contextlib.suppress(Exception):
                await self._call(self._close_sync, budget_s=_ABANDON_S)
            self._protocol = None
            self._shell_id = None

    # --- the command loop --------------------------------------------------------------------

    async def run_script(
        self,
        command: str,
        stdin: bytes,
        *,
        timeout_s: float,
        output_cap: int,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> ScriptResult:
        """The one-session path (:class:`fleet.transport.base.ScriptTransport`): one WinRS
        command, a short bootstrap (:func:`fleet.transport.powershell.script_bootstrap`) that
        reads ``command`` (a PowerShell script) and then ``stdin`` from its standard input."""
        payload = script_stdin(command, stdin)
        started = time.monotonic()
        stdout, stderr = _CappedBuffer(output_cap), _CappedBuffer()
        lost = ""
        async with self._lock:
            try:
                exit_status, timed_out = await self._exchange(
                    script_bootstrap(), stdout, stderr, timeout_s=timeout_s, stdin=payload,
                    encode_stdin=False, on_stdout=on_stdout,
                )
            except ConnectionDropped as exc:
                exit_status, timed_out, lost = None, False, exc.reason
        return ScriptResult(
            command=SCRIPT_BOOTSTRAP_LABEL,
            exit_status=exit_status,
            stdout=stdout.data,
            stderr=clixml_to_text(_text(stderr.data)),
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            truncated_bytes=stdout.dropped + stderr.dropped,
            lost=lost,
        )

    async def _execute(
        self, script: str, *, timeout_s: float, stdin: bytes | None = None
    ) -> CommandResult:
        started = time.monotonic()
        stdout, stderr = _CappedBuffer(), _CappedBuffer()
        exit_status, timed_out = await self._exchange(
            script, stdout, stderr, timeout_s=timeout_s, stdin=stdin
        )
        return self._result(script, exit_status, stdout, stderr, started, timed_out=timed_out)

    async def _exchange(
        self,
        script: str,
        stdout: _CappedBuffer,
        stderr: _CappedBuffer,
        *,
        timeout_s: float,
        stdin: bytes | None = None,
        encode_stdin: bool = True,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> tuple[int | None, bool]:
        """Run one WinRS command; its output goes into the buffers. Returns (exit status,
        timed out)."""
        deadline = time.monotonic() + timeout_s
        shell_id = await self._shell()
        unsignalled, self._unsignalled = self._unsignalled, None
        if unsignalled is not None and unsignalled[0] == shell_id:
            with contextlib.suppress(Exception):
                await self._call(self._proto.cleanup_command, *unsignalled, budget_s=_ABANDON_S)
        program, args = command_line(script)
        try:
            command_id: str = await self._call(
                self._proto.run_command,
                shell_id,
                program,
                args,
                console_mode_stdin=stdin is None,
                budget_s=self._budget(deadline),
            )
        except Exception as exc:
            raise self._dropped(exc) from None
        try:
            if stdin is not None:
                await self._send_stdin(
                    shell_id, command_id, stdin, deadline, encode=encode_stdin
                )
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    await self._abandon_shell(shell_id, command_id)
                    return None, True
                out, err, code, done = await self._receive(shell_id, command_id, remaining)
                kept = stdout.add(out)
                if on_stdout is not None and kept:
                    on_stdout(kept)
                stderr.add(err)
                if done:
                    exit_status: int | None = code
                    break
        except asyncio.CancelledError:
            # The engine gave up on this host: stop the command without waiting for the answer
            # (best effort: the cancelled Receive may still be using the session).
            self._shell_id = None
            with contextlib.suppress(RuntimeError):  # executor already shut down
                self._abandoning = self._executor.submit(self._abandon_sync, shell_id, command_id)
            raise
        except ExchangeDeadline as exc:
            # Cut at the command's deadline: a timeout (Signal + Delete, best effort and
            # bounded). Cut earlier: the host stopped answering, the outcome is unknown.
            if time.monotonic() < deadline:
                raise self._dropped(exc) from None
            await self._abandon_shell(shell_id, command_id)
            return None, True
        except TransportError:
            raise
        except Exception as exc:
            raise self._dropped(exc) from None
        # Windows keeps a finished command's state until it is signalled or its shell is
        # deleted. The Signal waits for the next command on this shell; a close deletes the
        # shell instead, so the one-script session makes one exchange less.
        self._unsignalled = (shell_id, command_id)
        return exit_status, False

    def _budget(self, deadline: float) -> float:
        """An exchange's time: up to the HTTP read timeout, never past the command's deadline
        (plus a little, so a timely answer at the deadline is still read)."""
        return max(0.5, min(float(self._read_timeout_s), deadline - time.monotonic() + 1.0))

    async def _receive(
        self, shell_id: str, command_id: str, remaining_s: float
    ) -> tuple[bytes, bytes, int, bool]:
        # The long-poll waits no longer than the time left, so the deadline is kept to ~1 s.
        # The Protocol is used by one call at a time (self._lock), so setting this is safe.
        operation_s = max(1, min(self._max_operation_timeout_s, math.ceil(remaining_s)))
        self._proto.operation_timeout_sec = operation_s
        try:
            result: tuple[bytes, bytes, int, bool] = await self._call(
                self._proto.get_command_output_raw, shell_id, command_id,
                # The answer is due at the OperationTimeout; past the command's deadline only a
                # little grace, so a host that stops answering cannot stretch the deadline.
                budget_s=max(1.0, min(operation_s + _LONG_POLL_GRACE_S, remaining_s + 1.0)),
            )
        except WinRMOperationTimeoutError:
            return b"", b"", -1, False
        return result

    async def _send_stdin(
        self, shell_id: str, command_id: str, data: bytes, deadline: float, *, encode: bool = True
    ) -> None:
        # A file's bytes go base64 (the script decodes them); a host script's stdin is ASCII
        # lines already (script_stdin).
        encoded = base64.b64encode(data) if encode else data
        chunks = [encoded[i : i + _STDIN_CHUNK] for i in range(0, len(encoded), _STDIN_CHUNK)]
        chunks = chunks or [b""]
        for index, chunk in enumerate(chunks):
            await self._call(
                self._proto.send_command_input,
                shell_id,
                command_id,
                chunk,
                end=index == len(chunks) - 1,
                budget_s=self._budget(deadline),
            )

    async def _shell(self) -> str:
        if self._protocol is not None and self._shell_id is not None:
            return self._shell_id
        abandoning, self._abandoning = self._abandoning, None
        if abandoning is not None:  # bounded by _abandon_sync's own deadline
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(abandoning), _ABANDON_S + 1)
        try:
            await self._call(self._open_sync, budget_s=self._open_timeout_s)
        except Exception as exc:
            error = self._open_error(exc)
            if isinstance(error, HostAuthFailed):
                raise error from None
            raise ConnectionDropped(self.host_name, error.reason) from None
        assert self._shell_id is not None
        return self._shell_id

    async def _abandon_shell(self, shell_id: str, command_id: str) -> None:
        self._shell_id = None
        await self._call(self._abandon_sync, shell_id, command_id, budget_s=_ABANDON_S)

    def _result(
        self,
        script: str,
        exit_status: int | None,
        stdout: _CappedBuffer,
        stderr: _CappedBuffer,
        started: float,
        *,
        timed_out: bool = False,
    ) -> CommandResult:
        return CommandResult(
            command=script,
            exit_status=exit_status,
            stdout=_text(stdout.data),
            stderr=clixml_to_text(_text(stderr.data)),
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            truncated_bytes=stdout.dropped + stderr.dropped,
        )

    # --- blocking parts (run in the executor) --------------------------------------------------

    @property
    def _proto(self) -> Protocol:
        assert self._protocol is not None, "open() first"
        return self._protocol

    async def _call(
        self, fn: Callable[..., _T], *args: Any, budget_s: float | None = None, **kwargs: Any
    ) -> _T:
        """``fn`` in the executor; its exchanges end within ``budget_s`` (default: the HTTP read
        timeout), and at once if the caller stops waiting."""
        budget = float(self._read_timeout_s) if budget_s is None else budget_s

        def bounded() -> _T:
            with call_deadline(budget):
                return fn(*args, **kwargs)

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, bounded)
        try:
            return await future
        except asyncio.CancelledError:
            # The thread would otherwise stay in its read until the exchange deadline.
            if self._adapter is not None:
                self._adapter.abort("abandoned by the run")
            raise

    def _open_sync(self) -> None:
        if self._protocol is None:
            self._protocol = self._make_protocol()
        self._shell_id = self._protocol.open_shell(noprofile=True, codepage=65001)

    def _mount(self, session: requests.Session) -> None:
        """Put the bounded adapter under pywinrm's session, before its first message."""
        if self._adapter is None:
            settings = self._host.winrm
            context = (
                trust_context(settings.ca_file)
                if settings.scheme == "https" and settings.cert_validation
                else None
            )
            self._adapter = BoundedAdapter(exchange_s=float(self._read_timeout_s),
                                           ssl_context=context)
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        # Nothing from the environment: no proxy (as proxy=None says), no netrc, no CA bundle
        # (the adapter's context has decided trust). requests would otherwise scan os.environ
        # for proxy variables on every request.
        session.trust_env = False

    def _make_protocol(self) -> Protocol:
        settings = self._host.winrm
        available = {
            "kerberos": winrm.transport.HAVE_KERBEROS,
            "credssp": winrm.transport.HAVE_CREDSSP,
            "ntlm": winrm.transport.HAVE_NTLM,
        }
        if not available.get(settings.auth, True):
            raise WinRMError(
                f"{settings.auth} authentication is not available: its Python "
                "package is not installed"
            )
        protocol = Protocol(
            self.endpoint,
            transport=settings.auth,
            username=settings.user,
            password=self._password,
            server_cert_validation="validate" if settings.cert_validation else "ignore",
            # None: no CA path for requests; the bounded adapter's SSL context decides trust.
            ca_trust_path=None,  # type: ignore[arg-type]
            read_timeout_sec=self._read_timeout_s,
            operation_timeout_sec=self._max_operation_timeout_s,
            message_encryption="auto",
            # Never route WinRM through an environment proxy (and never proxy loopback).
            proxy=None,
        )
        bound_transport(protocol.transport, self._mount)
        return protocol

    def _abandon_sync(self, shell_id: str, command_id: str) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        with call_deadline(_ABANDON_S):  # best effort, bounded: the host may be the problem
            with contextlib.suppress(Exception):
                protocol.operation_timeout_sec = self._max_operation_timeout_s
                protocol.cleanup_command(shell_id, command_id)
            with contextlib.suppress(Exception):
                protocol.close_shell(shell_id, close_session=False)

    def _close_sync(self) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        try:
            if self._shell_id is not None:
                protocol.close_shell(self._shell_id, close_session=True)
        finally:
            protocol.transport.close_session()

    # --- error mapping -------------------------------------------------------------------------

    def _open_error(self, exc: BaseException) -> TransportError:
        reason = self._describe(exc)
        if isinstance(exc, InvalidCredentialsError | requests.exceptions.SSLError):
            return HostAuthFailed(self.host_name, reason)
        if isinstance(exc, WSManFaultError) and exc.wsman_fault_code == _ACCESS_DENIED:
            return HostAuthFailed(self.host_name, reason)
        if isinstance(exc, WinRMError) and not isinstance(
            exc, WinRMTransportError | WSManFaultError
        ):
            return HostAuthFailed(self.host_name, reason)
        return HostUnreachable(self.host_name, reason)

    def _dropped(self, exc: BaseException) -> TransportError:
        self._shell_id = None
        reason = self._describe(exc)
        if isinstance(exc, InvalidCredentialsError):
            return HostAuthFailed(self.host_name, reason)
        return ConnectionDropped(self.host_name, reason)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, InvalidCredentialsError):
            text = "credentials rejected (HTTP 401)"
        elif isinstance(exc, AnswerRefused):
            text = str(exc)
        elif isinstance(exc, requests.exceptions.SSLError):
            text = f"TLS certificate not trusted: {_short(exc)}"
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            text = "connect timed out"
        elif isinstance(exc, requests.exceptions.ReadTimeout):
            text = "no answer within the read timeout"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            text = f"cannot connect: {_short(exc)}"
        elif isinstance(exc, WSManFaultError):
            text = f"WS-Man fault {exc.wsman_fault_code} (HTTP {exc.code}): {exc.reason}"
        elif isinstance(exc, WinRMTransportError):
            text = f"HTTP {exc.code} from the WinRM endpoint"
        elif isinstance(
            exc, ET.ParseError | StopIteration | AssertionError | KeyError | ValueError
        ):
            text = f"malformed WS-Man response ({type(exc).__name__})"
        else:
            text = f"{type(exc).__name__}: {exc}"
        return redact(f"{text} [{self.endpoint}]")


class _CappedBuffer:
    """Keeps the first OUTPUT_CAP_BYTES of a stream and counts the rest."""

    def __init__(self, cap: int = OUTPUT_CAP_BYTES) -> None:
        self._chunks: list[bytes] = []
        self._kept = 0
        self._cap = cap
        self.dropped = 0

    def add(self, data: bytes) -> bytes:
        """Keep what fits; returns the part kept."""
        room = self._cap - self._kept
        if len(data) > room:
            self.dropped += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        if data:
            self._chunks.append(data)
            self._kept += len(data)
        return data

    @property
    def data(self) -> bytes:
        return b"".join(self._chunks)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff").replace("\r\n", "\n")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _status(result: CommandResult) -> str:
    return "timed out" if result.timed_out else f"exit status {result.exit_status}"


def _short(exc: BaseException) -> str:
    # requests nests urllib3 reasons; the innermost one says what happened.
    text = str(exc)
    for marker in ("Caused by ", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip("()'\" ")[:200]

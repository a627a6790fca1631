"""HTTP under pywinrm, bounded: what one WinRM endpoint can cost us is capped in bytes and time.

pywinrm sends every WS-Man message through a ``requests`` session. Left alone, a hostile or broken
endpoint can (a) answer with a gzip body that ``requests`` inflates in memory (1.5 MB on the wire,
1.5 GiB in RAM) and (b) drip one byte at a time so no per-read timeout ever fires, holding a worker
thread, and with it the interpreter's exit, for as long as it likes. :class:`BoundedAdapter` is
mounted on that session and, for every HTTP exchange (authentication round trips included):

* asks for ``Accept-Encoding: identity`` and refuses any other content coding without reading it;
* reads the body itself, raw, and refuses it past :data:`MAX_RESPONSE_BYTES`;
* arms a deadline on the :class:`Watchdog` thread: when it passes, the exchange's socket is shut
  down, which ends a read blocked in any thread at once; :meth:`BoundedAdapter.abort` does the
  same on demand (the event loop gave up on the host, or the run is ending).

It also carries the TLS trust decision (:func:`trust_context`): the inventory's CA file, else
``REQUESTS_CA_BUNDLE``, else the operating system's store through ``truststore``.

Errors (all :class:`requests.RequestException`, so pywinrm lets them through unchanged)::

    AnswerRefused            the answer broke a bound; the connection is closed
    ├── AnswerTooLarge       more than MAX_RESPONSE_BYTES
    ├── AnswerEncoded        a content coding other than identity
    └── ExchangeDeadline     no complete answer before the exchange's deadline
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions
import winrm.transport
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# pywinrm asks for envelopes of at most 150 KiB (MaxEnvelopeSize 153600); sealed NTLM messages add a
# few bytes. Anything far above is not a WS-Man answer to our requests.
MAX_RESPONSE_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024


class AnswerRefused(requests.exceptions.RequestException):
    """The endpoint's answer broke a bound; the connection was closed."""


class AnswerTooLarge(AnswerRefused):
    pass


class AnswerEncoded(AnswerRefused):
    pass


class ExchangeDeadline(AnswerRefused):
    pass


def trust_context(ca_file: Path | None) -> ssl.SSLContext:
    """The TLS context that validates a WinRM endpoint's certificate.

    The inventory's ``ca_file`` when set (only that bundle), else ``REQUESTS_CA_BUNDLE`` (the
    variable requests users already set for an internal CA), else the system trust store.
    """
    bundle = str(ca_file) if ca_file is not None else os.environ.get("REQUESTS_CA_BUNDLE")
    if bundle:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    import truststore  # the platform's own verifier and store (OpenSSL's paths on Linux)

    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


# --- deadlines --------------------------------------------------------------------------------


class _Exchange:
    """One HTTP request/answer; the sockets it uses are shut down if it is cut."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cut_reason: str | None = None
        self.finished = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if sock not in self._sockets:
                self._sockets.append(sock)
            cut = self.cut_reason is not None
        if cut:
            _shutdown(sock)

    def cut(self, reason: str) -> None:
        with self._lock:
            if self.finished or self.cut_reason is not None:
                return
            self.cut_reason = reason
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    # shutdown(2), not close: it wakes a recv() blocked in another thread on the same socket,
    # and it works through the duplicate descriptor we hold (TLS wrapping detaches the original).
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Watchdog:
    """One daemon thread that cuts every exchange whose deadline passed.

    It looks at the exchanges in flight every :attr:`TICK_S` (a few hundred at most), instead of
    being woken for each new one: starting an exchange costs a set insertion, no thread switch.
    """

    TICK_S = 0.2

    def __init__(self) -> None:
        self._in_flight: set[_Exchange] = set()
        self._lock = threading.Lock()
        self._busy = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, exchange: _Exchange) -> None:
        with self._lock:
            self._in_flight.add(exchange)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="winrm-watchdog",
                                                daemon=True)
                self._thread.start()
        if not self._busy.is_set():
            self._busy.set()

    def disarm(self, exchange: _Exchange) -> None:
        with self._lock:
            self._in_flight.discard(exchange)

    def _loop(self) -> None:
        while True:
            self._busy.wait()
            time.sleep(self.TICK_S)
            now = time.monotonic()
            with self._lock:
                late = [e for e in self._in_flight if e.deadline <= now]
                if not self._in_flight:
                    self._busy.clear()
            for exchange in late:
                exchange.cut("deadline")


WATCHDOG = Watchdog()
_local = threading.local()


def _current_exchange() -> _Exchange | None:
    return getattr(_local, "exchange", None)


@contextlib.contextmanager
def call_deadline(seconds: float) -> Iterator[None]:
    """Every exchange made by this thread inside the block ends within ``seconds`` from now."""
    previous = getattr(_local, "call_deadline", None)
    _local.call_deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.call_deadline = previous


# --- connections that report their socket to the current exchange ------------------------------


class _Watched:
    """Mixin for urllib3 connections: a duplicate of the socket, handed to each exchange."""

    _watch_socket: socket.socket | None = None

    def _report(self) -> None:
        exchange = _current_exchange()
        if exchange is not None and self._watch_socket is not None:
            exchange.watch(self._watch_socket)

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        self._drop_watch()
        self._watch_socket = sock.dup()
        self._report()
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._report()
        super().request(*args, **kwargs)  # type: ignore[misc]

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            self._drop_watch()

    def _drop_watch(self) -> None:
        if self._watch_socket is not None:
            with contextlib.suppress(OSError):
                self._watch_socket.close()
            self._watch_socket = None


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


# --- the adapter ---------------------------------------------------------------------------------

_ADAPTERS: weakref.WeakSet[BoundedAdapter] = weakref.WeakSet()


class BoundedAdapter(HTTPAdapter):
    """A requests adapter whose every exchange is bounded in size and time (module docstring)."""

    def __init__(self, *, exchange_s: float, ssl_context: ssl.SSLContext | None = None,
                 max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.exchange_s = exchange_s
        self.max_bytes = max_bytes
        self._ssl_context = ssl_context
        self._in_flight: set[_Exchange] = set()
        self._lock = threading.Lock()
        super().__init__(max_retries=0)
        _ADAPTERS.add(self)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        if self._ssl_context is not None:
            pool_kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if self._ssl_context is not None and verify:
            # Our context holds the trust decision; requests would add certifi's bundle to it.
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None
            conn.ca_cert_dir = None
            return
        super().cert_verify(conn, url, verify, cert)

    def abort(self, reason: str = "aborted") -> None:
        """Cut every exchange in flight (any thread): their reads end at once."""
        with self._lock:
            exchanges = list(self._in_flight)
        for exchange in exchanges:
            exchange.cut(reason)

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        request.headers["Accept-Encoding"] = "identity"
        deadline = time.monotonic() + self.exchange_s
        call_end: float | None = getattr(_local, "call_deadline", None)
        if call_end is not None:
            deadline = min(deadline, call_end)
        exchange = _Exchange(deadline)
        allowed_s = deadline - time.monotonic()
        with self._lock:
            self._in_flight.add(exchange)
        _local.exchange = exchange
        WATCHDOG.arm(exchange)
        try:
            if deadline <= time.monotonic():
                exchange.cut("deadline")
                raise ExchangeDeadline(_no_answer(exchange, allowed_s), request=request)
            try:
                response = super().send(request, stream=True, timeout=timeout, verify=verify,
                                        cert=cert, proxies=proxies)
                # NTLM's channel binding hashes the server's certificate, which it would take
                # from the socket after the body is read (gone by then): keep it on the response.
                response.peer_certificate = _peer_certificate(response)  # type: ignore[attr-defined]
                self._read_body(response)
            except AnswerRefused:
                raise
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                    OSError) as exc:
                if exchange.cut_reason is not None:
                    reason = _no_answer(exchange, allowed_s)
                    raise ExchangeDeadline(reason, request=request) from None
                if isinstance(exc, requests.exceptions.RequestException):
                    raise
                # A body read that broke (requests would have wrapped it the same way).
                raise requests.exceptions.ConnectionError(exc, request=request) from None
            if exchange.cut_reason is not None:
                raise ExchangeDeadline(_no_answer(exchange, allowed_s), request=request)
            return response
        finally:
            exchange.finish()
            WATCHDOG.disarm(exchange)
            _local.exchange = None
            with self._lock:
                self._in_flight.discard(exchange)

    def _read_body(self, response: requests.Response) -> None:
        coding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if coding not in ("", "identity"):
            response.close()
            raise AnswerEncoded(f"answer compressed with {coding[:40]!r} although identity was "
                                "asked for; not read", response=response)
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            response.close()
            raise AnswerTooLarge(f"answer of {length} bytes announced, over the "
                                 f"{self.max_bytes} byte limit; not read", response=response)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = response.raw.read(_READ_CHUNK, decode_content=False)
            if not chunk:
                break
            total += len(chunk)
            if total > self.max_bytes:
                response.close()
                raise AnswerTooLarge(f"answer over the {self.max_bytes} byte limit; cut",
                                     response=response)
            chunks.append(chunk)
        response._content = b"".join(chunks)
        response._content_consumed = True
        response.raw.release_conn()


def _no_answer(exchange: _Exchange, allowed_s: float) -> str:
    if exchange.cut_reason == "deadline":
        return f"no complete answer within {max(allowed_s, 0):.1f} s (exchange deadline)"
    return f"exchange cut: {exchange.cut_reason}"


def _peer_certificate(response: requests.Response) -> bytes | None:
    try:
        certificate: bytes | None = response.raw._fp.fp.raw._sock.getpeercert(True)
    except (AttributeError, OSError, ValueError):  # plain HTTP: no certificate
        return None
    return certificate


def bind_channel_from_stored_certificate(auth: object) -> None:
    """Let requests_ntlm compute its channel binding from :func:`_peer_certificate`'s copy."""
    try:
        from requests_ntlm.requests_ntlm import HttpNtlmAuth, _get_certificate_hash
    except ImportError:
        return
    if not isinstance(auth, HttpNtlmAuth):
        return

    def server_cert(response: requests.Response) -> bytes | None:
        certificate = getattr(response, "peer_certificate", None)
        if not auth.send_cbt or certificate is None:
            return None
        digest: bytes | None = _get_certificate_hash(certificate)
        return digest

    auth._get_server_cert = server_cert  # type: ignore[method-assign]


def abort_all(reason: str = "run ended") -> None:
    """Cut every WinRM exchange in flight in this process, so no worker thread outlives a run."""
    for adapter in list(_ADAPTERS):
        adapter.abort(reason)


def bound_transport(transport: winrm.transport.Transport,
                    mount: Callable[[requests.Session], None]) -> None:
    """Make pywinrm's transport mount the bounded adapter on the session it builds.

    ``build_session`` may send the first message itself (NTLM/CredSSP message encryption), so
    the adapter goes in from ``setup_encryption`` too, before that message."""
    build_session = transport.build_session
    setup_encryption = transport.setup_encryption

    def bounded_build_session() -> requests.Session:
        session: requests.Session = build_session()
        mount(session)
        bind_channel_from_stored_certificate(session.auth)
        return session

    def bounded_setup_encryption(session: requests.Session) -> None:
        mount(session)
        bind_channel_from_stored_certificate(session.auth)
        setup_encryption(session)

    transport.build_session = bounded_build_session  # type: ignore[method-assign]
    transport.setup_encryption = bounded_setup_encryption  # type: ignore[method-assign]

"""The transport Protocol every way of reaching a host implements.

A transport holds one session to one host, reused for every step. Commands are given in the host's
native language (a POSIX shell command line for Linux, a PowerShell script for Windows) by the
command builders in :mod:`fleet.azcm`; the transport only runs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Output beyond this is dropped (head kept) and the cut recorded, so a host printing megabytes
# cannot grow memory without bound.
OUTPUT_CAP_BYTES = 256 * 1024


@dataclass(frozen=True)
class CommandResult:
    command: str  # as sent, already free of secrets (secrets travel in files, never argv)
    exit_status: int | None  # None: killed by a signal or the deadline
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    truncated_bytes: int = 0  # how much output was dropped by the cap

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Transport(Protocol):
    host_name: str

    async def open(self) -> None:
        """Open the session. Raises HostUnreachable or HostAuthFailed."""

    async def run(self, command: str, *, timeout_s: float) -> CommandResult:
        """Run a command; on the deadline, stop it on the host and return ``timed_out=True``.

        Raises ConnectionDropped if the session dies; never raises for a non-zero exit.
        """

    async def put_file(self, path: str, content: bytes, *, private: bool = True) -> None:
        """Write a file readable only by the login user (Linux mode 0600; Windows ACL for
        Administrators and SYSTEM)."""

    async def read_tail(self, path: str, max_bytes: int, *, elevated: bool = False) -> str:
        """The last ``max_bytes`` of a file, or "" if it does not exist."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ScriptResult:
    """What a host script sent back: its stdout as bytes (a framed report is counted in bytes,
    so it must not be decoded first), its stderr as text."""

    command: str
    exit_status: int | None
    stdout: bytes
    stderr: str
    duration_s: float
    timed_out: bool = False
    truncated_bytes: int = 0
    lost: str = ""  # why the session died mid-script ("" if it did not): the rest is kept


class StdinGate:
    """A script's standard input given later: the script runs its preflight, says it is ready
    (the caller sees that in its output and calls :meth:`waiting`), waits on its stdin, and the
    caller opens the gate with the bytes (:meth:`open`) or refuses it (:meth:`refuse`: EOF only).

    The time the script spends waiting at the gate does not count against its deadline: the
    caller decides how long that is (an agent slot, pacing), the host is idle meanwhile.
    """

    def __init__(self) -> None:
        self._opened: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting_since: float | None = None
        self._paused_s = 0.0

    def waiting(self) -> None:
        if self._waiting_since is None and not self._opened.done():
            self._waiting_since = time.monotonic()

    def open(self, data: bytes) -> None:
        if not self._opened.done():
            if self._waiting_since is not None:
                self._paused_s = time.monotonic() - self._waiting_since
            self._opened.set_result(data)

    def refuse(self) -> None:
        self.open(b"")

    @property
    def is_waiting(self) -> bool:
        return self._waiting_since is not None and not self._opened.done()

    @property
    def paused_s(self) -> float:
        """Seconds the script waited at the gate (so far, if it still waits)."""
        if self.is_waiting and self._waiting_since is not None:
            return time.monotonic() - self._waiting_since
        return self._paused_s

    async def data(self) -> bytes:
        return await asyncio.shield(self._opened)


class ScriptTransport(Transport, Protocol):
    """A transport that can run one script with data on its stdin (the one-session path)."""

    async def run_script(
        self,
        command: str,
        stdin: bytes | StdinGate,
        *,
        timeout_s: float,
        output_cap: int,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> ScriptResult:
        """Run ``command`` with ``stdin`` as its standard input (then EOF; a :class:`StdinGate`:
        when the caller opens it); like :meth:`run` for deadlines, less the time spent waiting
        at the gate; a session that dies mid-script returns what arrived with ``lost`` set
        (the caller records it, then treats the host as dropped). At most ``output_cap`` bytes
        of stdout are kept; ``on_stdout`` sees each kept chunk as it arrives."""


class CappedOutput:
    """Collects a stream's bytes up to a cap, counting what it drops."""

    def __init__(self, cap: int = OUTPUT_CAP_BYTES) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._kept = 0
        self.dropped = 0

    def add(self, chunk: bytes) -> bytes:
        """Keep what fits; returns the part kept."""
        room = self._cap - self._kept
        kept = b""
        if room > 0:
            kept = chunk[:room]
            self._chunks.append(kept)
            self._kept += len(kept)
        self.dropped += max(0, len(chunk) - max(room, 0))
        return kept

    def text(self) -> str:
        return self.data().decode("utf-8", errors="replace")

    def data(self) -> bytes:
        return b"".join(self._chunks)

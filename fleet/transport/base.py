"""The transport Protocol every way of reaching a host implements.

A transport holds one session to one host, reused for every step. Commands are given in the host's
native language (a POSIX shell command line for Linux, a PowerShell script for Windows) by the
command builders in :mod:`fleet.azcm`; the transport only runs them.
"""

from __future__ import annotations

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


class CappedOutput:
    """Collects a stream's bytes up to a cap, counting what it drops."""

    def __init__(self, cap: int = OUTPUT_CAP_BYTES) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._kept = 0
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self._cap - self._kept
        if room > 0:
            kept = chunk[:room]
            self._chunks.append(kept)
            self._kept += len(kept)
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")

"""Network faults for tests: a private network namespace with nftables rules, and a listener
that accepts TCP and never speaks.

Faults, and what a client sees:

- :meth:`FaultNamespace.blackhole`: every TCP packet to the address is dropped (the SYN too), so
  a connect hangs until the client's own timeout;
- :meth:`FaultNamespace.refuse`: the port answers the SYN with a TCP reset: connection refused,
  at once, even when something listens there;
- :class:`SilentListener`: TCP connects, then nothing: an SSH client waits for a banner that
  never comes. Needs no namespace (root namespace, loopback).

The rules live only inside the namespace (which has nothing but ``lo``), so the machine's own
ruleset is never touched. The code under test must run *inside* the namespace: use
:meth:`FaultNamespace.command` / :meth:`FaultNamespace.run` for a program (``python -m fleet
onboard ...``) and :meth:`FaultNamespace.call` for a Python callable. ``tc netem`` is not used:
the kernels this runs on may lack ``sch_netem``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
TABLE = "arcfleet_faults"


def unavailable_reason() -> str | None:
    """Why network-namespace fault tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network fault tests need root (ip netns, nft)"
    if not Path(IP).exists():
        return "iproute2 (ip) is missing"
    if not Path(NFT).exists():
        return "nftables (nft) is missing: apt-get install nftables"
    probe = f"arcf-probe-{secrets.token_hex(3)}"
    made = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace (no CAP_SYS_ADMIN/NET_ADMIN?): " \
               f"{made.stderr.strip()}"
    try:
        table = subprocess.run([IP, "netns", "exec", probe, NFT, "add", "table", "inet", TABLE],
                               capture_output=True, text=True)
        if table.returncode != 0:
            return f"nftables does not work in a namespace here: {table.stderr.strip()}"
    finally:
        subprocess.run([IP, "netns", "del", probe], capture_output=True)
    return None


class NamespaceCallError(Exception):
    """A callable run in the namespace raised something that cannot cross back by pickle."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


# The child side of FaultNamespace.call: load (func, args, kwargs), run it (awaiting a
# coroutine), write ("ok", value) or ("raised", exception | (type name, message)).
_CHILD = """
import asyncio, inspect, pickle, sys
request, reply = sys.argv[1], sys.argv[2]
with open(request, "rb") as handle:
    func, args, kwargs = pickle.load(handle)
try:
    value = func(*args, **kwargs)
    if inspect.isawaitable(value):
        async def _wait(awaitable):
            return await awaitable
        value = asyncio.run(_wait(value))
    body = ("ok", value)
except BaseException as exc:
    try:
        pickle.loads(pickle.dumps(exc))
        body = ("raised", exc)
    except Exception:
        body = ("raised", (type(exc).__module__ + "." + type(exc).__qualname__, str(exc)))
with open(reply, "wb") as handle:
    pickle.dump(body, handle)
"""


@dataclass
class FaultNamespace:
    """A network namespace with only ``lo`` (up) and an nftables table of faults."""

    name: str
    rules: list[str] = field(default_factory=list)
    _closed: bool = False

    @classmethod
    def create(cls, prefix: str = "arcf") -> FaultNamespace:
        name = f"{prefix}-{secrets.token_hex(4)}"
        subprocess.run([IP, "netns", "add", name], check=True, capture_output=True)
        namespace = cls(name)
        try:
            subprocess.run([IP, "-n", name, "link", "set", "lo", "up"], check=True,
                           capture_output=True)
            namespace.apply()
        except BaseException:
            namespace.close()
            raise
        return namespace

    def __enter__(self) -> FaultNamespace:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- faults ------------------------------------------------------------------------------

    def blackhole(self, address: str, port: int | None = None) -> None:
        """Drop every TCP packet to ``address`` (``port`` only, if given): connect times out."""
        match = f"ip daddr {address} meta l4proto tcp"
        if port is not None:
            match = f"ip daddr {address} tcp dport {port}"
        self.rules.append(f"{match} drop")
        self.apply()

    def refuse(self, address: str, port: int) -> None:
        """Answer connects to ``address:port`` with a TCP reset: connection refused."""
        self.rules.append(f"ip daddr {address} tcp dport {port} reject with tcp reset")
        self.apply()

    def clear(self) -> None:
        self.rules = []
        self.apply()

    def ruleset(self) -> str:
        body = "\n".join(f"    {rule}" for rule in self.rules)
        # "add table; delete table; add table {...}": replaces the table whether or not it exists.
        return (
            f"table inet {TABLE}\n"
            f"delete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n"
            f"  chain input {{\n"
            f"    type filter hook input priority 0; policy accept;\n"
            f"{body}\n"
            f"  }}\n"
            f"}}\n"
        )

    def apply(self) -> None:
        subprocess.run(self.command([NFT, "-f", "-"]), input=self.ruleset(), text=True,
                       check=True, capture_output=True)

    # -- running code inside -----------------------------------------------------------------

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside the namespace."""
        return [IP, "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, timeout_s: float = 120, check: bool = False,
            env: dict[str, str] | None = None, cwd: str | Path | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run a program inside the namespace; output captured as text."""
        return subprocess.run(self.command(argv), capture_output=True, text=True,
                              timeout=timeout_s, check=check, env=env, cwd=cwd)

    def call(self, func: Callable[..., Any], *args: Any, timeout_s: float = 60,
             **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` in a Python subprocess inside the namespace.

        ``func`` must be importable by name (a module-level function); a coroutine function is
        awaited. Arguments and the result cross by pickle. An exception is re-raised here; one
        that does not pickle comes back as :class:`NamespaceCallError`.
        """
        with tempfile.TemporaryDirectory(prefix="arcf-call-") as scratch:
            request, reply = Path(scratch, "request"), Path(scratch, "reply")
            request.write_bytes(pickle.dumps((func, args, kwargs)))
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            done = self.run([sys.executable, "-c", _CHILD, str(request), str(reply)],
                            timeout_s=timeout_s, env=env)
            if not reply.exists():
                raise NamespaceCallError("ChildFailed", f"exit {done.returncode}: {done.stderr}")
            status, value = pickle.loads(reply.read_bytes())
        if status == "ok":
            return value
        if isinstance(value, BaseException):
            raise value
        raise NamespaceCallError(*value)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        subprocess.run([IP, "netns", "del", self.name], capture_output=True)


class SilentListener:
    """Accepts TCP connections on ``address`` and never sends a byte (no SSH banner).

    Connections are held open until :meth:`close`. Runs in a thread of the current process, so
    inside a namespace when created by a callable run through :meth:`FaultNamespace.call`.
    """

    def __init__(self, address: str, port: int = 0) -> None:
        self._server = socket.create_server((address, port), backlog=64)
        self._server.settimeout(0.1)
        self.address = address
        self.port: int = self._server.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-listener", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def tcp_probe(address: str, port: int, timeout_s: float = 1.0) -> str:
    """"connected", "refused" or "timeout": what a plain TCP connect to ``address:port`` gets."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error: {exc}"

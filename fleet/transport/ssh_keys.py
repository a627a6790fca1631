"""Host keys and client keys for the SSH transport: known_hosts checked the way OpenSSH does
(asyncssh's own matching, ``@revoked`` and ``@cert-authority`` included), fail closed on a file
that cannot be read or parsed, trust on first use only when asked; client keys parsed once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

import asyncssh

from fleet.errors import Problem, UsageError
from fleet.inventory.model import ResolvedHost, Transport

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()


class KnownHostsUnusable(Exception):
    """A known_hosts file that cannot be trusted to say which keys are known."""

    def __init__(self, path: Path, reason: str, *, message: str | None = None) -> None:
        super().__init__(message or f"known_hosts file {path}: {reason}")
        self.path = path
        self.reason = reason


class _KnownHosts(asyncssh.SSHKnownHosts):
    """asyncssh's matching with one fix: when no trusted key names the host with its port,
    asyncssh retries without the port and drops the ``@revoked`` lines that did name it that
    way (asyncssh 2.24), so a revoked ``[host]:port`` key would read as unknown."""

    def match(self, host: str, addr: str, port: int | None) -> Any:
        found = super().match(host, addr, port)
        if not port:
            return found
        with_port = self._match(host, addr, port)
        revoked = (2, 4, 6)  # keys, X.509 certificates, X.509 subjects
        return tuple(
            [*found[i], *(k for k in with_port[i] if k not in found[i])] if i in revoked
            else found[i]
            for i in range(len(found))
        )


def _strict_check(text: str, path: Path) -> None:
    """Refuse a file with any line asyncssh would skip or reject.

    asyncssh ignores a line whose key it cannot decode, and rejects the whole file for a bad
    marker. Under trust on first use either would turn a host whose key is on file into an
    unknown one, whose (changed) key would then be learned.
    """
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line[1:].split(None, 2) if line.startswith("@") else [None, *line.split(None, 1)]
        if len(words) != 3 or words[0] not in (None, "cert-authority", "revoked"):
            raise KnownHostsUnusable(path, f"line {number} cannot be parsed")
        data = str(words[2])
        try:
            asyncssh.import_public_key(data)
            continue
        except asyncssh.KeyImportError:
            pass
        try:
            asyncssh.import_certificate(data)
        except asyncssh.KeyImportError:
            raise KnownHostsUnusable(path, f"line {number}: the key cannot be parsed") from None


@dataclass
class HostKeyPolicy:
    """Where host keys are checked, and whether unknown hosts may be added.

    A known_hosts file is parsed once and shared by every connection of the run: asyncssh would
    otherwise re-read and re-parse the whole file for each host, which is quadratic in fleet size
    (1,000 hosts = a million key imports). The parsed copy is reused while the file's size and
    mtime are unchanged, so keys added by :meth:`remember` (or anyone else) are seen.

    Trust on first use (``accept_new``) fails closed: the file must be a regular file that reads
    and parses line by line, and a host counts as unknown only when asyncssh's own matching (host
    name, resolved address and port; ``@revoked`` and ``@cert-authority`` lines included) finds
    nothing for it. The decision is made inside the handshake (:class:`_HostKeyCheck`).
    """

    known_hosts: Path = DEFAULT_KNOWN_HOSTS
    accept_new: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _parsed: dict[Path, tuple[tuple[int, int], asyncssh.SSHKnownHosts]] = field(
        default_factory=dict, repr=False
    )

    def load(self, path: Path) -> asyncssh.SSHKnownHosts:
        """The parsed file. Raises :class:`KnownHostsUnusable` when it is missing (unless
        unknown hosts may be learned into it), not a regular file, unreadable or unparseable."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            if self.accept_new:
                return _KnownHosts("")  # nothing known yet: the file is created on learning
            raise KnownHostsUnusable(
                path,
                "no such file",
                message=f"no known_hosts file at {path} "
                "(add the host keys, or pass --accept-new-host-keys)",
            ) from None
        except OSError as exc:
            raise KnownHostsUnusable(path, exc.strerror or "cannot be read") from None
        if not S_ISREG(stat.st_mode):
            # /dev/null (UserKnownHostsFile=/dev/null) would make every key new, every time.
            raise KnownHostsUnusable(path, "not a regular file")
        version = (stat.st_mtime_ns, stat.st_size)
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KnownHostsUnusable(path, exc.strerror or "cannot be read") from None
        except UnicodeDecodeError:
            raise KnownHostsUnusable(path, "not UTF-8 text") from None
        if self.accept_new:
            _strict_check(text, path)
        try:
            entries = _KnownHosts(text)
        except ValueError as exc:
            raise KnownHostsUnusable(path, str(exc)) from None
        self._parsed[path] = (version, entries)
        return entries

    def is_known(self, host: str, address: str, port: int, known_hosts: Path | None = None) -> bool:
        """Whether the file lists anything for the host: a key, a CA or a revocation."""
        entries = self.load(known_hosts or self.known_hosts)
        return any(entries.match(host, address, None if port == 22 else port))

    async def remember(
        self, address: str, port: int, key: asyncssh.SSHKey, known_hosts: Path | None = None
    ) -> None:
        path = known_hosts or self.known_hosts
        name = address if port == 22 else f"[{address}]:{port}"
        line = f"{name} {key.export_public_key('openssh').decode().strip()}\n"
        async with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)


def check_known_hosts(hosts: list[ResolvedHost], policy: HostKeyPolicy, *, flag: str) -> None:
    """Under trust on first use, refuse before any host is contacted a known_hosts file that
    would not fail closed (/dev/null, a directory, unreadable, a line that does not parse):
    bad input, one problem per file and the first host that uses it."""
    if not policy.accept_new:
        return
    problems: dict[Path, Problem] = {}
    for host in hosts:
        if host.transport is not Transport.SSH:
            continue
        path = host.ssh.known_hosts or policy.known_hosts
        if path in problems:
            continue
        try:
            policy.load(path)
        except KnownHostsUnusable as exc:
            field = "ssh.known_hosts" if host.ssh.known_hosts else flag
            problems[path] = Problem(
                host.source, host.name, field,
                f"{exc}; --accept-new-host-keys needs a regular known_hosts file it can parse",
            )
    if problems:
        raise UsageError(list(problems.values()))


class _HostKeyCheck(asyncssh.SSHClient):
    """asyncssh asks this only for a key that the known_hosts entries do not trust (a revoked
    key is refused before). It is accepted only under trust on first use and only when the
    file says nothing at all about the host, matched as asyncssh matches it."""

    def __init__(self, policy: HostKeyPolicy, path: Path) -> None:
        self._policy = policy
        self._path = path
        self.learned: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        if not self._policy.accept_new:
            return False
        try:
            if self._policy.is_known(host, addr, port, self._path):
                return False  # a changed key, or one a CA or a revocation speaks for
        except KnownHostsUnusable:
            return False
        self.learned = key
        return True


@dataclass
class ClientKeys:
    """Client key files loaded once per run and shared by every connection.

    Given a path, asyncssh reads and parses the key file (and its ``.pub``) again for every
    connection, in a worker thread that competes with the event loop for the GIL.
    """

    _loaded: dict[Path, list[asyncssh.SSHKeyPair]] = field(default_factory=dict, repr=False)

    def get(self, path: Path) -> list[asyncssh.SSHKeyPair] | None:
        """The key pairs in ``path``, or None when it cannot be loaded without help (missing,
        unreadable, passphrase-protected): asyncssh then gets the path and reports the problem
        as it always has. A run refuses such a file before it starts (:func:`check_client_keys`);
        this covers a file that changed since."""
        return self._loaded[path] if self.problem(path) is None else None

    def problem(self, path: Path) -> str | None:
        """Why ``path`` cannot be the client key of a run, in words for the operator (never
        the key's text), or None when it loads."""
        if path in self._loaded:
            return None
        try:
            self._loaded[path] = list(asyncssh.load_keypairs([str(path)]))
        except FileNotFoundError:
            return "no such file"
        except IsADirectoryError:
            return "a directory, not a private key file"
        except OSError as exc:
            return f"cannot be read ({exc.strerror or type(exc).__name__})"
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            if "passphrase" in str(exc).lower():
                # arcfleet never asks for a passphrase; with ssh.key_file unset, asyncssh
                # offers the ssh-agent's keys (SSH_AUTH_SOCK) and the default key files.
                return ("the private key is passphrase-protected and arcfleet takes no "
                        "passphrase: use a key without one, or load it into ssh-agent and "
                        "leave ssh.key_file unset")
            if path.suffix == ".pub":
                return "a public key (.pub): name the private key file"
            return f"not a private key asyncssh can read ({exc})"
        return None


def check_client_keys(hosts: Sequence[ResolvedHost], keys: ClientKeys) -> None:
    """Refuse, before any host is contacted, a client key file that cannot be used (missing,
    unreadable, not a private key, passphrase-protected). Without this every host of the file
    failed at its handshake as if the network were at fault. One problem per file, with the
    first host that names it; the loaded keys stay in ``keys`` for the run."""
    problems: dict[Path, Problem] = {}
    for host in hosts:
        path = host.ssh.key_file if host.transport is Transport.SSH else None
        if path is None or path in problems:
            continue
        reason = keys.problem(path)
        if reason is not None:
            problems[path] = Problem(host.source, host.name, "ssh.key_file",
                                     f"key file {path}: {reason}")
    if problems:
        raise UsageError(list(problems.values()))

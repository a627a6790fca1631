"""The exceptions arcfleet raises, each carrying the data that explains it.

Exception tree::

    ArcfleetError
    ├── InputError                 bad input: exit status 2, nothing contacted
    │   ├── InventoryError         one or more inventory problems (``.problems``)
    │   ├── PlaybookError          a playbook file that does not validate
    │   ├── ScenarioError          a lab scenario file that does not validate
    │   └── UsageError             CLI options that contradict each other
    ├── SecretUnavailable          a secret reference (env var, file) that cannot be read
    ├── TransportError             talking to a host failed (``.host``)
    │   ├── HostUnreachable        refused, no route, DNS failure, connect timeout
    │   ├── HostAuthFailed         login refused, host key unknown or changed, bad password
    │   ├── CommandTimeout         a command passed its deadline and was stopped (``.partial``)
    │   └── ConnectionDropped      the session died while a command ran
    └── StoreError                 the run store cannot be opened or is from a newer arcfleet

Messages never contain a secret: the values are redacted by :mod:`fleet.redact` before any
message is rendered, and the secret itself is never an attribute of an exception.
"""

from __future__ import annotations

from dataclasses import dataclass


class ArcfleetError(Exception):
    """Base of everything arcfleet raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where it is and what is wrong."""

    file: str
    host: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.host:
            where.append(f"host {self.host}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{': '.join(where)}: {self.message}"


class InputError(ArcfleetError):
    """Input that arcfleet refuses before it contacts any host (exit status 2)."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="<input>", host=None, field=None, message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InventoryError(InputError):
    """The inventory does not load or does not validate."""


class PlaybookError(InputError):
    """A playbook does not load or does not validate."""


class ScenarioError(InputError):
    """A lab scenario file does not load or does not validate."""


class UsageError(InputError):
    """Command-line options that cannot be honoured."""


class SecretUnavailable(ArcfleetError):
    """A secret reference could not be resolved; names the reference, never the value."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"secret {reference}: {reason}")


class TransportError(ArcfleetError):
    """Talking to a host failed. ``host`` names it, ``reason`` says how."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


class HostUnreachable(TransportError):
    """No session could be opened: refused, unroutable, unresolvable or timed out."""


class HostAuthFailed(TransportError):
    """The host answered but the session was refused (credentials or host key)."""


class ConnectionDropped(TransportError):
    """The session ended while a command was running."""


class CommandTimeout(TransportError):
    """A command passed its deadline; it was signalled on the host and the channel closed."""

    def __init__(
        self, host: str, reason: str, partial_stdout: str = "", partial_stderr: str = ""
    ) -> None:
        super().__init__(host, reason)
        self.partial_stdout = partial_stdout
        self.partial_stderr = partial_stderr


class StoreError(ArcfleetError):
    """The run store cannot be used."""

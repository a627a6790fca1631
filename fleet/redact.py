"""Redaction: the one place secrets are removed from text before it leaves the process.

Every secret arcfleet reads is registered here the moment it is resolved. Two consumers use it: the
structlog processor :func:`redact_processor` (logs) and :func:`redact` (everything else that is
written: terminal, transcripts, reports, the run store, exception texts). The terminal is also
covered as a whole: :func:`redacted_output` puts :class:`RedactingStream` in front of stdout and
stderr for the CLI, so nothing printed (rich, click, a traceback) can skip the filter.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TextIO, cast

MASK = "***"
# Shorter values would mask ordinary words; no real secret is this short.
_MIN_LEN = 4

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    if value and len(value) >= _MIN_LEN:
        with _lock:
            _secrets.add(value)


def forget_secrets() -> None:
    """For tests: start from an empty registry."""
    with _lock:
        _secrets.clear()


def redact(text: str) -> str:
    if not _secrets or not text:
        return text
    # Longest first so a secret that contains another is masked whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


def redact_processor(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask every registered secret in every field."""
    for key, value in list(event_dict.items()):
        event_dict[key] = redact_value(value)
    return event_dict


class RedactingStream:
    """A text stream that redacts every write before handing it to the stream it wraps.

    Each ``write`` is redacted on its own: a secret split across two writes would pass, which the
    writers arcfleet uses (rich renders a whole print in one write, click.echo one string)
    do not do.
    """

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(redact(text))
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:
        return self._inner.encoding

    @property
    def errors(self) -> str | None:
        return self._inner.errors

    def __getattr__(self, name: str) -> Any:
        # Everything else (closed, mode, name, ...) as the real stream has it. ``buffer`` is
        # deliberately absent: bytes written there would skip redaction.
        if name == "buffer":
            raise AttributeError(name)
        return getattr(self._inner, name)


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """For the duration: stdout and stderr go through :class:`RedactingStream`."""
    with wrapped_output(RedactingStream):
        yield


@contextlib.contextmanager
def wrapped_output(wrap: Callable[[TextIO], Any]) -> Iterator[None]:
    """For the duration: stdout and stderr are ``wrap(stream)``, flushed and restored after."""
    saved = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, wrap(sys.stdout))
    sys.stderr = cast(TextIO, wrap(sys.stderr))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = saved

"""Structured logging: one JSON log per run, every event passed through the redaction processor."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TextIO, cast

import structlog

from fleet.redact import redact_processor
from fleet.turn_end import AtTurnEnd

_handle: TextIO | None = None


class TurnFlushedFile:
    """A text file whose ``flush`` (structlog's logger calls it after every line) is done once
    per turn of the running event loop, not per line: a line flushed at once is a write call,
    and with WinRM's threads busy every such call waits for the GIL on its way back. Without a
    running loop it flushes at once; ``close`` flushes."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self._turn_end = AtTurnEnd(self._flush_now)

    def write(self, text: str) -> int:
        return self._inner.write(text)

    def flush(self) -> None:
        self._turn_end.request()

    def _flush_now(self) -> None:
        if not self._inner.closed:
            with contextlib.suppress(OSError):  # a full disk costs log lines, not the run
                self._inner.flush()

    def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return self._inner.closed


def configure_run_log(path: Path | None) -> None:
    """JSON lines to ``path`` (mode 0600); with no path, warnings and errors only, to nowhere
    visible (the terminal belongs to the live display)."""
    global _handle
    if _handle is not None:
        _handle.close()
        _handle = None
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # After format_exc_info: a rendered traceback is text that must be redacted too.
        structlog.processors.format_exc_info,
        redact_processor,
        structlog.processors.JSONRenderer(),
    ]
    if path is None:
        structlog.configure(
            processors=processors,
            wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
        )
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handle = TurnFlushedFile(os.fdopen(fd, "a", encoding="utf-8"))
    _handle = cast(TextIO, handle)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=_handle),
        cache_logger_on_first_use=False,
    )


def close_run_log() -> None:
    configure_run_log(None)

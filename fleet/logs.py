"""Structured logging: one JSON log per run, every event passed through the redaction processor."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TextIO

import structlog

from fleet.redact import redact_processor

_handle: TextIO | None = None


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
    _handle = os.fdopen(fd, "a", encoding="utf-8")
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=_handle),
        cache_logger_on_first_use=False,
    )


def close_run_log() -> None:
    configure_run_log(None)

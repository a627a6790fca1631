"""Redaction: the one place secrets are removed from text before it leaves the process.

Every secret arcfleet reads is registered here the moment it is resolved. Two consumers use it: the
structlog processor :func:`redact_processor` (logs) and :func:`redact` (everything else that is
written: terminal, transcripts, reports, the run store, exception texts).
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Any

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

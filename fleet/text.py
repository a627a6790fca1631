"""Host-derived text made safe to show: no escape sequences, no control characters.

Text arcfleet did not write (SSH disconnect reasons, WS-Man faults, stdout/stderr, agent logs)
reaches terminals, rich, XML and HTML. A hostile or broken host can put terminal escape sequences
in it (set the window title, forge a hyperlink, clear the screen) or bidi overrides that reorder
what the operator reads. :func:`clean` removes escape sequences and shows every other control
character as a visible ``\\xNN`` escape, so the evidence stays readable and inert. Markup is the
printer's business: rich gets this text as :class:`rich.text.Text`, never as a markup string.

:class:`SanitizingSink` applies :func:`clean` where outcomes and attempts are recorded, so the run
store, the transcripts, the display and every report start from clean text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final, TextIO

from fleet.redact import wrapped_output

if TYPE_CHECKING:  # the CLI imports this module for --help: nothing heavy at import time
    from fleet.engine.outcome import Attempt, HostOutcome, OutcomeSink

# ECMA-48: CSI (ESC [ or 8-bit 0x9b) ... final byte; OSC / DCS / SOS / PM / APC strings up to
# BEL or ST (or the end of the text: an unterminated string still must not reach a terminal);
# any other two-byte ESC sequence.
_ESCAPES: Final = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
# C0 (but tab and newline), DEL, C1, and the Unicode bidi controls (Trojan Source).
_CONTROLS: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROLS_BUT_CR: Final = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)
_LINE_BREAKS: Final = re.compile(r"\r\n|[\r\n\t\v\f\x85\u2028\u2029]")
# Characters XML 1.0 does not allow anywhere in a document (surrogates included: they come
# from undecodable bytes).
_XML_FORBIDDEN: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str, *, single_line: bool = False, keep_cr: bool = False) -> str:
    """``text`` without escape sequences; other control characters shown as ``\\xNN``.

    ``single_line`` also turns line breaks and tabs into spaces (for a cause, a table cell, one
    line per host); otherwise newlines and tabs stay, and CR/CRLF become newlines (a lone CR
    on a terminal would overwrite the line) unless ``keep_cr`` (files: CSV quotes it).
    """
    if not text or text.isprintable():
        # Nothing to remove or show: every character the patterns below match (escapes,
        # controls, bidi, line breaks, tab) is one str.isprintable() refuses. Most text is so.
        return text
    if not single_line and text.replace("\n", "").replace("\t", "").isprintable():
        return text  # printable lines (no CR either): newlines and tabs stay as they are
    return _clean_slow(text, single_line=single_line, keep_cr=keep_cr)


def _clean_slow(text: str, *, single_line: bool, keep_cr: bool) -> str:
    """:func:`clean` by its patterns alone (its shortcuts must give the same text)."""
    text = _ESCAPES.sub("", text)
    if single_line:
        text = _LINE_BREAKS.sub(" ", text)
    elif not keep_cr:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return (_CONTROLS_BUT_CR if keep_cr else _CONTROLS).sub(_visible, text)


def xml_safe(text: str) -> str:
    """``text`` with the characters XML 1.0 forbids shown as escapes (a parser rejects them)."""
    return _XML_FORBIDDEN.sub(_visible, clean(text))


def clean_outcome(
    outcome: HostOutcome, cleaned: dict[int, tuple[Attempt, Attempt]] | None = None
) -> HostOutcome:
    """The outcome with every host-derived text of its diagnosis cleaned (see :func:`clean`).

    Host name, address, transport and OS come from the inventory, which refuses control
    characters in them; they are keys in the store and stay exactly as given. ``cleaned``
    maps ``id(step)`` to (step, its clean copy) for the steps cleaned already.
    """
    d = outcome.diagnosis
    diagnosis = dataclasses.replace(
        d,
        name=clean(d.name, single_line=True),
        cause=clean(d.cause, single_line=True),
        fix=clean(d.fix, single_line=True),
        doc_url=clean(d.doc_url, single_line=True),
        evidence_line=clean(d.evidence_line, single_line=True),
        correlation_ids=tuple(clean(c, single_line=True) for c in d.correlation_ids),
        resource_id=None if d.resource_id is None else clean(d.resource_id, single_line=True),
        extra={k: clean(v, single_line=True) for k, v in d.extra.items()},
    )
    return dataclasses.replace(
        outcome,
        diagnosis=diagnosis,
        steps=tuple(_clean_once(step, cleaned or {}) for step in outcome.steps),
    )


def _clean_once(step: Attempt, cleaned: dict[int, tuple[Attempt, Attempt]]) -> Attempt:
    known = cleaned.get(id(step))
    return known[1] if known is not None and known[0] is step else clean_attempt(step)


def clean_attempt(attempt: Attempt) -> Attempt:
    d = attempt.diagnosis
    return dataclasses.replace(
        attempt,
        stdout=clean(attempt.stdout),
        stderr=clean(attempt.stderr),
        diagnosis=None
        if d is None
        else dataclasses.replace(
            d,
            cause=clean(d.cause, single_line=True),
            evidence_line=clean(d.evidence_line, single_line=True),
        ),
    )


class SanitizingSink:
    """An :class:`OutcomeSink` that cleans attempts and outcomes before handing them on."""

    def __init__(self, inner: OutcomeSink) -> None:
        self.inner = inner
        # Per host, the attempts cleaned so far: the outcome carries the same steps again.
        self._cleaned: dict[str, dict[int, tuple[Attempt, Attempt]]] = {}

    def host_started(self, host: str) -> None:
        self.inner.host_started(host)

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        clean_copy = clean_attempt(attempt)
        self._cleaned.setdefault(host, {})[id(attempt)] = (attempt, clean_copy)
        self.inner.attempt_recorded(host, clean_copy)

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        self.inner.outcome_recorded(clean_outcome(outcome, self._cleaned.pop(outcome.host, None)))


class PipeSafeStream:
    """A terminal stream that outlives its reader: after a broken pipe (``arcfleet ... | head``)
    every further write is dropped instead of raising, so the run finishes every host; the run
    store, the run log and the transcripts are the record. The file descriptor is pointed at
    ``/dev/null`` so the interpreter's final flush cannot fail either."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self.reader_gone = False

    def _lost_reader(self) -> None:
        self.reader_gone = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._inner.fileno())
            finally:
                os.close(devnull)

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                self._inner.write(text)
            except BrokenPipeError:
                self._lost_reader()
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.reader_gone:
            with contextlib.suppress(OSError, ValueError):
                self._inner.flush()  # the buffered rest goes to /dev/null
            return
        try:
            self._inner.flush()
        except BrokenPipeError:
            self._lost_reader()

    def isatty(self) -> bool:
        return not self.reader_gone and self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:
        return self._inner.encoding

    @property
    def errors(self) -> str | None:
        return self._inner.errors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def pipe_safe_output() -> Iterator[None]:
    """For the duration: stdout and stderr survive their reader going away."""
    with wrapped_output(PipeSafeStream):
        yield

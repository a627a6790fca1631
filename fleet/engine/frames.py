"""The framed report a host script writes on stdout, and its parser.

One remote script per host runs every step of the common path in one session (see
:mod:`fleet.azcm.script_linux` and :mod:`fleet.azcm.script_windows`) and reports each step as a
record. Version 1 of the format, all ASCII headers, ``B`` a random boundary chosen per run::

    B arcfleet-report 1\\n
    B step NAME EXIT MS OUT_TOTAL OUT_SENT ERR_TOTAL ERR_SENT\\n  <OUT_SENT bytes><ERR_SENT bytes>
    ...
    B end\\n

Why it cannot be forged from the host's side: the step outputs travel as counted bytes right after
their header, so nothing a program prints can start a record of its own, and a record must begin
exactly where the previous one ended; the boundary is random per run (and must match), so not even
text before the first record can pose as a report. Why a cut stream is never a success: without
the ``end`` record the report is :attr:`FramedReport.complete` False, and the engine then ends the
host ``unknown`` (or ``timeout``) with what was received.

``OUT_SENT <= OUT_TOTAL``: the script sends at most a cap of each stream and says how much there
was, so a host printing megabytes costs the cap, and the cut is recorded.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

FORMAT_VERSION = 1
# Larger than any cap a script is given: a header claiming more is not ours.
MAX_SENT_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_BOUNDARY = re.compile(r"arcfleet-[0-9a-f]{32}")


def new_boundary() -> str:
    """A fresh per-run boundary (128 random bits)."""
    return f"arcfleet-{secrets.token_hex(16)}"


@dataclass(frozen=True)
class StepRecord:
    """One step the host script ran."""

    name: str
    exit_status: int
    duration_s: float
    stdout: str
    stderr: str
    dropped_bytes: int = 0  # output the script did not send (over its cap)


@dataclass(frozen=True)
class PartialStep:
    """The step whose record was being received when the stream ended."""

    name: str  # "" when even its header was cut
    stdout: str = ""
    stderr: str = ""


@dataclass
class FramedReport:
    steps: list[StepRecord] = field(default_factory=list)
    complete: bool = False  # the ``end`` record arrived, right after the last step
    partial: PartialStep | None = None  # set when the stream was cut inside a record
    problem: str = ""  # why parsing stopped early (cut, malformed), "" when complete
    preamble: str = ""  # anything the host printed before the report (not a step result)

    def step(self, name: str) -> StepRecord | None:
        """The last record of the step called ``name``."""
        for record in reversed(self.steps):
            if record.name == name:
                return record
        return None

    def names(self) -> list[str]:
        return [record.name for record in self.steps]


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def parse(data: bytes, boundary: str) -> FramedReport:
    """Parse a whole framed report; never raises (but for a boundary that is not ours)."""
    parser = FrameParser(boundary)
    parser.feed(data)
    return parser.finish()


class FrameParser:
    """Reads a framed report as it arrives: :meth:`feed` returns the steps completed by each
    chunk (so the engine records each step the moment it is known), :meth:`finish` the report.
    Holds at most one unfinished record in memory."""

    def __init__(self, boundary: str) -> None:
        if not _BOUNDARY.fullmatch(boundary):
            raise ValueError("not an arcfleet boundary")
        self._marker = boundary.encode("ascii") + b" "
        self._opening = self._marker + b"arcfleet-report %d\n" % FORMAT_VERSION
        self._buf = bytearray()
        self._started = False
        self._stopped = False  # the end record arrived, or the stream broke the format
        self._preamble = bytearray()
        self.report = FramedReport()

    def feed(self, data: bytes) -> list[StepRecord]:
        self._buf += data
        if self._stopped:
            self._check_trailing()
            return []
        if not self._started and not self._find_opening():
            return []
        new: list[StepRecord] = []
        while not self._stopped:
            record = self._next_record()
            if record is None:
                break
            self.report.steps.append(record)
            new.append(record)
        return new

    def finish(self) -> FramedReport:
        report = self.report
        report.preamble = _text(bytes(self._preamble[:4096]))
        if not self._started:
            report.problem = "no report from the host script"
        elif not self._stopped:
            self._describe_cut()
        return report

    def _find_opening(self) -> bool:
        at = self._buf.find(self._opening)
        if at < 0:
            # Keep what could be the start of the opening; the rest is preamble.
            keep = len(self._opening) - 1
            if len(self._buf) > keep:
                if len(self._preamble) < 4096:
                    self._preamble += self._buf[: len(self._buf) - keep]
                del self._buf[: len(self._buf) - keep]
            return False
        if len(self._preamble) < 4096:
            self._preamble += self._buf[:at]
        del self._buf[: at + len(self._opening)]
        self._started = True
        return True

    def _next_record(self) -> StepRecord | None:
        buf, marker = self._buf, self._marker
        if not buf.startswith(marker):
            if len(buf) < len(marker) and marker.startswith(bytes(buf)):
                return None  # more to come
            self._stop("the report has text where a step record should begin")
            return None
        newline = buf.find(b"\n")
        if newline < 0:
            if len(buf) > 512:
                self._stop("a step header is too long")
            return None
        words = bytes(buf[len(marker) : newline]).decode("ascii", errors="replace").split(" ")
        if words == ["end"]:
            del buf[: newline + 1]
            self._stopped = True
            self.report.complete = True
            self._check_trailing()
            return None
        header = _header(words)
        if header is None:
            self._stop(f"malformed step header: {' '.join(words)[:80]!r}")
            return None
        name, exit_status, millis, out_total, out_sent, err_total, err_sent = header
        body = newline + 1
        if len(buf) < body + out_sent + err_sent:
            return None
        out_end = body + out_sent
        record = StepRecord(
            name=name,
            exit_status=exit_status,
            duration_s=millis / 1000,
            stdout=_text(bytes(buf[body:out_end])),
            stderr=_text(bytes(buf[out_end : out_end + err_sent])),
            dropped_bytes=(out_total - out_sent) + (err_total - err_sent),
        )
        del buf[: out_end + err_sent]
        return record

    def _stop(self, problem: str) -> None:
        self._stopped = True
        self.report.problem = problem

    def _check_trailing(self) -> None:
        if self.report.complete and bytes(self._buf).strip():
            # Something after the end record is not ours: the report no longer counts as
            # complete (the steps before it stand as evidence).
            self.report.complete = False
            self.report.problem = "text after the end of the report"

    def _describe_cut(self) -> None:
        buf, report = self._buf, self.report
        if not buf:
            report.problem = "the report was cut between two steps"
            return
        newline = buf.find(b"\n")
        words = (
            bytes(buf[len(self._marker) : newline]).decode("ascii", "replace").split(" ")
            if newline >= 0
            else []
        )
        header = _header(words) if words else None
        if header is None:
            report.problem = "the report was cut inside a step header"
            report.partial = PartialStep("")
            return
        name, _exit, _ms, _ot, out_sent, _et, _es = header
        body = newline + 1
        report.problem = f"the report was cut inside the {name} step"
        report.partial = PartialStep(
            name,
            _text(bytes(buf[body : body + out_sent])),
            _text(bytes(buf[body + out_sent :])),
        )


def _header(words: list[str]) -> tuple[str, int, int, int, int, int, int] | None:
    if len(words) != 8 or words[0] != "step" or not _NAME.fullmatch(words[1]):
        return None
    numbers: list[int] = []
    for word in words[2:]:
        if not re.fullmatch(r"-?[0-9]{1,12}", word):
            return None
        numbers.append(int(word))
    exit_status, millis, out_total, out_sent, err_total, err_sent = numbers
    if min(millis, out_total, out_sent, err_total, err_sent) < 0:
        return None
    if out_sent > out_total or err_sent > err_total or out_sent + err_sent > MAX_SENT_BYTES:
        return None
    return words[1], exit_status, millis, out_total, out_sent, err_total, err_sent

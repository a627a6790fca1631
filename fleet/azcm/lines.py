"""What the classifier reads: an output or a log turned into cleaned, levelled lines of one run.

Three shapes reach it: console output (``INFO``/``ERROR``/``FATAL`` prefixes, a progress bar
redrawn with carriage returns, ANSI colour), ``azcmagent.log`` logrus lines
(``time="..." level=fatal msg="..."``) and Windows PowerShell output, where a native command's
stderr comes back wrapped as ``azcmagent.exe : <line>`` followed by ``At line:``,
``+ CategoryInfo`` and ``+ FullyQualifiedErrorId : NativeCommandError`` lines. Each line gets a
level: ``fatal``/``error`` lines (and lines without a level: stderr text, PowerShell errors) may
decide a verdict; ``warn``/``info``/``debug`` lines are evidence only.

The log holds earlier runs: :func:`this_runs_log` keeps only lines written at or after the run's
start (its timestamp when the engine knows it, else the last "Connecting machine to Azure"
marker).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

from fleet.azcm.patterns import MAX_LINE, may_match

MAX_STREAM = 1024 * 1024
MAX_LINES = 20_000
#: lines kept before the log's last fatal line (the same run's context), and after it
LOG_BEFORE = 40
LOG_AFTER = 5
#: lines kept from the end of a log that has no fatal line
LOG_TAIL_LINES = 60
LOG_WINDOW_CHARS = 256 * 1024
#: log lines this much older than the run's start still count (clocks and flushes differ)
LOG_SLACK = timedelta(seconds=120)

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]{0,32}[ -/]{0,4}[@-~]|\x1b[@-Z\\-_]|\x9b[0-9;?]{0,32}[@-~]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPLIT_RE = re.compile(r"\r\n|\r|\n")
PROGRESS_RE = re.compile(r"^\s{0,8}\d{1,3}% \[")
_SEVERE_RE = re.compile(
    r"level=\"?(?:fatal|error|panic)|^(?:FATAL|ERROR|PANIC)\b|\"level\"\s{0,3}:\s{0,3}\"(?:fatal|"
    r"error)|Exit Code:",
    re.IGNORECASE,
)
# A PowerShell wrapper prefix ("azcmagent.exe : ") before the agent's own text.
_PS_PREFIX = re.compile(r"^[\w.\\:/ -]{0,200}?\.exe : ")
_PS_NOISE = re.compile(
    r"^(?:At line:\d|At [A-Z]:\\|\+ (?:CategoryInfo|FullyQualifiedErrorId|~)|\+ {0,8}~|"
    r"\+ & |In Zeile:\d|Bei Zeile:\d)"
)
_LEVEL_RES = (
    re.compile(r"\blevel=\"?(\w{3,7})"),
    re.compile(r"^(FATAL|PANIC|ERROR|ERRO|FATA|WARN|WARNING|INFO|DEBUG|DEBU|TRACE)\b"),
    re.compile(r"\"level\"\s{0,3}:\s{0,3}\"(\w{3,7})\""),
)
_LEVELS = {
    "fatal": "fatal", "fata": "fatal", "panic": "fatal", "error": "error", "erro": "error",
    "warn": "warn", "warning": "warn", "info": "info", "debug": "debug", "debu": "debug",
    "trace": "debug",
}
EVIDENCE_LEVELS = frozenset({"warn", "info", "debug"})
_TIME_RE = re.compile(r"time=\"?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d))")
RUN_START_MARKERS = ("Connecting machine to Azure", "Onboarding Machine")
_LOG_FATAL_MARKERS = ("level=fatal", "FATAL[", '"level":"fatal"', "level=panic")
_LOG_ERROR_MARKERS = ("level=error", "ERROR[", '"level":"error"')


@dataclass(frozen=True)
class Line:
    text: str  # ANSI-stripped, control characters removed, capped
    source: str  # stdout | stderr | installer | json | log
    index: int
    json: bool = False

    @cached_property
    def keyword(self) -> bool:
        """Whether any pattern could match (see :func:`~fleet.azcm.patterns.may_match`)."""
        return may_match(self.text.lower())

    @cached_property
    def severe(self) -> bool:
        """An error/fatal line, an ``Exit Code:`` line, or a JSON result."""
        return self.json or bool(_SEVERE_RE.search(self.body))

    @cached_property
    def body(self) -> str:
        """The text without a PowerShell ``program.exe : `` wrapper prefix."""
        return _PS_PREFIX.sub("", self.text, count=1) if ".exe : " in self.text else self.text

    @cached_property
    def noise(self) -> bool:
        """PowerShell's own lines around a native command's error (they repeat it, cut)."""
        return bool(_PS_NOISE.match(self.text))

    @cached_property
    def level(self) -> str | None:
        """fatal / error / warn / info / debug, or None when the line carries no level."""
        if self.json:
            return None
        for regex in _LEVEL_RES:
            match = regex.search(self.body)
            if match:
                return _LEVELS.get(match.group(1).lower())
        return None

    @property
    def verdict(self) -> bool:
        """May this line decide the verdict? Not warn/info/debug lines, not PowerShell noise."""
        return self.level not in EVIDENCE_LEVELS and not self.noise

    @property
    def exit_code_line(self) -> bool:
        return "Exit Code:" in self.text and "AZCM0000" not in self.text

    @property
    def fatal(self) -> bool:
        return self.level == "fatal"


def clean(raw: str) -> str:
    if len(raw) > MAX_LINE * 2:
        raw = raw[: MAX_LINE * 2]
    if not raw.isprintable():  # fast path: most lines have no escapes or control characters
        raw = _CONTROL_RE.sub("", _ANSI_RE.sub("", raw))
    return raw.strip()[:MAX_LINE]


def split(text: str, source: str, start: int = 0) -> Iterator[Line]:
    """Cleaned, non-empty lines; progress-bar redraws are dropped, and only the last
    :data:`MAX_LINES` lines are kept (the end of an output is where failures are)."""
    raws = _SPLIT_RE.split(text)
    first = max(0, len(raws) - MAX_LINES)
    for offset in range(first, len(raws)):
        raw = raws[offset]
        if "%" in raw and PROGRESS_RE.match(raw):
            continue
        cleaned = clean(raw)
        if cleaned and not PROGRESS_RE.match(cleaned):
            yield Line(cleaned, source, start + offset)


def tail(text: str, limit: int) -> str:
    return text[-limit:] if len(text) > limit else text


def json_documents(text: str) -> list[object]:
    """Any JSON object printed on stdout: the whole text, or single lines that are objects."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_STREAM:
        return []
    if stripped[0] in "{[":
        try:
            return [json.loads(stripped)]
        except ValueError:
            pass
    found: list[object] = []
    for raw in stripped.splitlines()[-200:]:
        raw = _ANSI_RE.sub("", raw).strip()
        if raw.startswith("{") and raw.endswith("}"):
            try:
                found.append(json.loads(raw))
            except ValueError:
                continue
    return found


def _flatten(value: object, prefix: str = "", depth: int = 0) -> Iterator[str]:
    """JSON values as ``key: value`` lines, so the same patterns read JSON and text alike."""
    if depth > 12:
        return
    if isinstance(value, dict):
        for key, item in list(value.items())[:200]:
            yield from _flatten(item, f"{key}", depth + 1)
    elif isinstance(value, list):
        for item in value[:200]:
            yield from _flatten(item, prefix, depth + 1)
    elif value is not None:
        yield f"{prefix}: {value}" if prefix else str(value)


def json_lines(objects: Iterable[object], source: str) -> Iterator[Line]:
    for n, obj in enumerate(objects):
        for m, text in enumerate(_flatten(obj)):
            cleaned = clean(text)
            if cleaned:
                yield Line(cleaned, source, n * 10_000 + m, json=True)


def _parse_time(text: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def this_runs_log(log: str, run_started: datetime | None, clock_skew_s: float | None) -> str:
    """The part of ``azcmagent.log`` this run wrote.

    With the run's start known, lines stamped before it (allowing for the host's measured clock
    skew and :data:`LOG_SLACK`) are dropped; a log whose every line is older says nothing about
    this run. Then, known start or not, the log is cut at its last run-start marker, so an
    earlier attempt within the slack does not count either.
    """
    if not log:
        return ""
    if run_started is not None:
        if run_started.tzinfo is None:
            run_started = run_started.replace(tzinfo=UTC)
        cutoff = run_started + timedelta(seconds=clock_skew_s or 0.0) - LOG_SLACK
        lines = log.splitlines(keepends=True)
        keep_from = 0
        for n in range(len(lines) - 1, -1, -1):
            match = _TIME_RE.search(lines[n][:200])
            stamp = _parse_time(match.group(1)) if match else None
            if stamp is not None and stamp < cutoff:
                keep_from = n + 1
                break
        log = "".join(lines[keep_from:])
    marker = max(log.rfind(m) for m in RUN_START_MARKERS)
    if marker >= 0:
        log = log[log.rfind("\n", 0, marker) + 1 :]
    return log


def log_window(log: str) -> str:
    """The part of the log that belongs to the last failed run: around its last fatal line."""
    if not log:
        return ""
    pos = max(log.rfind(marker) for marker in _LOG_FATAL_MARKERS)
    if pos < 0:
        pos = max(log.rfind(marker) for marker in _LOG_ERROR_MARKERS)
    if pos < 0:
        start = len(log)
        for _ in range(LOG_TAIL_LINES):
            start = log.rfind("\n", 0, start - 1 if start > 0 else 0)
            if start <= 0:
                start = 0
                break
        window = log[start:]
    else:
        start = pos
        for _ in range(LOG_BEFORE + 1):
            start = log.rfind("\n", 0, start)
            if start <= 0:
                start = 0
                break
        end = pos
        for _ in range(LOG_AFTER + 1):
            nxt = log.find("\n", end + 1)
            if nxt < 0:
                end = len(log)
                break
            end = nxt
        window = log[start:end]
    return tail(window, LOG_WINDOW_CHARS)


def last_run(lines: list[Line]) -> list[Line]:
    """A fatal line ends an azcmagent run, so the lines after the one-but-last fatal line are the
    last run's (a pasted log, or a log tail, holds several runs)."""
    fatal = [n for n, ln in enumerate(lines) if ln.fatal]
    return lines[fatal[-2] + 1 :] if len(fatal) >= 2 else lines


def meaningful(lines: Iterable[Line]) -> list[Line]:
    return [ln for ln in lines if not PROGRESS_RE.match(ln.text)]

"""What the operator sees while a run goes: a live panel on a terminal, one line per host
otherwise (CI logs, ``tee``), JSON lines with ``--json``.

The live panel is drawn by rich's own refresh thread at most :data:`REFRESH_PER_SECOND` times a
second from counters the sink callbacks bump; a host finishing costs a few dict updates, not a
redraw. Every host-derived string is printed as plain :class:`~rich.text.Text`.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections import Counter, deque
from typing import Any, Final

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleet.engine.outcome import Attempt, HostOutcome
from fleet.redact import redact
from fleet.text import clean

REFRESH_PER_SECOND: Final = 4
LAST_FAILURES: Final = 5
# Non-TTY lines: the cause is shortened at a word boundary to keep one line per host readable.
LINE_TEXT_WIDTH: Final = 160
_OK_STATUSES: Final = ("success", "ready")


def outcome_json(outcome: HostOutcome) -> dict[str, Any]:
    d = outcome.diagnosis
    return {
        "host": outcome.host,
        "address": outcome.address,
        "transport": outcome.transport,
        "os": outcome.os,
        "status": outcome.status.value,
        "category": d.category.value,
        "azcm_code": d.code,
        "exit_code": outcome.exit_code,
        "cause": redact(d.cause),
        "fix": redact(d.fix),
        "message": redact(d.evidence_line),
        "attempts": outcome.attempts,
        "remediations": list(outcome.remediations),
        "resource_id": d.resource_id,
        "duration_s": round(outcome.duration_s, 3),
        "agent_version_before": outcome.agent_version_before,
        "agent_version_after": outcome.agent_version_after,
        "install": outcome.install,
    }


def _fleet_state(fleet: Any) -> tuple[str, str, str]:
    """(operations, breaker, pacing) in words, read from a FleetRun without depending on its
    private shape (the display must never be what breaks a run)."""
    slots = getattr(fleet, "agent_slots", None)
    sessions = len(getattr(fleet, "in_flight", {}) or {})
    held, limit = getattr(slots, "held", None), getattr(slots, "limit", None)
    if held is not None and limit is not None:
        operations = f"{held}/{limit} agent operations running (--forks), {sessions} hosts open"
    else:
        operations = f"{sessions} hosts open"
    breaker = getattr(fleet, "breaker", None)
    trip = getattr(breaker, "trip", None)
    breaker_text = f"breaker OPEN: {getattr(trip, 'reason', trip)}" if trip else "breaker closed"
    pacer = getattr(fleet, "pacer", None)
    describe = getattr(pacer, "describe", None)
    pacing = describe() if callable(describe) else ""
    return operations, breaker_text, pacing


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or unknown
        return "-"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def host_line(outcome: HostOutcome) -> str:
    """One line for one host: name, status, category, code, then the cause (or the evidence),
    shortened at a word boundary, never in the middle of a word."""
    d = outcome.diagnosis
    detail = d.cause if outcome.status.value not in _OK_STATUSES else (d.resource_id or d.cause)
    text = clean(redact(detail or d.evidence_line), single_line=True)
    short = textwrap.shorten(text, width=LINE_TEXT_WIDTH, placeholder=" ...") if text else ""
    fields = [outcome.host, outcome.status.value, d.category.value, d.code or "-", short]
    return clean(redact("  ".join(field for field in fields if field)), single_line=True)


class JsonLines:
    """``--json``: one JSON object per host outcome on stdout, nothing else there."""

    def host_started(self, host: str) -> None:
        pass

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        pass

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        sys.stdout.write(json.dumps(outcome_json(outcome), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def attach(self, fleet: object) -> None:
        pass

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LiveDisplay:
    """A live panel on a terminal; without one, a plain line per host as it finishes."""

    def __init__(self, total: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.total = total
        self.by_status: Counter[str] = Counter()
        self.by_category: Counter[str] = Counter()
        self.started_hosts = 0
        self.failures: deque[str] = deque(maxlen=LAST_FAILURES)  # on the live panel only
        self.started = time.monotonic()
        self.fleet: object | None = None
        self._live: Any = None

    def attach(self, fleet: object) -> None:
        """The running fleet, for the breaker, pacing and operation counts."""
        self.fleet = fleet

    # -- the panel -----------------------------------------------------------------------

    def render(self) -> RenderableType:
        done = sum(self.by_status.values())
        elapsed = max(time.monotonic() - self.started, 1e-6)
        per_minute = done / elapsed * 60
        eta = (self.total - done) / (done / elapsed) if done else float("nan")
        head = Text(
            f"{done}/{self.total} hosts done  {per_minute:.1f} hosts/min  "
            f"elapsed {_duration(elapsed)}  ETA {_duration(eta)}",
            style="bold",
        )
        operations, breaker, pacing = _fleet_state(self.fleet)
        state = Text(f"{operations}  |  {pacing}  |  " if pacing else f"{operations}  |  ")
        state.append(breaker, style="bold red" if "OPEN" in breaker else "green")
        statuses = Text("status: ")
        for status, count in sorted(self.by_status.items()):
            style = "green" if status in _OK_STATUSES else "red"
            statuses.append(f"{status} {count}  ", style=style)
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        table.add_column("category")
        table.add_column("hosts", justify="right")
        for category, count in self.by_category.most_common():
            ok = category in ("connected", "already_connected", "disconnected", "ready")
            table.add_row(Text(category, style="green" if ok else "red"), str(count))
        parts: list[RenderableType] = [head, state, statuses, table]
        if self.failures:
            parts.append(Text("last failures:", style="bold"))
            parts.extend(Text(f"  {line}", no_wrap=True, overflow="ellipsis")
                         for line in self.failures)
        return Group(*parts)

    def __enter__(self) -> LiveDisplay:
        if self.console.is_terminal:
            from rich.live import Live  # only on a terminal: keeps `arcfleet --help` light

            self._live = Live(
                console=self.console,
                get_renderable=self.render,
                refresh_per_second=REFRESH_PER_SECOND,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(None, None, None)
            self._live = None

    # -- the sink ------------------------------------------------------------------------

    def host_started(self, host: str) -> None:
        self.started_hosts += 1

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        pass

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        self.by_status[outcome.status.value] += 1
        self.by_category[outcome.category.value] += 1
        failed = outcome.status.value not in _OK_STATUSES
        if self._live is None:
            # soft_wrap: one line per host whatever the width; the text is already short.
            self.console.print(Text(host_line(outcome)), soft_wrap=True, highlight=False)
        elif failed:
            self.failures.append(host_line(outcome))

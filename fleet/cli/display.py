"""What the operator sees while a run goes: a live panel on a terminal, JSON lines for CI."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fleet.engine.outcome import Attempt, HostOutcome
from fleet.redact import redact


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
    }


class JsonLines:
    """``--json``: one JSON object per host outcome on stdout, nothing else there."""

    def host_started(self, host: str) -> None:
        pass

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        pass

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        sys.stdout.write(json.dumps(outcome_json(outcome), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LiveDisplay:
    """Counts by category, hosts in flight, rate and ETA; a plain line per host without a TTY."""

    def __init__(self, total: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.total = total
        self.counts: Counter[str] = Counter()
        self.in_flight: set[str] = set()
        self.started = time.monotonic()
        self._live: Live | None = None

    def _render(self) -> Group:
        done = sum(self.counts.values())
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        table = Table(show_header=True, header_style="bold", box=None)
        table.add_column("category")
        table.add_column("hosts", justify="right")
        for category, count in self.counts.most_common():
            style = "green" if category in ("connected", "already_connected") else "red"
            table.add_row(Text(category, style=style), str(count))
        head = Text(
            f"{done}/{self.total} done, {len(self.in_flight)} in flight, "
            f"{rate:.1f} hosts/s, ETA {eta:.0f}s"
            if rate > 0
            else f"{done}/{self.total} done, {len(self.in_flight)} in flight"
        )
        return Group(head, table)

    def __enter__(self) -> LiveDisplay:
        if self.console.is_terminal:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)
            self._live = None

    def host_started(self, host: str) -> None:
        self.in_flight.add(host)
        if self._live is not None:
            self._live.update(self._render())

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        pass

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        self.in_flight.discard(outcome.host)
        self.counts[outcome.category.value] += 1
        if self._live is not None:
            self._live.update(self._render())
        else:
            d = outcome.diagnosis
            self.console.print(
                f"{outcome.host:<24} {outcome.status.value:<11} {d.category.value:<18} "
                f"{d.code or '':<9} {redact(d.evidence_line)[:80]}",
                markup=False,
                highlight=False,
            )

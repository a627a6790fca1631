"""What does the live panel cost a run? 1,000 hosts through the display sinks, three ways.

Feeds N host outcomes (started, then finished, as a run does; every tenth one failed) to:
no display at all, the live panel on a terminal (rich's refresh thread drawing at 4/s onto a
terminal-like buffer while the events arrive), and the plain one-line-per-host output. Prints
the CPU time per host event of each and the ratio of a whole lab host's own cost, so the claim
"no measurable throughput" is a number from one run, not an assertion.

    .venv/bin/python bench/display_cost.py [--hosts 1000] [--spread-s 3]
"""

from __future__ import annotations

import argparse
import io
import time
from datetime import UTC, datetime

from rich.console import Console

from fleet.azcm.diagnosis import Action, ActionKind, Category, Diagnosis
from fleet.cli.display import LiveDisplay
from fleet.engine.outcome import HostOutcome


def outcomes(hosts: int) -> list[HostOutcome]:
    now = datetime.now(UTC)
    made = []
    for i in range(hosts):
        failed = i % 10 == 0
        made.append(HostOutcome(
            host=f"h{i:05d}", address=f"127.0.{i // 250}.{i % 250 + 1}", transport="ssh",
            os="linux", started_at=now, finished_at=now,
            diagnosis=Diagnosis(
                Category.NETWORK if failed else Category.CONNECTED,
                Action(ActionKind.FAIL_HOST if failed else ActionKind.NONE),
                cause="The host could not reach login.microsoftonline.com (DNS)." if failed
                else "connected", code="AZCM0026" if failed else None)))
    return made


def feed(display: LiveDisplay | None, items: list[HostOutcome], spread_s: float) -> float:
    """CPU seconds spent in this thread feeding the events (plus the refresh thread's, which
    process_time counts for the whole process)."""
    pause = spread_s / len(items)
    began = time.process_time()
    if display is not None:
        display.__enter__()
    for outcome in items:
        if display is not None:
            display.host_started(outcome.host)
            display.outcome_recorded(outcome)
        time.sleep(pause)  # a run's events arrive over time; the refresh thread draws meanwhile
    if display is not None:
        display.__exit__(None, None, None)
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--spread-s", type=float, default=3.0)
    args = parser.parse_args()
    items = outcomes(args.hosts)
    base = feed(None, items, args.spread_s)
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120, height=40)
    live = feed(LiveDisplay(args.hosts, terminal), items, args.spread_s)
    plain_console = Console(file=io.StringIO(), force_terminal=False, width=120)
    plain = feed(LiveDisplay(args.hosts, plain_console), items, args.spread_s)
    per_host = 1e6 / args.hosts
    print(f"{args.hosts} hosts over {args.spread_s:.1f} s")
    print(f"  no display     {base * per_host:8.1f} us CPU per host")
    for label, spent in (("live panel", live), ("one line/host", plain)):
        extra = (spent - base) * per_host
        print(f"  {label:<14} {spent * per_host:8.1f} us CPU per host (+{extra:.1f})")


if __name__ == "__main__":
    main()

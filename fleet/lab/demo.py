"""``arcfleet lab demo``: the whole loop an operator goes through, against the built-in lab.

1. start a mixed lab fleet (mostly healthy hosts and a spread of the common failures);
2. ``arcfleet onboard`` it, exactly as an operator would (a child process, real SSH and WinRM);
3. check every host ended in the category its scenario predicts (the lab knows the truth);
4. "fix" the failing hosts in the lab, as an operator fixes causes, and ``arcfleet rerun``:
   only those hosts are contacted, and the failed set shrinks to empty.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioPlan
from fleet.store import RunStore


@dataclass(frozen=True)
class Mismatch:
    host: str
    scenario: str
    expected: str
    got: str


def _arcfleet(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "fleet", *args])


def _final_categories(state_dir: Path) -> tuple[str, dict[str, str]]:
    with RunStore.open(state_dir) as store:
        root = store.latest_run_id(root_only=True)
        assert root is not None
        return root, {host: row.category for host, row in store.final_outcomes(root).items()}


def run_demo(
    *,
    work_dir: Path,
    state_dir: Path,
    plan: ScenarioPlan,
    linux: int,
    windows: int,
    subnet: str,
    console: Console,
) -> int:
    with LabFleet.in_thread(
        work_dir, hosts=linux, windows=windows, plan=plan, subnet=subnet
    ) as lab:
        expected = lab.expected()
        console.print(
            f"[bold]lab[/]: {linux} Linux hosts (SSH) and {windows} Windows hosts "
            f"(WinRM) on {subnet}.x.y; inventory {lab.inventory_path}"
        )
        console.rule("1. arcfleet onboard")
        inventory = str(lab.inventory_path)
        _arcfleet("onboard", "-i", inventory, "--state-dir", str(state_dir), "--connect-rate", "0")
        root, categories = _final_categories(state_dir)
        mismatches = [
            Mismatch(host, spec["scenario"], spec["expected_category"], categories.get(host, "-"))
            for host, spec in expected.items()
            if categories.get(host) != spec["expected_category"]
        ]
        failed = [h for h, c in categories.items() if c not in ("connected", "already_connected")]
        console.rule("2. every host in the category its scenario predicts?")
        if mismatches:
            table = Table("host", "scenario", "expected", "got")
            for m in mismatches:
                table.add_row(m.host, m.scenario, m.expected, m.got)
            console.print(table)
        else:
            console.print(f"yes: all {len(expected)} hosts; {len(failed)} need a fix")
        console.rule(f"3. fix the causes on {len(failed)} hosts, then arcfleet rerun {root}")
        for host in failed:
            if host in lab.hosts:
                lab.set_scenario(host, Scenario())
        before = {h: len(lab.hosts[h].commands) for h in lab.hosts}
        _arcfleet("rerun", root, "--state-dir", str(state_dir), "--connect-rate", "0")
        touched = sorted(h for h in lab.hosts if len(lab.hosts[h].commands) != before[h])
        _, after = _final_categories(state_dir)
        still = sorted(h for h, c in after.items() if c not in ("connected", "already_connected"))
        console.rule("result")
        console.print(
            f"rerun contacted {len(touched)} hosts (the {len(failed)} that failed"
            f"{'' if set(touched) <= set(failed) else ' AND OTHERS'}); "
            f"{len(still)} still not connected"
        )
        ok = not mismatches and set(touched) <= set(failed) and not still
        console.print("[green]demo OK[/]" if ok else "[red]demo found a problem[/]")
        console.print(
            f"explore: arcfleet runs --state-dir {state_dir}; "
            f"arcfleet report --state-dir {state_dir} --csv failures.csv"
        )
        return 0 if ok else 1

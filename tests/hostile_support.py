"""Helpers for the fault, hostile-input, secret and bad-input suites: the real CLI in a
subprocess against a lab, with a playbook whose deadlines are short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fleet.lab.fleet import LabFleet

ROOT = Path(__file__).resolve().parents[1]
# This suite's loopback ranges: 127.70.0.0/16 (faults, secrets), 127.71.0.0/16 (input).
FAULT_SUBNET = "127.70"
INPUT_SUBNET = "127.71"

FAST_PLAYBOOK: dict[str, Any] = {
    "name": "hostile-test",
    "description": "short deadlines so a fault ends a host in seconds",
    "attempts": 2,
    "backoff": {"initial_s": 0.05, "max_s": 0.1, "multiplier": 2},
    "deadlines": {"connect_timeout_s": 2, "command_s": 5, "agent_connect_s": 2, "host_s": 30},
    "remediations": ["restart_agent_service"],
    "breaker": {"threshold": 0},
    "pacing": {"forks": 20, "connect_rate_per_s": 0, "connect_burst": 100},
}


def write_playbook(folder: Path, **overrides: Any) -> Path:
    body = {**FAST_PLAYBOOK, **overrides}
    path = folder / "playbook.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def arcfleet(*args: str | Path, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m fleet ARGS`` from the worktree root; stdout and stderr captured."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("ARCFLEET_STATE_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "fleet", *map(str, args)], cwd=ROOT, env=full_env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def onboard(lab: LabFleet, state_dir: Path, playbook: Path, *extra: str | Path,
            inventory: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return arcfleet("onboard", "-i", inventory or lab.inventory_path, "--playbook", playbook,
                    "--state-dir", state_dir, "--json", *extra, env=env)


def outcomes(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """host -> its --json outcome line; a host printed twice fails the calling test."""
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    folded = {row["host"]: row for row in rows}
    assert len(folded) == len(rows), f"a host's outcome was printed twice: {result.stdout}"
    return folded


def edit_inventory(lab: LabFleet, change: Callable[[dict[str, Any]], None],
                   path: Path | None = None) -> Path:
    """Load the lab's inventory, let ``change`` edit it, write it (to ``path`` or in place)."""
    body = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
    change(body)
    target = path or lab.inventory_path
    target.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return target


def lab_contacts(lab: LabFleet) -> dict[str, list[str]]:
    """Everything any lab host received: SSH/WinRM command lines, SFTP writes, WinRM shells."""

    def collect() -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for name, host in lab.hosts.items():
            items = [*host.commands, *host.scripts, *(f"sftp {w.path}" for w in host.sftp_writes)]
            if items:
                seen[name] = items
        if lab.winrm is not None:
            records = getattr(lab.winrm, "shell_records", {})
            if records:
                seen["<winrm shells>"] = sorted(records)
        return seen

    return lab.call(collect)


def all_command_lines(lab: LabFleet) -> list[str]:
    """Every command line the lab recorded (SSH commands; WinRM command lines and the decoded
    scripts)."""
    return lab.call(lambda: [c for h in lab.hosts.values() for c in [*h.commands, *h.scripts]])

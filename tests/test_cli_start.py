"""The CLI starts at once (issue 15): heavy libraries are imported by the commands that use them.

Functional checks, not timings (those are in bench/cli_start.py): which modules a fresh
interpreter has loaded after a command, and that the lazy command table tells the truth.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from fleet.cli import LAZY_COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("asyncssh", "winrm", "requests", "rich", "pydantic", "structlog", "yaml", "fleet.azcm")

PROBE = """
import json, sys
from fleet.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
loaded = sorted({m.split(".")[0] if not m.startswith("fleet.") else ".".join(m.split(".")[:2])
                 for m in sys.modules})
sys.stderr.write("MODULES " + json.dumps(loaded) + "\\n")
"""


def _modules_after(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )
    line = next(x for x in result.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    loaded = _modules_after(*args)
    assert "click" in loaded  # the probe did run the CLI
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_inventory_show_does_not_import_the_transports() -> None:
    inventory = ROOT / "inventories" / "example.yaml"
    loaded = _modules_after("inventory", "show", "--json", "-i", str(inventory))
    assert "pydantic" in loaded  # the inventory was read
    assert not loaded & {"asyncssh", "winrm", "requests", "fleet.transport"}


def test_the_lazy_command_table_matches_the_commands() -> None:
    for name, (module_name, short_help) in LAZY_COMMANDS.items():
        module = importlib.import_module(module_name)
        command = next(c for c in module.COMMANDS if c.name == name)
        assert command.get_short_help_str(1000) == short_help, name
    every = {c.name for m in {m for m, _ in LAZY_COMMANDS.values()}
             for c in importlib.import_module(m).COMMANDS}
    assert every == set(LAZY_COMMANDS)
    assert isinstance(cli.get_command(click.Context(cli), "onboard"), click.Command)

"""The lab's Windows command line: PowerShell 5.1 joins the arguments, the Go agent splits them by
the CommandLineToArgvW rules (fleet/lab/winargv.py). Checked against Microsoft's documented
examples, then end to end on a lab WinRM host: an argument ending in a backslash swallows the
options after it (what happened to ``--private-link-scope`` before every option moved into the
--config file), and arcfleet's own connect keeps every value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.azcm.agent_config import format_tags
from fleet.azcm.commands import connect_config
from fleet.azcm.commands_windows import WindowsAgentCommands, _invoke
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, Transport
from fleet.lab.scenario import ScenarioKind
from fleet.lab.winargv import command_line_to_argv, ps51_command_line, windows_argv
from fleet.transport.powershell import quote
from tests.winrm_support import SP_SECRET, winrm_lab

CMDS = WindowsAgentCommands()
PLS = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
       "Microsoft.HybridCompute/privateLinkScopes/pls")
# The last tag's value ends in a backslash, and the whole value has spaces.
TAGS = {"owner": "Zoë Ångström", "share": "\\\\fs01\\builds\\"}


@pytest.mark.parametrize(("line", "argv"), [
    # "Parsing C++ command-line arguments" (Microsoft Learn), first column of its table
    ('prog "abc" d e', ["abc", "d", "e"]),
    ('prog a\\\\b d"e f"g h', ["a\\\\b", "de fg", "h"]),
    ('prog a\\\\\\"b c d', ['a\\"b', "c", "d"]),
    ('prog a\\\\\\\\"b c" d e', ["a\\\\b c", "d", "e"]),
    # Go's "prior to 2008" rule for "" inside quotes: a literal quote, and quoting ends.
    ('prog a"b"" c d', ['ab"', "c", "d"]),
    ('"C:\\Program Files\\a.exe" x', ["x"]),
    ("prog   \tx\t y ", ["x", "y"]),
])
def test_command_line_to_argv_follows_the_documented_rules(line: str, argv: list[str]) -> None:
    assert command_line_to_argv(line)[1:] == argv


def test_powershell_quotes_only_what_has_spaces_and_escapes_nothing() -> None:
    line = ps51_command_line(r"C:\Program Files\A\azcmagent.exe",
                             ["connect", "--tags", "a b=x\\", "", "--private-link-scope", "P"])
    assert line == ('"C:\\Program Files\\A\\azcmagent.exe" connect --tags "a b=x\\" '
                    "--private-link-scope P")
    # ... so the trailing backslash escapes PowerShell's closing quote, and the rest is swallowed
    assert windows_argv("a.exe", ["--tags", "a b=x\\", "--private-link-scope", "P"]) == [
        "--tags", 'a b=x" --private-link-scope P']
    assert windows_argv("a.exe", ["--tags", "share=\\\\fs\\b\\", "-v"]) == [
        "--tags", "share=\\\\fs\\b\\", "-v"]  # no space: passed as is


def _host() -> ResolvedHost:
    return ResolvedHost(name="win-1", address="127.30.0.61", port=5985,
                        transport=Transport.WINRM, os=OsFamily.WINDOWS,
                        azure=AzureTarget(resource_name="win-1", tags=TAGS,
                                          private_link_scope=PLS))


async def test_the_lab_agent_reads_its_command_line_by_the_windows_rules(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS], base=61) as lab:
        transport = lab.transport(0)
        await transport.open()
        try:
            agent = (await transport.run(CMDS.locate_agent(), timeout_s=10)).stdout.strip()
            private_dir = (await transport.run(CMDS.make_private_dir(), timeout_s=10)).stdout
            config = CMDS.config_path(private_dir.strip())
            # The old way: options on the command line. The agent sees the tags run on.
            old = _invoke(agent, ["connect", "--config", quote(config), "--verbose",
                                  "--tags", quote(format_tags(TAGS)),
                                  "--private-link-scope", quote(PLS)])
            await transport.put_file(config, connect_config(_host(), SP_SECRET))
            await transport.run(old, timeout_s=20)
            # arcfleet's way: only the file on the command line.
            await transport.run(CMDS.connect(agent, config, _host()), timeout_s=20)
        finally:
            await transport.close()
        swallowed, kept = lab.host(0).connect_calls
    tags_seen = swallowed.option("tags")
    assert isinstance(tags_seen, str) and tags_seen.endswith("--private-link-scope " + PLS)
    assert "--private-link-scope" not in swallowed.argv  # gone as an option
    assert kept.option("private-link-scope") == PLS
    assert kept.option("tags") == json.loads(connect_config(_host(), None))["tags"]

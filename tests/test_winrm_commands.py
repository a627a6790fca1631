"""WindowsAgentCommands over WinrmTransport to the lab: quoting, the sequence, secrets."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fleet.azcm.agent_config import format_tags
from fleet.azcm.commands import connect_config
from fleet.azcm.commands_windows import WindowsAgentCommands
from fleet.inventory.model import AzureTarget, OsFamily, ResolvedHost, Transport
from fleet.lab.scenario import ScenarioKind
from fleet.lab.winrm_powershell import unquote
from fleet.transport.base import CommandResult
from fleet.transport.powershell import encode, path_expression, quote
from tests.winrm_support import PASSWORD, SP_SECRET, WinrmLab, winrm_lab

CMDS = WindowsAgentCommands()

NASTY_NAME = "it's $(Remove-Item C:\\) `n name"
NASTY_TAGS = {
    "owner": "O’Brien & Sons",  # (an ASCII ' is refused by validation)
    "cmd": "$(Stop-Computer -Force)",
    "tick": "a`b`$c",
    "spaced key": "value with  two spaces; and ; semicolons",
    "smart": "\u2019quoted\u2018",
}


@pytest.mark.parametrize(
    "value", ["", "plain", "it's", "''", "$(x)", "`n", "a\u2019b\u2018c", "x'; exit 3; '"]
)
def test_quote_round_trips_through_the_lab_parser(value: str) -> None:
    quoted = quote(value)
    assert quoted[0] == quoted[-1] == "'"
    assert unquote(quoted) == value


def test_env_prefixed_paths_expand_on_the_host() -> None:
    assert path_expression(r"%ProgramData%\A\b.log") == r"(Join-Path $env:ProgramData 'A\b.log')"
    assert path_expression(r"C:\it's") == r"'C:\it''s'"


def test_no_inventory_value_reaches_the_windows_command_line() -> None:
    # Every option is in the --config file: a double quote or a trailing backslash cannot meet
    # PowerShell's or azcmagent.exe's command-line rules (tests/test_winargv.py).
    host = ResolvedHost(name="w1", address="127.30.0.9", port=5986, transport=Transport.WINRM,
                        os=OsFamily.WINDOWS, azure=AzureTarget(tags={"k": 'say "hi" \\'},
                                                               resource_name="web-7"),
                        source="inv.yaml")
    command = CMDS.connect(r"C:\a.exe", r"C:\c.json", host)
    assert "say" not in command and "web-7" not in command
    assert "connect --config 'C:\\c.json' --verbose" in command


def test_remove_dir_only_removes_private_dirs() -> None:
    with pytest.raises(ValueError):
        CMDS.remove_dir(r"C:\Windows")


async def _sequence(lab: WinrmLab, index: int) -> tuple[list[CommandResult], str]:
    """What the engine does: elevation, locate, private dir, config, connect, remove."""
    host = lab.resolved(index, resource_name=NASTY_NAME, tags=NASTY_TAGS)
    transport = lab.transport(index, resource_name=NASTY_NAME, tags=NASTY_TAGS)
    await transport.open()
    results = [await transport.run(CMDS.check_elevation(), timeout_s=10)]
    results.append(await transport.run(CMDS.locate_agent(), timeout_s=10))
    agent = results[-1].stdout.strip()
    results.append(await transport.run(CMDS.make_private_dir(), timeout_s=10))
    private_dir = results[-1].stdout.strip()
    config = CMDS.config_path(private_dir)
    try:
        await transport.put_file(config, connect_config(host, SP_SECRET))
        results.append(await transport.run(CMDS.connect(agent, config, host), timeout_s=20))
    finally:
        results.append(await transport.run(CMDS.remove_dir(private_dir), timeout_s=10))
        await transport.close()
    return results, config


async def test_connect_sequence_values_arrive_exactly(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        results, config = await _sequence(lab, 0)
        host = lab.host(0)
        record = lab.server.records[host.address]
    assert [r.exit_status for r in results] == [0, 0, 0, 0, 0], results[3].stderr
    (argv,) = record.agent_argv
    tags = format_tags(NASTY_TAGS)
    # Only the file's path on the command line: every value travels in the --config file.
    assert argv == ["connect", "--config", config, "--verbose"]
    assert host.state.connected
    assert (host.state.resource_name, host.state.tags) == (NASTY_NAME, tags)
    # The config file reached the agent, with the Administrators+SYSTEM ACL, and is gone now.
    (call,) = host.connect_calls
    assert (call.option("resource-name"), call.option("tags")) == (NASTY_NAME, tags)
    assert call.config_path == config and call.config_existed and call.elevated
    assert record.acls[config] == (r"BUILTIN\Administrators", r"NT AUTHORITY\SYSTEM")
    assert not host.local_path(config).exists()
    assert not host.local_path(config).parent.exists()
    assert record.removed == [config.rsplit("\\", 1)[0]]


async def test_no_secret_in_any_command_text(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS, ScenarioKind.WRONG_SECRET]) as lab:
        texts: list[str] = []
        for index in (0, 1):
            results, _config = await _sequence(lab, index)
            texts += [r.command for r in results]
            texts += lab.host(index).commands
    assert len(texts) > 20
    forms = [SP_SECRET, PASSWORD, base64.b64encode(SP_SECRET.encode()).decode(),
             encode(SP_SECRET), base64.b64encode(SP_SECRET.encode("utf-16-le")).decode()]
    for text in texts:
        for form in forms:
            assert form not in text
    # The secret did reach the agent (through the file): the success host connected.
    assert lab.host(0).state.connected and not lab.host(1).state.connected


async def test_wrong_secret_log_is_readable_after_failure(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.WRONG_SECRET]) as lab:
        results, _config = await _sequence(lab, 0)
        transport = lab.transport(0)
        await transport.open()
        log = await transport.read_tail(CMDS.log_path, 4096)
        await transport.close()
    connect = results[3]
    assert connect.exit_status not in (0, None)
    assert "AZCM0041" in connect.stdout + connect.stderr
    assert "AZCM0041" in log


async def test_disconnect_and_restart_service(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.ALREADY_CONNECTED]) as lab:
        transport = lab.transport(0)
        await transport.open()
        agent = (await transport.run(CMDS.locate_agent(), timeout_s=10)).stdout.strip()
        shown = await transport.run(CMDS.show_json(agent), timeout_s=10)
        gone = await transport.run(
            CMDS.disconnect(agent, None, force_local_only=True), timeout_s=10
        )
        restarted = await transport.run(CMDS.restart_agent_service(), timeout_s=10)
        await transport.close()
        host = lab.host(0)
    assert shown.exit_status == 0 and '"Connected"' in shown.stdout
    assert gone.exit_status == 0 and not host.state.connected
    assert lab.server.records[host.address].agent_argv[-1] == [
        "disconnect", "--force-local-only", "--verbose"]
    assert restarted.stdout.strip() == "Running" and host.service_restarts == 1


async def test_agent_missing_locate_fails(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.AGENT_MISSING]) as lab:
        transport = lab.transport(0)
        await transport.open()
        result = await transport.run(CMDS.locate_agent(), timeout_s=10)
        await transport.close()
    assert result.exit_status == 127
    assert "azcmagent.exe not found" in result.stderr


async def test_agent_that_cannot_start_exits_127(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        transport = lab.transport(0)
        result = await transport.run(CMDS.version(r"C:\nope\azcmagent.exe"), timeout_s=10)
        await transport.close()
    assert result.exit_status == 127
    assert "is not recognized" in result.stderr


async def test_the_step_path_schedules_and_cancels_the_timed_cleanup(tmp_path: Path) -> None:
    # Issue 16 item 11 on the step-by-step path (disconnect, offboard, remediation): making the
    # private directory registers its scheduled removal; removing it unregisters the task.
    commands = WindowsAgentCommands(cleanup_after_s=1234)
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        transport = lab.transport(0)
        tasks = lab.server.records[lab.host(0).address].tasks
        assert tasks is not None
        await transport.open()
        try:
            made = await transport.run(commands.make_private_dir(), timeout_s=10)
            private_dir = made.stdout.strip()
            name = private_dir.rsplit("\\", 1)[-1]
            assert made.exit_status == 0 and commands.is_private_dir(private_dir)
            assert [(t.name, t.after_s) for t in tasks.tasks.values()] == [(name, 1234)]
            removed = await transport.run(commands.remove_dir(private_dir), timeout_s=10)
            assert removed.exit_status == 0
        finally:
            await transport.close()
        assert tasks.pending() == [] and tasks.deleted == [name] and not tasks.fired

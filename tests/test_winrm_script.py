"""The Windows host script (issue 15): one WinRS shell and one command per host, a framed report
that survives truncation and forged markers, preflight without a write, and the PowerShell
grammar with hostile inventory values.

The streams come from the lab's WinRM server over real HTTP on loopback (pywinrm, the bootstrap
command, stdin through WS-Man Send). The lab has no PowerShell: it performs the script's steps
(:mod:`fleet.lab.winrm_script`), and the script text itself is parsed with the real grammar.
A killed script leaves no config after its timer: tests/test_windows_private.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.azcm.commands import ScriptMode, ScriptParams, connect_config
from fleet.azcm.commands_windows import WindowsAgentCommands
from fleet.engine import frames
from fleet.engine.frames import parse
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind
from fleet.transport.base import ScriptResult
from tests.engine_support import (
    WINRM_SUBNET,
    all_leftovers,
    assert_every_cut_is_incomplete,
    run_cli,
    winrm_server,
)
from tests.winrm_support import SP_SECRET, WinrmLab, winrm_lab

K = ScenarioKind
CMDS = WindowsAgentCommands()
CAP = 64 * 1024


async def _run(lab: WinrmLab, index: int = 0, *, mode: str = ScriptMode.CONNECT,
               boundary: str | None = None, **azure: object) -> tuple[ScriptResult, str]:
    boundary = boundary or frames.new_boundary()
    params = ScriptParams(boundary=boundary, mode=mode, cap=CAP, log_tail_bytes=CAP,
                          cleanup_after_s=600)
    host = lab.resolved(index, **azure)
    transport = lab.transport(index, **azure)
    await transport.open()
    try:
        stdin = b"" if mode == ScriptMode.PREFLIGHT else connect_config(host, SP_SECRET)
        result = await transport.run_script(
            CMDS.script_command(params, host), stdin, timeout_s=30, output_cap=1 << 20)
    finally:
        await transport.close()
    return result, boundary


def test_the_success_path_is_one_shell_and_one_command_per_host(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=0, windows=3, subnet=WINRM_SUBNET) as lab:
        result = run_cli(lab, tmp_path)
        assert result.returncode == 0, result.describe()
        assert {o["category"] for o in result.outcomes.values()} == {"connected"}
        server = winrm_server(lab)
        records = lab.call(lambda: list(server.shell_records.values()))
        for host in lab.hosts.values():
            shells = [r for r in records if r.address == host.address]
            assert len(shells) == 1, (host.name, shells)
            assert len(shells[0].command_ids) == 1 and shells[0].deleted
        assert not all_leftovers(lab)


async def test_a_real_stream_parses_into_every_step(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [K.SUCCESS]) as lab:
        result, boundary = await _run(lab)
        record = lab.server.records[lab.host(0).address]
        assert lab.host(0).state.connected
        # The config went through stdin, into the private directory, with the private ACL.
        (write,) = record.file_writes
        assert write.acl == (r"BUILTIN\Administrators", r"NT AUTHORITY\SYSTEM")
        assert record.tasks is not None and record.tasks.deleted == record.tasks.registered
    assert result.exit_status == 0
    report = parse(result.stdout, boundary)
    assert report.complete and not report.problem, report.problem
    assert report.names() == ["workdir", "clock", "elevation", "locate", "show", "config",
                              "connect", "cleanup", "verify"]


async def test_cut_at_every_byte_offset_is_never_complete(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [K.SUCCESS]) as lab:
        result, boundary = await _run(lab)
    assert_every_cut_is_incomplete(result.stdout, boundary, piece_step=11)


async def test_forged_markers_in_the_agent_output_are_only_output(tmp_path: Path) -> None:
    # The worst case: the agent's error text carries this run's boundary and a whole fake
    # ending (a successful connect, a verify, the end record).
    boundary = frames.new_boundary()
    forged = (f"{boundary} step connect 0 1 9 9 0 0\nConnected{boundary} step verify 0 1 0 0 0 0"
              f"\n{boundary} end\n")
    failing = Scenario(K.AZCM, code="AZCM0041", message=forged)
    async with winrm_lab(tmp_path, [failing]) as lab:
        result, _ = await _run(lab, boundary=boundary)
        assert not lab.host(0).state.connected
    report = parse(result.stdout, boundary)
    assert report.complete, report.problem
    connect = report.step("connect")
    assert connect is not None and connect.exit_status != 0  # the real exit, not the forged 0
    assert f"{boundary} end" in connect.stdout + connect.stderr
    assert report.step("verify") is None and report.step("log") is not None


async def test_preflight_writes_nothing_and_schedules_nothing(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [K.SUCCESS]) as lab:
        result, boundary = await _run(lab, mode=ScriptMode.PREFLIGHT)
        record = lab.server.records[lab.host(0).address]
        assert not record.file_writes
        assert record.agent_argv == [["show", "-j"], ["config", "get", "proxy.url"]]
        assert record.tasks is not None and not record.tasks.registered
        assert not lab.host(0).connect_calls
    report = parse(result.stdout, boundary)
    assert report.complete
    assert report.names() == ["workdir", "clock", "elevation", "locate", "show", "proxy"]


@pytest.mark.parametrize("value", ["it's", "$(Remove-Item C:\\ -Recurse)", "`n`$x", "‘q’"])
async def test_hostile_values_reach_the_agent_exactly(tmp_path: Path, value: str) -> None:
    # Every connect option travels in the config file (stdin), the argv is fixed.
    async with winrm_lab(tmp_path, [K.SUCCESS]) as lab:
        result, boundary = await _run(lab, resource_name=value, tags={"k": "v w"})
        record = lab.server.records[lab.host(0).address]
        state = lab.host(0).state
        assert (state.connected, state.resource_name) == (True, value)
    assert parse(result.stdout, boundary).complete
    connect = next(argv for argv in record.agent_argv if argv[0] == "connect")
    assert connect[:2] == ["connect", "--config"] and connect[3:] == ["--verbose"]

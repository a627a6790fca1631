"""The lab WS-Man server spoken to with pywinrm's Protocol directly (no arcfleet transport)."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMOperationTimeoutError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from fleet.azcm.commands import connect_config
from fleet.azcm.commands_windows import WindowsAgentCommands
from fleet.lab.host import WINDOWS_AGENT_PATH
from fleet.lab.scenario import ScenarioKind
from fleet.lab.winrm_server import INJECTED_FAULT, FaultMode
from fleet.transport.powershell import command_line
from tests.winrm_support import PASSWORD, SP_SECRET, USER, WinrmLab, winrm_lab

_T = TypeVar("_T")


def _protocol(lab: WinrmLab, *, password: str = PASSWORD, operation_timeout: int = 1) -> Protocol:
    return Protocol(
        lab.server.url(lab.host(0).address), transport="basic", username=USER,
        password=password, operation_timeout_sec=operation_timeout, read_timeout_sec=5,
        proxy=None, ca_trust_path=None,  # type: ignore[arg-type]
    )


async def _in_thread(fn: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def test_create_command_receive_signal_delete(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        proto = _protocol(lab)
        shell = await _in_thread(proto.open_shell)
        cid = await _in_thread(lambda: proto.run_command(shell, "hostname"))
        out, err, code = await _in_thread(lambda: proto.get_command_output(shell, cid))
        # Signal and Delete check that RelatesTo answers their MessageID.
        await _in_thread(lambda: proto.cleanup_command(shell, cid))
        await _in_thread(lambda: proto.close_shell(shell))
        record = lab.server.shell_records[shell]
    assert (out, code) == (b"", 1)
    assert b"'hostname' is not recognized" in err
    assert record.deleted and record.signalled == [cid] and record.user == USER
    # The command line is recorded on the host.
    assert lab.host(0).commands == ["hostname"]


async def test_encoded_script_is_decoded_and_recorded(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        proto = _protocol(lab)
        program, args = command_line("Write-Host 'x'\n")
        shell = await _in_thread(proto.open_shell)
        cid = await _in_thread(lambda: proto.run_command(shell, program, args))
        await _in_thread(lambda: proto.get_command_output(shell, cid))
        await _in_thread(lambda: proto.close_shell(shell))
    raw, script = lab.host(0).commands
    assert raw.startswith("powershell.exe ") and "-EncodedCommand" in raw
    assert script.endswith("Write-Host 'x'\n")
    assert base64.b64decode(raw.split()[-1]).decode("utf-16-le") == script


async def test_receive_long_poll_times_out_while_the_command_runs(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.HANG]) as lab:
        proto = _protocol(lab, operation_timeout=1)
        cfg = r"C:\Windows\Temp\c.json"
        # The hang comes after the credential check, so the config must be the lab's own.
        lab.host(0).local_path(cfg).write_bytes(connect_config(lab.resolved(0), SP_SECRET))
        program, args = command_line(
            WindowsAgentCommands().connect(WINDOWS_AGENT_PATH, cfg, lab.resolved(0)))
        shell = await _in_thread(proto.open_shell)
        cid = await _in_thread(lambda: proto.run_command(shell, program, args))
        with pytest.raises(WinRMOperationTimeoutError):
            await _in_thread(lambda: proto.get_command_output_raw(shell, cid))
        assert len(lab.host(0).running) == 1
        # Delete alone (no Signal) also ends the simulated process.
        await _in_thread(lambda: proto.close_shell(shell))
        assert lab.host(0).running == {}
        assert lab.server.shell_records[shell].deleted


async def test_wrong_password_is_401(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        proto = _protocol(lab, password="nope-nope")
        with pytest.raises(InvalidCredentialsError):
            await _in_thread(proto.open_shell)


async def test_fault_modes(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        proto = _protocol(lab)
        shell = await _in_thread(proto.open_shell)
        cid = await _in_thread(lambda: proto.run_command(shell, "hostname"))
        lab.server.set_fault(lab.host(0).address, FaultMode.FAULT)
        with pytest.raises(WSManFaultError) as caught:
            await _in_thread(lambda: proto.get_command_output_raw(shell, cid))
        assert caught.value.wsman_fault_code == INJECTED_FAULT
        lab.server.set_fault(lab.host(0).address, FaultMode.MALFORMED)
        with pytest.raises(ET.ParseError):
            await _in_thread(lambda: proto.get_command_output_raw(shell, cid))
        await _in_thread(lambda: proto.close_shell(shell))

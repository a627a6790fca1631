"""WinrmTransport against the lab WinRM server over real sockets (pywinrm, Basic over HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fleet.azcm.commands import connect_config
from fleet.azcm.commands_windows import WindowsAgentCommands
from fleet.errors import (
    ConnectionDropped,
    HostAuthFailed,
    HostUnreachable,
    InputError,
    TransportError,
)
from fleet.inventory.model import WinrmSettings
from fleet.lab.host import WINDOWS_AGENT_PATH
from fleet.lab.scenario import Scenario, ScenarioKind
from fleet.lab.winrm_server import FaultMode
from fleet.transport.base import OUTPUT_CAP_BYTES
from fleet.transport.winrm import WinrmTransport
from tests.winrm_support import PASSWORD, SP_SECRET, WinrmLab, free_port, winrm_lab

CMDS = WindowsAgentCommands()


async def test_exit_codes_stdout_and_shell_lifecycle(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS, ScenarioKind.NOT_ROOT]) as lab:
        admin, plain = lab.transport(0), lab.transport(1)
        await admin.open()
        await plain.open()
        assert len(lab.server.open_shells(lab.host(0).address)) == 1

        located = await admin.run(CMDS.locate_agent(), timeout_s=10)
        assert (located.exit_status, located.stdout.strip()) == (0, WINDOWS_AGENT_PATH)
        version = await admin.run(CMDS.version(located.stdout.strip()), timeout_s=10)
        assert version.exit_status == 0
        assert "azcmagent version" in version.stdout
        assert (await admin.run(CMDS.check_elevation(), timeout_s=10)).exit_status == 0

        refused = await plain.run(CMDS.check_elevation(), timeout_s=10)
        assert refused.exit_status == 1
        assert "not in the Administrators role" in refused.stderr

        # The same shell served every command; close deletes it.
        shell_ids = lab.server.open_shells(lab.host(0).address)
        await admin.close()
        await plain.close()
        assert lab.server.open_shells(lab.host(0).address) == []
        record = lab.server.shell_records[shell_ids[0]]
        assert record.deleted and len(record.command_ids) == 3
        # A finished command is signalled when the next one starts on its shell; the last
        # one needs no Signal, the shell's Delete ends it (one exchange less per session).
        assert record.signalled == record.command_ids[:2]
        assert lab.server.running_commands(lab.host(0).address) == []


async def test_unknown_script_fails_like_powershell(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        transport = lab.transport(0)
        await transport.open()
        result = await transport.run("Get-Process | Stop-Process\n", timeout_s=10)
        await transport.close()
    assert result.exit_status == 1
    # The CLIXML error record was reduced to its text.
    assert "not understood by the lab host: Get-Process" in result.stderr
    assert "CLIXML" not in result.stderr
    assert result.command == "Get-Process | Stop-Process\n"


async def test_agent_failure_exit_status_and_stderr(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SERVICE_STOPPED]) as lab:
        transport = lab.transport(0)
        await transport.open()
        result = await transport.run(CMDS.show_json(WINDOWS_AGENT_PATH), timeout_s=10)
        restart = await transport.run(CMDS.restart_agent_service(), timeout_s=10)
        await transport.close()
        assert result.exit_status is not None
        assert (restart.exit_status, restart.stdout.strip()) == (0, "Running")
        assert lab.host(0).service_restarts == 1


async def test_wrong_password_is_host_auth_failed(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        wrong = "Wrong-Pa55-SENTINEL-0000"
        transport = lab.transport(0, password=wrong)
        with pytest.raises(HostAuthFailed) as caught:
            await transport.open()
        assert "401" in str(caught.value)
        assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)
        assert lab.server.open_shells(lab.host(0).address) == []


async def test_no_listener_is_host_unreachable(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        host = lab.resolved(0).model_copy(update={"address": "127.30.0.250",
                                                  "port": free_port("127.30.0.250")})
        transport = WinrmTransport(host, password=PASSWORD, executor=lab.executor)
        with pytest.raises(HostUnreachable) as caught:
            await transport.open()
        assert "127.30.0.250" in str(caught.value)


async def test_basic_over_plain_http_needs_explicit_consent(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        host = lab.resolved(0)
        host = host.model_copy(update={"winrm": WinrmSettings(user="u", auth="basic",
                                                               scheme="http")})
        with pytest.raises(InputError) as caught:
            WinrmTransport(host, password=PASSWORD, executor=lab.executor)
        assert caught.value.problems[0].field == "winrm.auth"
        assert caught.value.problems[0].host == host.name
        # Nothing was contacted.
        assert lab.server.shell_records == {}


async def test_hang_is_cut_at_the_deadline_and_the_process_is_gone(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.HANG]) as lab:
        transport = lab.transport(0)
        await transport.open()
        cfg = r"C:\Windows\Temp\cfg.json"
        await transport.put_file(cfg, connect_config(lab.resolved(0), SP_SECRET))
        result = await transport.run(
            CMDS.connect(WINDOWS_AGENT_PATH, cfg, lab.resolved(0)), timeout_s=1.0
        )
        host = lab.host(0)
        assert result.timed_out and result.exit_status is None
        # Signal + Delete reached the server: the simulated agent was cancelled, shell deleted.
        assert host.running == {}
        assert lab.server.running_commands(host.address) == []
        assert lab.server.open_shells(host.address) == []
        (record,) = lab.server.shell_records.values()
        assert record.deleted and record.signalled == record.command_ids
        # The session is still usable: the next command opens a new shell.
        again = await transport.run(CMDS.check_elevation(), timeout_s=10)
        assert again.exit_status == 0
        await transport.close()


@pytest.mark.parametrize("mode", [FaultMode.FAULT, FaultMode.MALFORMED])
async def test_broken_receive_is_connection_dropped(tmp_path: Path, mode: FaultMode) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        transport = lab.transport(0)
        await transport.open()
        lab.server.set_fault(lab.host(0).address, mode)
        with pytest.raises(ConnectionDropped) as caught:
            await transport.run(CMDS.check_elevation(), timeout_s=10)
        expected = "WS-Man fault" if mode is FaultMode.FAULT else "malformed WS-Man response"
        assert expected in str(caught.value)
        assert PASSWORD not in str(caught.value)
        # Once the host behaves again, the transport recovers with a fresh shell.
        lab.server.set_fault(lab.host(0).address, FaultMode.NONE)
        assert (await transport.run(CMDS.check_elevation(), timeout_s=10)).exit_status == 0
        await transport.close()


async def test_put_file_read_tail_round_trip_with_acl(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        transport = lab.transport(0)
        await transport.open()
        made = await transport.run(CMDS.make_private_dir(), timeout_s=10)
        private_dir = made.stdout.strip()
        path = CMDS.config_path(private_dir)
        content = "line one\r\nsecond 'line' $(x) `n ünïcödé\r\n".encode() * 50
        await transport.put_file(path, content)
        tail = await transport.read_tail(path, 40)
        whole = await transport.read_tail(path, 1 << 20)
        missing = await transport.read_tail(private_dir + r"\nope.txt", 100)
        await transport.close()

        record = lab.server.records[lab.host(0).address]
        admins_system = (r"BUILTIN\Administrators", r"NT AUTHORITY\SYSTEM")
        assert record.acls[private_dir] == admins_system
        (write,) = record.file_writes
        assert (write.path, write.size, write.acl) == (path, len(content), admins_system)
        assert lab.host(0).local_path(path).read_bytes() == content
        assert whole.encode() == content
        assert tail.encode() == content[-40:]
        assert missing == ""


async def test_output_is_capped_and_the_cut_recorded(tmp_path: Path) -> None:
    scenario = Scenario(ScenarioKind.HUGE_OUTPUT, output_bytes=OUTPUT_CAP_BYTES + 64 * 1024)
    async with winrm_lab(tmp_path, [scenario]) as lab:
        transport = lab.transport(0)
        await transport.open()
        made = await transport.run(CMDS.make_private_dir(), timeout_s=10)
        cfg = CMDS.config_path(made.stdout.strip())
        await transport.put_file(cfg, connect_config(lab.resolved(0), SP_SECRET))
        result = await transport.run(
            CMDS.connect(WINDOWS_AGENT_PATH, cfg, lab.resolved(0)), timeout_s=30
        )
        await transport.close()
    assert result.exit_status == 0
    assert result.truncated_bytes > 0
    assert len(result.stdout.encode()) <= OUTPUT_CAP_BYTES


def _https(lab: WinrmLab, *, validate: bool, allow_unverified: bool = False,
           ca_file: Path | None = None) -> WinrmTransport:
    host = lab.resolved(0)
    settings = WinrmSettings(user=host.winrm.user, auth="basic", scheme="https",
                             cert_validation=validate, allow_unverified_tls=allow_unverified,
                             ca_file=ca_file)
    return WinrmTransport(host.model_copy(update={"winrm": settings}), password=PASSWORD,
                          executor=lab.executor)


async def test_https_validates_the_certificate_by_default(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS], tls=True) as lab:
        with pytest.raises(HostAuthFailed) as caught:
            await _https(lab, validate=True).open()
        assert "TLS certificate not trusted" in str(caught.value)
        assert lab.server.shell_records == {}


async def test_https_with_a_trusted_ca_or_validation_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS], tls=True) as lab:
        with pytest.raises(InputError) as refused:
            _https(lab, validate=False)
        assert refused.value.problems[0].field == "winrm.cert_validation"
        unverified = _https(lab, validate=False, allow_unverified=True)
        await unverified.open()
        assert (await unverified.run(CMDS.check_elevation(), timeout_s=10)).exit_status == 0
        await unverified.close()
        assert lab.ca_file is not None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(lab.ca_file))
        trusted = _https(lab, validate=True)
        await trusted.open()
        assert (await trusted.run(CMDS.check_elevation(), timeout_s=10)).exit_status == 0
        await trusted.close()
        # The inventory's own CA file, with REQUESTS_CA_BUNDLE pointing elsewhere.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
        with_ca_file = _https(lab, validate=True, ca_file=lab.ca_file)
        await with_ca_file.open()
        assert (await with_ca_file.run(CMDS.check_elevation(), timeout_s=10)).exit_status == 0
        await with_ca_file.close()


async def test_https_with_the_system_trust_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # truststore uses OpenSSL's default verify paths on Linux; SSL_CERT_FILE moves the store.
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS], tls=True) as lab:
        assert lab.ca_file is not None
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(lab.ca_file))
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        trusted = _https(lab, validate=True)
        await trusted.open()
        assert (await trusted.run(CMDS.check_elevation(), timeout_s=10)).exit_status == 0
        await trusted.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "empty.pem"))
        (tmp_path / "empty.pem").write_text("")
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
        with pytest.raises(HostAuthFailed, match="TLS certificate not trusted"):
            await _https(lab, validate=True).open()


async def test_auth_without_its_package_is_host_auth_failed(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        host = lab.resolved(0)
        settings = WinrmSettings(user="u", auth="credssp", scheme="http")
        transport = WinrmTransport(host.model_copy(update={"winrm": settings}),
                                   password=PASSWORD, executor=lab.executor)
        with pytest.raises(HostAuthFailed, match="credssp authentication is not available"):
            await transport.open()


async def test_many_hosts_share_two_threads(tmp_path: Path) -> None:
    scenarios: list[ScenarioKind | Scenario] = [ScenarioKind.SUCCESS] * 12
    async with winrm_lab(tmp_path, scenarios, base=40) as lab:
        lab.executor.shutdown()
        with ThreadPoolExecutor(max_workers=2) as executor:
            transports = [
                WinrmTransport(lab.resolved(i), password=PASSWORD, executor=executor)
                for i in range(len(scenarios))
            ]

            async def one(transport: WinrmTransport) -> int | None:
                await transport.open()
                try:
                    return (await transport.run(CMDS.locate_agent(), timeout_s=20)).exit_status
                finally:
                    await transport.close()

            statuses = await asyncio.gather(*(one(t) for t in transports))
    assert statuses == [0] * len(scenarios)
    assert all(h.commands for h in lab.hosts)


async def test_ntlm_with_message_encryption(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.HANG], ntlm=True) as lab:
        transport = lab.transport(0)
        assert lab.resolved(0).winrm.auth == "ntlm"
        await transport.open()
        cfg = r"C:\Windows\Temp\cfg.json"
        await transport.put_file(cfg, connect_config(lab.resolved(0), SP_SECRET))
        assert lab.host(0).local_path(cfg).read_bytes() == connect_config(
            lab.resolved(0), SP_SECRET)
        result = await transport.run(
            CMDS.connect(WINDOWS_AGENT_PATH, cfg, lab.resolved(0)), timeout_s=1.0
        )
        assert result.timed_out and lab.host(0).running == {}
        assert (await transport.run(CMDS.check_elevation(), timeout_s=10)).exit_status == 0
        await transport.close()
        # Every WS-Man message after the handshake was sealed.
        assert lab.server.encrypted_requests >= 8
        assert {r.user for r in lab.server.shell_records.values()} == {"labadmin"}
        with pytest.raises(HostAuthFailed):
            await lab.transport(0, password="Not-The-Password-1").open()


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")


async def test_cancelled_run_stops_the_command_on_the_host(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.HANG]) as lab:
        transport = lab.transport(0)
        cfg = r"C:\Windows\Temp\cfg.json"
        await transport.put_file(cfg, connect_config(lab.resolved(0), SP_SECRET))
        host = lab.host(0)
        task = asyncio.create_task(transport.run(
            CMDS.connect(WINDOWS_AGENT_PATH, cfg, lab.resolved(0)), timeout_s=60))
        await _until(lambda: bool(host.running))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda: not host.running and not lab.server.open_shells(host.address))
        await transport.close()


async def test_server_gone_mid_command_is_connection_dropped(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.HANG]) as lab:
        transport = lab.transport(0)
        cfg = r"C:\Windows\Temp\cfg.json"
        await transport.put_file(cfg, connect_config(lab.resolved(0), SP_SECRET))
        task = asyncio.create_task(transport.run(
            CMDS.connect(WINDOWS_AGENT_PATH, cfg, lab.resolved(0)), timeout_s=60))
        await _until(lambda: bool(lab.host(0).running))
        await lab.server.stop()
        with pytest.raises(ConnectionDropped):
            await task
        await transport.close()


async def test_read_tail_of_a_big_log_keeps_the_end(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        log = lab.host(0).local_path(r"C:\ProgramData\AzureConnectedMachineAgent\Log\azcmagent.log")
        log.write_bytes(b"x" * OUTPUT_CAP_BYTES + b"THE END")
        transport = lab.transport(0)
        tail = await transport.read_tail(CMDS.log_path, 10 * OUTPUT_CAP_BYTES)
        await transport.close()
    assert tail.endswith("THE END") and len(tail) == OUTPUT_CAP_BYTES * 3 // 4


async def test_put_file_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    async with winrm_lab(tmp_path, [ScenarioKind.SUCCESS]) as lab:
        transport = lab.transport(0)
        with pytest.raises(TransportError) as caught:
            await transport.put_file(r"C:\nowhere\x.json", b"{}")
        await transport.close()
    assert "Could not find a part of the path" in str(caught.value)

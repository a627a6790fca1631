"""The lab SSH server and simulator: command record, SFTP modes, hang cancellation, fidelity."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import asyncssh
import pytest
import yaml

from fleet.errors import ScenarioError
from fleet.lab.agent import run_agent
from fleet.lab.fleet import LabFleet
from fleet.lab.host import LabHost, LabTarget
from fleet.lab.scenario import (
    Scenario,
    ScenarioKind,
    ScenarioPlan,
    builtin_plan_path,
    load_plan,
    plan_from_mapping,
)
from fleet.lab.shell import split_command
from tests.lab_support import SUBNET, config_body, connect_command, put_config, ssh_to

NAME = "lab-0001"


async def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_command_record_and_no_secret_in_argv(tmp_path: Path) -> None:
    async with LabFleet(tmp_path, hosts=1, subnet=SUBNET) as lab, ssh_to(lab, NAME) as conn:
        config = await put_config(conn, config_body(lab))
        command = connect_command(config, NAME, extra=" --correlation-id abc")
        assert (await conn.run(command)).exit_status == 0
        host = lab.hosts[NAME]
        assert host.commands == ["mktemp -d /tmp/arcfleet.XXXXXXXX", command]
        assert all(lab.secret not in c for c in host.commands)
        call = host.connect_calls[-1]
        assert call.config_existed and call.config_path == config and call.elevated
        assert lab.secret not in " ".join(call.argv)
        assert call.exit_status == 0
        assert (await conn.run(f"rm -rf -- {config.rsplit('/', 1)[0]}")).exit_status == 0
        assert not host.local_path(config).exists()


async def test_sftp_modes_are_honoured_and_recorded(tmp_path: Path) -> None:
    async with LabFleet(tmp_path, hosts=1, subnet=SUBNET) as lab, ssh_to(lab, NAME) as conn:
        made = await conn.run("mktemp -d /tmp/arcfleet.XXXXXXXX")
        directory = str(made.stdout).strip()
        host = lab.hosts[NAME]
        assert stat.S_IMODE(os.stat(host.local_path(directory)).st_mode) == 0o700
        async with conn.start_sftp_client() as sftp:
            async with sftp.open(f"{directory}/a.json", "wb",
                                 attrs=asyncssh.SFTPAttrs(permissions=0o600)) as fh:
                await fh.write(b"{}")
            async with sftp.open(f"{directory}/b.txt", "wb",
                                 attrs=asyncssh.SFTPAttrs(permissions=0o640)) as fh:
                await fh.write(b"secret-content")
            await sftp.chmod(f"{directory}/b.txt", 0o400)
            with pytest.raises(asyncssh.SFTPError):
                await sftp.open("/../../etc/passwd")  # chrooted: not the lab's own /etc
        assert stat.S_IMODE(os.stat(host.local_path(f"{directory}/a.json")).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(host.local_path(f"{directory}/b.txt")).st_mode) == 0o400
        writes = [(w.path, w.mode & 0o777 if w.mode else None, w.op) for w in host.sftp_writes]
        assert writes == [(f"{directory}/a.json", 0o600, "open"),
                          (f"{directory}/b.txt", 0o640, "open"),
                          (f"{directory}/b.txt", 0o400, "setstat")]
        assert "secret-content" not in repr(host.sftp_writes)


@pytest.mark.parametrize("how", ["signal", "channel_close", "disconnect"])
async def test_hang_is_cancelled_on_the_host(tmp_path: Path, how: str) -> None:
    plan = ScenarioPlan(default=Scenario(ScenarioKind.HANG))
    async with LabFleet(tmp_path, hosts=1, subnet=SUBNET, plan=plan) as lab:
        host = lab.hosts[NAME]
        conn = await asyncssh.connect(host.address, lab.ssh_port, username="arc",
                                      client_keys=[str(lab.key_file)],
                                      known_hosts=str(lab.known_hosts_file))
        try:
            config = await put_config(conn, config_body(lab))
            process = await conn.create_process(connect_command(config, NAME))
            await _wait_for(lambda: len(host.running) == 1)
            assert next(iter(host.running.values())).command.startswith("sudo -n ")
            if how == "signal":
                process.send_signal("TERM")
                completed = await asyncio.wait_for(process.wait(), 5)
                assert completed.exit_signal is not None and completed.exit_signal[0] == "TERM"
            elif how == "channel_close":
                process.close()
            else:
                conn.close()
            await _wait_for(lambda: not host.running)
        finally:
            conn.close()
        assert host.connect_calls[-1].exit_status is None  # the simulated process was killed
        assert host.state.status == "Disconnected"


async def test_host_keys_and_login(tmp_path: Path) -> None:
    async with LabFleet(tmp_path, hosts=2, subnet=SUBNET) as lab:
        lines = lab.known_hosts_file.read_text().splitlines()
        assert len(lines) == 2 and lines[0].startswith(f"[127.20.0.1]:{lab.ssh_port} ssh-ed25519 ")
        assert lines[0].split()[2] != lines[1].split()[2]  # each host has its own key
        with pytest.raises(asyncssh.PermissionDenied):
            async with ssh_to(lab, NAME, user="root"):
                pass
        other = asyncssh.generate_private_key("ssh-ed25519")
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.20.0.1", lab.ssh_port, username="arc",
                                   client_keys=[other], known_hosts=str(lab.known_hosts_file))
        # The key of lab-0001 does not verify lab-0002.
        wrong = asyncssh.import_known_hosts(lines[0].replace("127.20.0.1", "127.20.0.2"))
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await asyncssh.connect("127.20.0.2", lab.ssh_port, username="arc",
                                   client_keys=[str(lab.key_file)], known_hosts=wrong)


async def test_interpreter(tmp_path: Path) -> None:
    async with LabFleet(tmp_path, hosts=1, subnet=SUBNET) as lab, ssh_to(lab, NAME) as conn:
        cases = {
            "true && echo yes || echo no": (0, "yes\n"),
            "false && echo yes || echo no": (0, "no\n"),
            "false ; echo after": (0, "after\n"),
            "sh -c 'id -u && sudo -n id -u'": (0, "1000\n0\n"),
            "echo 'a && b'": (0, "a && b\n"),
            "hostname": (0, f"{NAME}\n"),
            "command -v azcmagent": (0, "/usr/bin/azcmagent\n"),
            "command -v /opt/azcmagent/bin/azcmagent": (0, "/opt/azcmagent/bin/azcmagent\n"),
            "test -x /usr/bin/azcmagent": (0, ""),
            "/opt/azcmagent/bin/azcmagent version": (0, "azcmagent version 1.60.03293.2140\n"),
            "sudo -n systemctl is-active himdsd": (0, "active\n"),
            "tail -c 10 -- /tmp/nothing": (1, ""),
            "rm -f /tmp/nothing": (0, ""),
        }
        for command, expected in cases.items():
            result = await conn.run(command)
            assert (result.exit_status, result.stdout) == expected, command
        # (curl is simulated since the install stage: it fetches only the install script.)
        unknown = await conn.run("wget -q https://example.com")
        assert (unknown.exit_status, unknown.stderr) == (127, "sh: 1: wget: not found\n")
        fetch = await conn.run("curl -fsSL -o /tmp/x https://example.com")
        assert fetch.exit_status == 22 and "404" in str(fetch.stderr)
        missing = await conn.run("sudo -n tail -c 100 -- /tmp/nothing")
        assert "tail: cannot open '/tmp/nothing' for reading" in str(missing.stderr)
    assert split_command("a 'x;y' && b || c ; d") == [
        (";", ["a", "x;y"]), ("&&", ["b"]), ("||", ["c"]), (";", ["d"])]


async def test_config_file_is_read_and_command_line_wins(tmp_path: Path) -> None:
    async with LabFleet(tmp_path, hosts=1, subnet=SUBNET) as lab, ssh_to(lab, NAME) as conn:
        host = lab.hosts[NAME]
        missing = await conn.run(connect_command("/tmp/arcfleet.none/connect.json", NAME))
        assert missing.exit_status == 19
        assert host.connect_calls[-1].config_existed is False
        wrong = await put_config(conn, config_body(lab, **{"service-principal-secret": "nope"}))
        result = await conn.run(connect_command(wrong, NAME))
        assert result.exit_status == 41 and "AADSTS7000215" in str(result.stdout)
        partial = await put_config(conn, config_body(lab, location=None))
        result = await conn.run(connect_command(partial, NAME))
        assert result.exit_status == 16 and '"location"' in str(result.stdout)
        good = await put_config(conn, config_body(lab))
        result = await conn.run(connect_command(good, NAME, extra=" --location westeuropa"))
        assert result.exit_status == 20  # the command line beats the config file
        yaml_config = await put_config(conn, yaml.safe_dump(
            json.loads(config_body(lab))).encode())
        result = await conn.run(connect_command(yaml_config, NAME, extra=" --log-stderr"))
        assert result.exit_status == 0
        assert host.state.location == "westeurope"


async def test_disconnect_and_log_format(tmp_path: Path) -> None:
    async with LabFleet(tmp_path, hosts=1, subnet=SUBNET) as lab, ssh_to(lab, NAME) as conn:
        host = lab.hosts[NAME]
        config = await put_config(conn, config_body(lab))
        assert (await conn.run(connect_command(config, NAME))).exit_status == 0
        result = await conn.run(f"sudo -n azcmagent disconnect --config {config} --verbose")
        assert result.exit_status == 0 and host.state.status == "Disconnected"
        assert (await conn.run(f"sudo -n azcmagent disconnect --config {config}")).exit_status \
            == 63
        assert (await conn.run(connect_command(config, NAME))).exit_status == 0
        local = await conn.run("sudo -n azcmagent disconnect --force-local-only --verbose")
        assert local.exit_status == 0 and host.state.status == "Disconnected"
        log = await conn.run("sudo -n cat /var/opt/azcmagent/log/azcmagent.log")
        lines = str(log.stdout).splitlines()
        assert lines and all(line.startswith('time="') and " level=" in line for line in lines)
        assert any('level=info msg="Connected machine to Azure"' in line for line in lines)
        assert lab.secret not in str(log.stdout)


async def test_other_subcommands(tmp_path: Path) -> None:
    async with LabFleet(tmp_path, hosts=1, subnet=SUBNET) as lab, ssh_to(lab, NAME) as conn:
        check = await conn.run("azcmagent check --location westeurope")
        assert check.exit_status == 0 and "https://management.azure.com" in str(check.stdout)
        assert (await conn.run("azcmagent config set proxy.url http://p:3128")).exit_status == 18
        assert (await conn.run("sudo -n azcmagent config set proxy.url http://p:3128")
                ).exit_status == 0
        got = await conn.run("azcmagent config get proxy.url")
        assert got.stdout == "http://p:3128\n"
        assert "proxy.url" in str((await conn.run("azcmagent config list")).stdout)
        assert (await conn.run("sudo -n azcmagent logs")).exit_status == 0
        assert (await conn.run("azcmagent frobnicate")).exit_status == 23
        assert (await conn.run("azcmagent show --no-color --bogus")).exit_status == 23


async def test_windows_host_log_path(tmp_path: Path) -> None:
    host = LabHost("lab-0009", "127.20.9.9", tmp_path / "w", LabTarget(secret="s"), os="windows")
    result = await run_agent(["azcmagent.exe", "connect", "--verbose"], host, elevated=True)
    assert result.exit_status == 16
    log = tmp_path / "w/C/ProgramData/AzureConnectedMachineAgent/Log/azcmagent.log"
    assert "Exit Code:  AZCM0016" in log.read_text()
    assert host.local_path(r"C:\Windows\..\..\..\etc") == tmp_path / "w" / "etc"


def test_in_thread_lab_and_inventory(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path, hosts=2, subnet=SUBNET, unreachable=1) as lab:
        inventory = yaml.safe_load(lab.inventory_path.read_text())
        assert inventory["arcfleet"] == 1
        ssh = inventory["defaults"]["ssh"]
        assert (ssh["key_file"], ssh["known_hosts"], ssh["become"]) == (
            "id_ed25519", "known_hosts", True)
        azure = inventory["defaults"]["azure"]
        assert azure["service_principal"]["secret"] == {"file": "sp_secret"}
        assert (azure["resource_group"], azure["location"]) == ("rg-arclab", "westeurope")
        assert set(inventory["hosts"]) == {"lab-0001", "lab-0002", "lab-0003"}
        assert inventory["hosts"]["lab-0001"] == {"address": "127.20.0.1", "port": lab.ssh_port}
        assert stat.S_IMODE(os.stat(lab.secret_file).st_mode) == 0o600
        assert lab.secret_file.read_text().strip() == lab.secret
        assert lab.secret not in lab.inventory_path.read_text()

        expected = json.loads(lab.expected_file.read_text())
        assert expected["lab-0003"]["expected_category"] == "unreachable"
        assert expected["lab-0001"] == {"scenario": "success", "expected_category": "connected",
                                        "first_attempt_category": "connected"}
        lab.set_scenario("lab-0002", Scenario(ScenarioKind.WRONG_SECRET))

        async def client() -> tuple[int | None, int | None]:
            async with ssh_to(lab, "lab-0002") as conn:
                config = await put_config(conn, config_body(lab))
                result = await conn.run(connect_command(config, "lab-0002"))
            unreachable = inventory["hosts"]["lab-0003"]
            with pytest.raises(OSError):
                await asyncssh.connect(unreachable["address"], lab.ssh_port,
                                       known_hosts=None, connect_timeout=5)
            return result.exit_status, None

        status, _ = asyncio.run(client())
        assert status == 41
        assert lab.call(lambda: len(lab.hosts["lab-0002"].commands)) == 2


def test_scenario_file_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  lab-0001: {scenario: azcm, code: 41}\n")
    with pytest.raises(ScenarioError) as info:
        load_plan(bad)
    problem = info.value.problems[0]
    assert (problem.file, problem.host, problem.field) == (str(bad), "lab-0001", "scenario.code")
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'"):
        plan_from_mapping({"default": "nope"})


def test_default_mix_is_safe_for_a_circuit_breaker() -> None:
    plan = load_plan(builtin_plan_path("mix"))
    names = [f"lab-{i:04d}" for i in range(1, 101)]
    scenarios = plan.assign(names, names)
    kinds = [s.kind for s in scenarios]
    for kind in (ScenarioKind.WRONG_SECRET, ScenarioKind.RBAC_403,
                 ScenarioKind.UNREGISTERED_PROVIDER):
        assert 1 <= kinds.count(kind) <= 2
    assert ScenarioKind.HANG not in kinds
    assert kinds.count(ScenarioKind.SUCCESS) > len(kinds) // 2
    for kind in (ScenarioKind.TRANSIENT, ScenarioKind.SERVICE_STOPPED, ScenarioKind.THROTTLED,
                 ScenarioKind.ALREADY_CONNECTED, ScenarioKind.CONNECTED_ELSEWHERE,
                 ScenarioKind.NO_SUCH_HOST, ScenarioKind.AGENT_MISSING,
                 ScenarioKind.SUDO_PASSWORD):
        assert 1 <= kinds.count(kind) <= 2


def test_windows_hosts_when_the_winrm_server_is_in_the_tree(tmp_path: Path) -> None:
    pytest.importorskip("fleet.lab.winrm_server", reason="WinRM lab server not merged yet")
    commands = pytest.importorskip("fleet.azcm.commands_windows")
    import winrm  # type: ignore[import-untyped,unused-ignore]

    with LabFleet.in_thread(tmp_path, hosts=1, windows=1, subnet=SUBNET) as lab:
        inventory = yaml.safe_load(lab.inventory_path.read_text())
        entry = inventory["hosts"]["lab-0002"]
        assert entry == {"address": "127.20.1.1", "port": lab.winrm_port, "transport": "winrm"}
        assert inventory["defaults"]["winrm"]["password"] == {"file": "winrm_password"}
        session = winrm.Session(f"http://{entry['address']}:{entry['port']}/wsman",
                                auth=("arcadmin", lab.winrm_password), transport="basic")
        agent = r"C:\Program Files\AzureConnectedMachineAgent\azcmagent.exe"
        result = session.run_ps(commands.WindowsAgentCommands().version(agent))
        assert result.status_code == 0
        assert lab.hosts["lab-0002"].os == "windows"


def test_windows_terms_for_a_linux_only_scenario() -> None:
    sudo = Scenario(ScenarioKind.SUDO_PASSWORD)
    assert sudo.for_os("linux") is sudo
    windows = sudo.for_os("windows")
    assert windows.kind is ScenarioKind.NOT_ROOT
    assert windows.expected_category() is sudo.expected_category()

"""Every scenario through the lab SSH server over real sockets: exit status, output shape, state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.azcm.diagnosis import Category
from fleet.lab.agent.catalog import CODES
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from tests.lab_support import SUBNET, config_body, connect_command, put_config, ssh_to

NAME = "lab-0001"


def _lab(tmp_path: Path, scenario: Scenario) -> LabFleet:
    return LabFleet(tmp_path, hosts=1, subnet=SUBNET, plan=ScenarioPlan(default=scenario))


# kind, first connect's exit status, text that must be in the output
FAILURES = [
    (Scenario(ScenarioKind.ALREADY_CONNECTED), 67, "AZCM0067: Machine Already Connected"),
    (Scenario(ScenarioKind.CONNECTED_ELSEWHERE), 67, "AZCM0067: Machine Already Connected"),
    (Scenario(ScenarioKind.WRONG_SECRET), 41, "AADSTS7000215: Invalid client secret provided"),
    (Scenario(ScenarioKind.EXPIRED_SECRET), 41, "AADSTS7000222"),
    (Scenario(ScenarioKind.UNKNOWN_APP), 41, "AADSTS700016: Application with identifier"),
    (Scenario(ScenarioKind.UNKNOWN_TENANT), 41, "AADSTS90002: Tenant"),
    (Scenario(ScenarioKind.RBAC_403), 42, "Code: AuthorizationFailed Status Code=403"),
    (Scenario(ScenarioKind.UNREGISTERED_PROVIDER), 42, "MissingSubscriptionRegistration"),
    (Scenario(ScenarioKind.LOGIN_UNREACHABLE), 41, "connect: network is unreachable"),
    (Scenario(ScenarioKind.LOGIN_FORBIDDEN), 41, "oauth2/token?api-version=1.0: Forbidden"),
    (Scenario(ScenarioKind.NO_SUCH_HOST), 41, "lookup login.microsoftonline.com: no such host"),
    (Scenario(ScenarioKind.ARM_FORBIDDEN), 42, "api-version=2019-03-18-preview:  Forbidden"),
    (Scenario(ScenarioKind.NOT_ROOT), 18, "AZCM0018: Admin Privileges Needed"),
]


@pytest.mark.parametrize(("scenario", "status", "text"), FAILURES,
                         ids=[s.kind.value for s, _, _ in FAILURES])
async def test_failure_scenarios(tmp_path: Path, scenario: Scenario, status: int,
                                 text: str) -> None:
    async with _lab(tmp_path, scenario) as lab, ssh_to(lab, NAME) as conn:
        before = lab.hosts[NAME].state.status
        config = await put_config(conn, config_body(lab))
        result = await conn.run(connect_command(config, NAME))
        assert result.exit_status == status
        output = f"{result.stdout}{result.stderr}"
        assert text in output
        assert f"AZCM00{status:02d}: " in output
        log = (await conn.run("sudo -n tail -c 4000 -- /var/opt/azcmagent/log/azcmagent.log"))
        assert f'level=info msg="Exit Code:  AZCM00{status:02d}: ' in str(log.stdout)
        assert "level=fatal msg=" in str(log.stdout)
        assert lab.hosts[NAME].state.status == before  # a failed connect changes nothing
        assert scenario.expected_category() is not Category.CONNECTED


async def test_success_connects_and_second_connect_fails_67(tmp_path: Path) -> None:
    async with _lab(tmp_path, Scenario()) as lab, ssh_to(lab, NAME) as conn:
        config = await put_config(conn, config_body(lab))
        first = await conn.run(connect_command(config, NAME, extra=" --tags 'env=lab,team=x'"))
        assert first.exit_status == 0, first.stdout
        out = str(first.stdout)
        assert "INFO    Connecting machine to Azure... This might take a few minutes." in out
        assert " 100% [===============]" in out and "  20% [==>            ]" in out
        assert "INFO    Connected machine to Azure" in out
        shown = json.loads(str((await conn.run("azcmagent show --json")).stdout))
        assert shown["status"] == "Connected"
        assert shown["resourceName"] == NAME
        assert shown["resourceGroup"] == "rg-arclab"
        assert shown["resourceId"].endswith(f"/machines/{NAME}")
        for key in ("subscriptionId", "tenantId", "location", "cloud", "agentVersion"):
            assert shown[key]
        second = await conn.run(connect_command(config, NAME))
        assert second.exit_status == 67
        text = await conn.run("azcmagent show")
        assert "Agent Status                            : Connected" in str(text.stdout)


async def test_connected_elsewhere_reports_other_target(tmp_path: Path) -> None:
    async with _lab(tmp_path, Scenario(ScenarioKind.CONNECTED_ELSEWHERE)) as lab, \
            ssh_to(lab, NAME) as conn:
        shown = json.loads(str((await conn.run("azcmagent show --json")).stdout))
        assert shown["status"] == "Connected"
        assert shown["subscriptionId"] != lab.target.subscription_id
    async with _lab(tmp_path / "b", Scenario(ScenarioKind.ALREADY_CONNECTED)) as lab, \
            ssh_to(lab, NAME) as conn:
        shown = json.loads(str((await conn.run("azcmagent show --json")).stdout))
        assert (shown["subscriptionId"], shown["resourceGroup"], shown["tenantId"]) == (
            lab.target.subscription_id, lab.target.resource_group, lab.target.tenant_id)


@pytest.mark.parametrize("code", sorted(CODES))
async def test_generic_azcm_code(tmp_path: Path, code: str) -> None:
    scenario = Scenario(ScenarioKind.AZCM, code=code)
    async with _lab(tmp_path, scenario) as lab, ssh_to(lab, NAME) as conn:
        config = await put_config(conn, config_body(lab))
        result = await conn.run(connect_command(config, NAME))
        assert result.exit_status == int(code[4:])
        assert f"FATAL   {code}: {CODES[code].name}" in str(result.stdout)
        assert lab.hosts[NAME].state.status == "Disconnected"


@pytest.mark.parametrize("kind", [ScenarioKind.THROTTLED, ScenarioKind.TRANSIENT])
async def test_fail_n_times_then_succeed(tmp_path: Path, kind: ScenarioKind) -> None:
    scenario = Scenario(kind, fail_times=2, retry_after_s=7)
    async with _lab(tmp_path, scenario) as lab, ssh_to(lab, NAME) as conn:
        config = await put_config(conn, config_body(lab))
        statuses = []
        for _ in range(3):
            result = await conn.run(connect_command(config, NAME))
            statuses.append(result.exit_status)
            if kind is ScenarioKind.THROTTLED and result.exit_status:
                assert "httpStatusCode:429 Retry-After:7" in str(result.stdout)
                assert "try again after '7' seconds" in str(result.stdout)
        expected = 42 if kind is ScenarioKind.THROTTLED else 26
        assert statuses == [expected, expected, 0]
        assert scenario.expected_category() is Category.CONNECTED
        assert scenario.first_attempt_category() in (Category.THROTTLED, Category.NETWORK)


async def test_service_stopped_until_restarted(tmp_path: Path) -> None:
    async with _lab(tmp_path, Scenario(ScenarioKind.SERVICE_STOPPED)) as lab, \
            ssh_to(lab, NAME) as conn:
        config = await put_config(conn, config_body(lab))
        assert (await conn.run(connect_command(config, NAME))).exit_status == 64
        assert (await conn.run(connect_command(config, NAME))).exit_status == 64
        inactive = await conn.run("systemctl is-active himdsd")
        assert (inactive.exit_status, inactive.stdout) == (3, "inactive\n")
        denied = await conn.run("systemctl restart himdsd")  # not elevated
        assert denied.exit_status == 1
        assert (await conn.run("sudo -n systemctl restart himdsd")).exit_status == 0
        assert (await conn.run("sudo -n systemctl is-active himdsd")).stdout == "active\n"
        assert (await conn.run(connect_command(config, NAME))).exit_status == 0
        assert lab.hosts[NAME].service_restarts == 1


async def test_restart_service_api_for_winrm(tmp_path: Path) -> None:
    lab = _lab(tmp_path, Scenario(ScenarioKind.SERVICE_STOPPED))
    host = lab.hosts[NAME]
    assert not host.service_running
    assert host.restart_service("himds") and host.service_running
    assert not host.restart_service("spooler")


async def test_agent_missing(tmp_path: Path) -> None:
    async with _lab(tmp_path, Scenario(ScenarioKind.AGENT_MISSING)) as lab, \
            ssh_to(lab, NAME) as conn:
        located = await conn.run("command -v azcmagent")
        assert (located.exit_status, located.stdout) == (1, "")
        assert (await conn.run("test -x /opt/azcmagent/bin/azcmagent")).exit_status == 1
        plain = await conn.run("azcmagent version")
        assert plain.exit_status == 127 and "not found" in str(plain.stderr)
        sudo = await conn.run("sudo -n azcmagent version")
        assert sudo.exit_status == 1
        assert "sudo: azcmagent: command not found" in str(sudo.stderr)


async def test_sudo_password_required(tmp_path: Path) -> None:
    async with _lab(tmp_path, Scenario(ScenarioKind.SUDO_PASSWORD)) as lab, \
            ssh_to(lab, NAME) as conn:
        result = await conn.run("sudo -n id -u")
        assert (result.exit_status, result.stdout) == (1, "")
        assert result.stderr == "sudo: a password is required\n"
        assert (await conn.run("id -u")).stdout == "1000\n"


async def test_sudo_elevates_and_not_root_does_not(tmp_path: Path) -> None:
    async with _lab(tmp_path, Scenario()) as lab, ssh_to(lab, NAME) as conn:
        assert (await conn.run("id -u")).stdout == "1000\n"
        assert (await conn.run("sudo -n id -u")).stdout == "0\n"
        config = await put_config(conn, config_body(lab))
        unelevated = await conn.run(connect_command(config, NAME, sudo=False))
        assert unelevated.exit_status == 18
    async with _lab(tmp_path / "b", Scenario(ScenarioKind.NOT_ROOT)) as lab, \
            ssh_to(lab, NAME) as conn:
        assert (await conn.run("sudo -n id -u")).stdout == "1000\n"


async def test_slow_and_huge_output(tmp_path: Path) -> None:
    huge = Scenario(ScenarioKind.HUGE_OUTPUT, output_bytes=3 * 1024 * 1024)
    plan = ScenarioPlan(default=Scenario(ScenarioKind.SLOW, latency_s=0.2),
                        hosts=(("lab-0002", huge),))
    async with LabFleet(tmp_path, hosts=2, subnet=SUBNET, plan=plan) as lab:
        async with ssh_to(lab, "lab-0001") as conn:
            config = await put_config(conn, config_body(lab))
            assert (await conn.run(connect_command(config, "lab-0001"))).exit_status == 0
        async with ssh_to(lab, "lab-0002") as conn:
            config = await put_config(conn, config_body(lab))
            result = await conn.run(connect_command(config, "lab-0002"))
            assert result.exit_status == 0
            assert len(str(result.stdout)) >= 3 * 1024 * 1024
            assert str(result.stdout).rstrip().endswith("/overview")


def test_every_scenario_has_an_expected_category() -> None:
    for kind in ScenarioKind:
        scenario = Scenario(kind, code="AZCM0041" if kind is ScenarioKind.AZCM else None)
        assert isinstance(scenario.expected_category(), Category)
    assert Scenario(ScenarioKind.HANG).expected_category() is Category.TIMEOUT
    assert Scenario(ScenarioKind.AZCM, code="AZCM0044").expected_category() is \
        Category.RESOURCE_CONFLICT

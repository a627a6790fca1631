"""Acceptance of the engine over WinRM (issue 7): the Windows twin of every SSH acceptance test.

The real CLI runs in a subprocess against the lab's WinRM server (pywinrm over real HTTP on
loopback); the server's own records (shells, commands, agent argv, files) are the evidence.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from fleet.azcm.agent_config import format_tags
from fleet.lab.fleet import LabFleet, lab_addresses
from fleet.lab.scenario import Scenario, ScenarioKind
from fleet.store import RunStore
from tests.engine_support import (
    HOSTILE_TAGS,
    JSON_FIELDS,
    WINRM_SUBNET,
    all_leftovers,
    assert_interrupted,
    assert_no_secret_in_files,
    assert_no_secret_on_hosts,
    commands,
    connect_calls,
    edit_inventory,
    interrupt_run,
    plan,
    run_cli,
    wait_until,
    winrm_server,
    write_playbook,
)

K = ScenarioKind


def windows_lab(tmp_path: Path, windows: int = 1,
                **kwargs: Any) -> AbstractContextManager[LabFleet]:
    return LabFleet.in_thread(tmp_path / "lab", hosts=0, windows=windows, subnet=WINRM_SUBNET,
                              **kwargs)


def test_windows_transient_failure_is_retried_until_connected(tmp_path: Path) -> None:
    with windows_lab(tmp_path, plan=plan(Scenario(K.TRANSIENT, fail_times=2))) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        line = result.outcomes["lab-0001"]
        assert set(JSON_FIELDS) <= set(line)
        assert (line["transport"], line["category"], line["attempts"]) == ("winrm", "connected", 3)
        assert [c.exit_status for c in connect_calls(lab, "lab-0001")] == [26, 26, 0]
        assert not all_leftovers(lab)


def test_windows_stopped_service_is_restarted_once_then_connects(tmp_path: Path) -> None:
    with windows_lab(tmp_path, plan=plan(Scenario(K.SERVICE_STOPPED))) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        line = result.outcomes["lab-0001"]
        assert line["category"] == "connected"
        assert line["remediations"] == ["restart_agent_service"]
        restarts = [c for c in commands(lab, "lab-0001") if "Restart-Service" in c]
        assert len(restarts) == 1
        assert lab.call(lambda: lab.hosts["lab-0001"].service_restarts) == 1


def test_windows_not_administrator_is_elevation_then_connects_as_admin(tmp_path: Path) -> None:
    with windows_lab(tmp_path, plan=plan(Scenario(K.NOT_ROOT))) as lab:
        pb = write_playbook(tmp_path / "pb.yaml")
        result = run_cli(lab, tmp_path, playbook=pb, state_dir=tmp_path / "s1")
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0001") == "elevation"
        assert not connect_calls(lab, "lab-0001")  # refused in preflight, nothing written
        assert not winrm_server(lab).records[lab.hosts["lab-0001"].address].file_writes

        lab.set_scenario("lab-0001", Scenario())  # the login is an Administrator now
        result = run_cli(lab, tmp_path, playbook=pb, state_dir=tmp_path / "s2")
        assert result.returncode == 0, result.describe()
        assert result.category("lab-0001") == "connected"


def test_windows_wrong_secret_trips_the_breaker_in_flight_finish(tmp_path: Path) -> None:
    slow = Scenario(K.SLOW, latency_s=2.0)
    with windows_lab(tmp_path, windows=12, plan=plan(lab_0004=slow)) as lab:
        lab.secret_file.write_text("not-the-lab-secret\n", encoding="utf-8")
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 4})
        # The hosts report the wrong secret: the breaker's path. (The Azure preflight would
        # find it first, without contacting a host: tests/test_azure_preflight.py.)
        result = run_cli(lab, tmp_path, "--no-azure-check", playbook=pb)
        assert result.returncode == 1, result.describe()
        categories = {h: o["category"] for h, o in result.outcomes.items()}
        assert set(categories.values()) == {"credentials", "skipped"}, categories
        failed = [h for h, c in categories.items() if c == "credentials"]
        skipped = [h for h, c in categories.items() if c == "skipped"]
        assert 3 <= len(failed) <= 3 + 4 - 1
        assert categories["lab-0004"] == "credentials"
        assert connect_calls(lab, "lab-0004")[-1].exit_status == 41
        prepared = []  # opened and preflighted ahead, stopped at the agent slot
        for name in skipped:
            assert "circuit breaker" in result.outcomes[name]["cause"]
            assert not connect_calls(lab, name)  # nothing was changed on the host
            if commands(lab, name):
                prepared.append(name)
        # Sessions in flight are at most 2 x forks; lab-0004 held a slot.
        assert len(prepared) <= 2 * 4 - 1
        assert not all_leftovers(lab)  # prepared hosts' config files were removed
        assert len(skipped) >= 12 - 4 - 3


def test_windows_already_connected_issues_no_connect(tmp_path: Path) -> None:
    with windows_lab(tmp_path, plan=plan(Scenario(K.ALREADY_CONNECTED))) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        assert result.category("lab-0001") == "already_connected"
        assert not connect_calls(lab, "lab-0001")
        assert not winrm_server(lab).records[lab.hosts["lab-0001"].address].file_writes


def test_windows_hang_is_cut_and_the_shell_deleted(tmp_path: Path) -> None:
    with windows_lab(tmp_path, windows=2, plan=plan(lab_0001=Scenario(K.HANG))) as lab:
        pb = write_playbook(tmp_path / "pb.yaml", deadlines={"agent_connect_s": 2})
        result = run_cli(lab, tmp_path, playbook=pb)
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0001") == "timeout"
        assert result.category("lab-0002") == "connected"
        server = winrm_server(lab)
        address = lab.hosts["lab-0001"].address

        def settled() -> bool:
            return lab.call(lambda: not server.running_commands(address)
                            and not server.open_shells(address)
                            and not lab.hosts["lab-0001"].running)

        assert wait_until(settled), lab.call(lambda: server.open_shells(address))
        shells = lab.call(lambda: [r for r in server.shell_records.values()
                                   if r.address == address])
        assert shells and all(r.deleted for r in shells)
        calls = connect_calls(lab, "lab-0001")
        assert len(calls) == 1 and calls[0].exit_status is None  # killed, not finished
        assert not all_leftovers(lab)


def test_windows_unreachable_address_is_unreachable(tmp_path: Path) -> None:
    with windows_lab(tmp_path) as lab:
        nowhere = lab_addresses(WINRM_SUBNET, 1, start=254 * 200)[0]

        def add_gone(body: dict[str, Any]) -> None:
            body["hosts"]["win-gone"] = {"address": nowhere, "port": lab.winrm_port,
                                         "transport": "winrm"}

        inventory = edit_inventory(lab, "gone.yaml", add_gone)
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 1, result.describe()
        assert result.category("win-gone") == "unreachable"
        assert result.outcomes["win-gone"]["transport"] == "winrm"
        assert result.category("lab-0001") == "connected"


def test_windows_wrong_password_is_auth(tmp_path: Path) -> None:
    with windows_lab(tmp_path, windows=2) as lab:
        wrong = tmp_path / "wrong_password"
        wrong.write_text("Not-The-Password-1\n", encoding="utf-8")
        wrong.chmod(0o600)

        def wrong_password(body: dict[str, Any]) -> None:
            body["hosts"]["lab-0001"]["winrm"] = {"password": {"file": str(wrong)}}

        inventory = edit_inventory(lab, "wrong.yaml", wrong_password)
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0001") == "auth"
        assert result.outcomes["lab-0001"]["fix"]
        assert commands(lab, "lab-0001") == []
        assert result.category("lab-0002") == "connected"
        assert "Not-The-Password-1" not in result.stdout + result.stderr


def test_windows_shell_hostile_values_reach_the_agent_exactly(tmp_path: Path) -> None:
    with windows_lab(tmp_path) as lab:

        def hostile(body: dict[str, Any]) -> None:
            body["defaults"]["azure"]["tags"] = HOSTILE_TAGS
            body["hosts"]["lab-0001"]["azure"] = {"resource_name": "web-01_prod"}

        inventory = edit_inventory(lab, "hostile.yaml", hostile)
        result = run_cli(lab, tmp_path, "--tags", "note=$env:PATH `ls` ; rm -rf /",
                         inventory=inventory, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        call = connect_calls(lab, "lab-0001")[-1]
        wanted_tags = {**HOSTILE_TAGS, "note": "$env:PATH `ls` ; rm -rf /"}
        assert call.option("tags") == format_tags(wanted_tags)
        assert call.option("resource-name") == "web-01_prod"
        assert call.argv[-3:] == ("--config", call.config_path, "--verbose"), call.argv


def test_windows_ctrl_c_exits_130_and_leaves_no_config(tmp_path: Path) -> None:
    slow = Scenario(K.SLOW, latency_s=30.0)
    with windows_lab(tmp_path, windows=5, plan=plan(slow)) as lab:
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 3})
        result = interrupt_run(lab, tmp_path, pb, in_flight=3)
        assert_interrupted(result, 5)
        server = winrm_server(lab)
        writes = lab.call(lambda: {a: list(r.file_writes) for a, r in server.records.items()})
        # config files were on the 3 connecting hosts, and on those prepared ahead by then ...
        assert 3 <= sum(1 for w in writes.values() if w) <= 5
        assert not all_leftovers(lab)  # ... and are gone
        assert wait_until(lambda: lab.call(lambda: not any(
            server.running_commands(h.address) or server.open_shells(h.address)
            for h in lab.hosts.values())))


def test_windows_preflight_offboard_and_reconnect(tmp_path: Path) -> None:
    scenarios = plan(lab_0001=Scenario(K.ALREADY_CONNECTED),
                     lab_0002=Scenario(K.CONNECTED_ELSEWHERE))
    with windows_lab(tmp_path, windows=3, plan=scenarios) as lab:
        server = winrm_server(lab)
        result = run_cli(lab, tmp_path, command="preflight", state_dir=tmp_path / "s1")
        assert [result.category(n) for n in ("lab-0001", "lab-0002", "lab-0003")] == [
            "already_connected", "resource_conflict", "ready"], result.describe()
        assert not any(connect_calls(lab, n) for n in lab.hosts)
        assert lab.call(lambda: [len(r.file_writes) for r in server.records.values()]) == [0] * 3

        result = run_cli(lab, tmp_path, playbook="reconnect", state_dir=tmp_path / "s2")
        assert result.returncode == 0, result.describe()
        assert {o["category"] for o in result.outcomes.values()} == {
            "already_connected", "connected"}
        assert result.category("lab-0002") == "connected"
        assert lab.call(lambda: lab.hosts["lab-0002"].state.same_target(lab.target))

        result = run_cli(lab, tmp_path, command="offboard", state_dir=tmp_path / "s3")
        assert result.returncode == 0, result.describe()
        assert {o["category"] for o in result.outcomes.values()} == {"disconnected"}
        assert lab.call(lambda: [h.state.connected for h in lab.hosts.values()]) == [False] * 3
        assert not all_leftovers(lab)
        assert_no_secret_on_hosts(lab)


def test_windows_offboard_restarts_a_stopped_service_once(tmp_path: Path) -> None:
    with windows_lab(tmp_path, plan=plan(Scenario(K.ALREADY_CONNECTED))) as lab:

        def stop_himds() -> None:
            lab.hosts["lab-0001"].service_running = False

        lab.call(stop_himds)
        result = run_cli(lab, tmp_path, command="offboard")
        assert result.returncode == 0, result.describe()
        line = result.outcomes["lab-0001"]
        assert (line["category"], line["remediations"]) == (
            "disconnected", ["restart_agent_service"])
        assert lab.call(lambda: lab.hosts["lab-0001"].state.connected) is False
        assert not all_leftovers(lab)


def test_windows_records_hold_no_secret(tmp_path: Path) -> None:
    scenarios = plan(lab_0002=Scenario(K.WRONG_SECRET), lab_0003=Scenario(K.SERVICE_STOPPED))
    with windows_lab(tmp_path, windows=3, plan=scenarios) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 1, result.describe()
        assert [result.category(n) for n in ("lab-0001", "lab-0002", "lab-0003")] == [
            "connected", "credentials", "connected"]
        server = winrm_server(lab)
        writes = lab.call(lambda: [w for r in server.records.values() for w in r.file_writes
                                   if w.path.lower().endswith("\\config.json")])
        # The Windows 0600: only Administrators and SYSTEM may read the config file.
        assert len(writes) == sum(len(connect_calls(lab, n)) for n in lab.hosts) >= 4
        private = (r"BUILTIN\Administrators", r"NT AUTHORITY\SYSTEM")
        assert all(w.acl == private for w in writes), writes
        assert_no_secret_on_hosts(lab)
        assert_no_secret_in_files(lab, result.state_dir, result.stdout, result.stderr)
        assert not all_leftovers(lab)
        with RunStore.open(result.state_dir, create=False) as store:
            rows = store.attempts_for(result.run_id(), "lab-0003")
        assert [r.remediation for r in rows if r.remediation] == ["restart_agent_service"]

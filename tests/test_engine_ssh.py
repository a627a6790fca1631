"""Acceptance of the engine over SSH (issue 5): the real CLI in a subprocess against the lab.

One test per catalog action (retry, remediate, fail_host, fail_run/breaker, already connected,
timeout, unreachable, auth), then the run-level promises: quoting, --json, exit statuses,
Retry-After, remediation once, preflight/offboard/reconnect, Ctrl-C, logs, jump hosts.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from fleet.azcm.agent_config import format_tags
from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind
from fleet.store import RunStore
from tests.engine_support import (
    HOSTILE_TAGS,
    JSON_FIELDS,
    SSH_SUBNET,
    all_leftovers,
    assert_interrupted,
    assert_no_secret_in_files,
    assert_no_secret_on_hosts,
    commands,
    config_leftovers,
    connect_calls,
    edit_inventory,
    interrupt_run,
    plan,
    run_cli,
    running,
    sftp_writes,
    wait_until,
    write_playbook,
)

K = ScenarioKind


def lab_of(tmp_path: Path, hosts: int = 1, **kwargs: Any) -> AbstractContextManager[LabFleet]:
    return LabFleet.in_thread(tmp_path / "lab", hosts=hosts, subnet=SSH_SUBNET, **kwargs)


# ---- one test per catalog action --------------------------------------------------------------


def test_transient_failure_is_retried_until_connected(tmp_path: Path) -> None:
    with lab_of(tmp_path, plan=plan(Scenario(K.TRANSIENT, fail_times=2))) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        line = result.outcomes["lab-0001"]
        assert (line["category"], line["status"], line["attempts"]) == ("connected", "success", 3)
        assert [c.exit_status for c in connect_calls(lab, "lab-0001")] == [26, 26, 0]
        with RunStore.open(result.state_dir, create=False) as store:
            rows = store.attempts_for(result.run_id(), "lab-0001")
        assert [r.category for r in rows if r.stage == "connect" and r.category] == [
            "network", "network", "connected"]
        assert not all_leftovers(lab)


def test_stopped_service_is_restarted_once_then_connects(tmp_path: Path) -> None:
    with lab_of(tmp_path, plan=plan(Scenario(K.SERVICE_STOPPED))) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        line = result.outcomes["lab-0001"]
        assert line["category"] == "connected"
        assert line["remediations"] == ["restart_agent_service"]
        restarts = [c for c in commands(lab, "lab-0001") if "systemctl restart himdsd" in c]
        assert restarts == ["sudo -n systemctl restart himdsd"]
        assert lab.call(lambda: lab.hosts["lab-0001"].service_restarts) == 1


def test_remediation_is_applied_at_most_once_per_host(tmp_path: Path) -> None:
    # himds refuses its port on every connect, even after a restart: one restart, then the host
    # fails with the fix instead of restarting in a loop.
    refused = ('Get "http://localhost:40342/agentstatus": dial tcp 127.0.0.1:40342: connect: '
               "connection refused")
    # AZCM0064 worded as "not responding" asks to wait for himds instead: also once.
    stuck = plan(lab_0001=Scenario(K.AZCM, code="AZCM0064", message=refused),
                 lab_0002=Scenario(K.AZCM, code="AZCM0064"))
    with lab_of(tmp_path, hosts=2, plan=stuck) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 1, result.describe()
        for name, remedy in (("lab-0001", "restart_agent_service"),
                             ("lab-0002", "wait_for_himds")):
            line = result.outcomes[name]
            assert line["category"] == "agent_service"
            assert line["azcm_code"] == "AZCM0064"
            assert line["remediations"] == [remedy]
            assert line["fix"]
            assert len(connect_calls(lab, name)) == 2  # the first try and the one after the fix
        restarts = [c for c in commands(lab, "lab-0001") if "systemctl restart" in c]
        assert len(restarts) == 1
        with RunStore.open(result.state_dir, create=False) as store:
            rows = store.attempts_for(result.run_id(), "lab-0001")
        assert [r.remediation for r in rows if r.remediation] == ["restart_agent_service"]


def test_elevation_without_become_then_connected_with_become(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=2, plan=plan(lab_0002=Scenario(K.NOT_ROOT))) as lab:
        pb = write_playbook(tmp_path / "pb.yaml")

        def no_become(body: dict[str, Any]) -> None:
            body["defaults"]["ssh"]["become"] = False

        plain = edit_inventory(lab, "no-become.yaml", no_become)
        result = run_cli(lab, tmp_path, inventory=plain, playbook=pb, state_dir=tmp_path / "s1")
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0001") == "elevation"
        assert "become" in result.outcomes["lab-0001"]["message"]
        # Refused in preflight: nothing written, no connect issued.
        assert not connect_calls(lab, "lab-0001")
        assert not sftp_writes(lab, "lab-0001")
        # sudo that does not make the user root: the agent would answer AZCM0018.
        assert result.category("lab-0002") == "elevation"

        result = run_cli(lab, tmp_path, playbook=pb, state_dir=tmp_path / "s2")  # become: true
        assert result.category("lab-0001") == "connected", result.describe()
        assert result.category("lab-0002") == "elevation"
        assert connect_calls(lab, "lab-0001")[-1].elevated

        # escalate_with_sudo: the engine itself reruns elevated, and says so.
        lab.set_scenario("lab-0001", Scenario())
        escalate = write_playbook(tmp_path / "esc.yaml", escalate_with_sudo=True)
        result = run_cli(lab, tmp_path, "--limit", "lab-0001", inventory=plain,
                         playbook=escalate, state_dir=tmp_path / "s3")
        line = result.outcomes["lab-0001"]
        assert line["category"] == "connected", result.describe()
        assert line["remediations"] == ["rerun_elevated"]


def test_wrong_secret_trips_the_breaker_and_in_flight_hosts_finish(tmp_path: Path) -> None:
    # lab-0004 is slow: it is still connecting when the breaker opens, and must finish.
    slow = Scenario(K.SLOW, latency_s=2.0)
    with lab_of(tmp_path, hosts=14, plan=plan(lab_0004=slow)) as lab:
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
        assert 3 <= len(failed) <= 3 + 4 - 1  # the threshold, plus what was already in flight
        assert categories["lab-0004"] == "credentials"  # finished, not cut off
        assert connect_calls(lab, "lab-0004")[-1].exit_status == 41
        prepared = []  # opened and preflighted ahead, stopped at the agent slot
        for name in skipped:
            assert "circuit breaker" in result.outcomes[name]["cause"]
            assert not connect_calls(lab, name)  # nothing was changed on the host
            if commands(lab, name):
                prepared.append(name)
                assert not any(" connect " in c for c in commands(lab, name))
        # Sessions in flight are at most 2 x forks (forks in agent slots, forks prepared ahead);
        # lab-0004 held a slot, so at most 7 others were prepared when the breaker opened.
        assert len(prepared) <= 2 * 4 - 1
        assert not all_leftovers(lab)  # prepared hosts' config files were removed
        assert len(skipped) >= 14 - 4 - 3

        # The operator fixes the secret and reruns: failed and skipped hosts all connect.
        lab.secret_file.write_text(lab.secret + "\n", encoding="utf-8")
        rerun = run_cli(lab, tmp_path, command="rerun")
        assert rerun.returncode == 0, rerun.describe()
        assert set(rerun.outcomes) == set(failed) | set(skipped)
        assert {o["category"] for o in rerun.outcomes.values()} == {"connected"}


def test_already_connected_to_same_target_issues_no_connect(tmp_path: Path) -> None:
    with lab_of(tmp_path, plan=plan(Scenario(K.ALREADY_CONNECTED))) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        assert result.category("lab-0001") == "already_connected"
        assert result.outcomes["lab-0001"]["attempts"] == 0
        assert not connect_calls(lab, "lab-0001")
        assert not any(" connect " in c for c in commands(lab, "lab-0001"))
        assert not sftp_writes(lab, "lab-0001")


def test_hang_is_cut_at_the_deadline_and_the_process_is_gone(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=2, plan=plan(lab_0001=Scenario(K.HANG))) as lab:
        pb = write_playbook(tmp_path / "pb.yaml", deadlines={"agent_connect_s": 2})
        result = run_cli(lab, tmp_path, playbook=pb)
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0001") == "timeout"
        assert result.outcomes["lab-0001"]["status"] == "failed"
        assert result.category("lab-0002") == "connected"
        assert wait_until(lambda: not running(lab, "lab-0001")), running(lab, "lab-0001")
        calls = connect_calls(lab, "lab-0001")
        assert len(calls) == 1 and calls[0].exit_status is None  # killed, not finished
        assert not all_leftovers(lab)


def test_unreachable_address_is_unreachable(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=1, unreachable=1) as lab:
        pb = write_playbook(tmp_path / "pb.yaml", deadlines={"connect_timeout_s": 3})
        result = run_cli(lab, tmp_path, playbook=pb)
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0002") == "unreachable"
        assert result.outcomes["lab-0002"]["fix"]
        assert result.category("lab-0001") == "connected"


@pytest.mark.parametrize("accept_new", [False, True])
def test_wrong_host_key_is_refused_as_auth(tmp_path: Path, accept_new: bool) -> None:
    with lab_of(tmp_path, hosts=2) as lab:
        lines = lab.known_hosts_file.read_text(encoding="utf-8").splitlines()
        impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key()
        where = lines[0].split()[0]
        lines[0] = f"{where} {impostor.decode().strip()}"
        lab.known_hosts_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # Trust on first use never overrides a key on file that differs.
        extra = ["--accept-new-host-keys"] if accept_new else []
        result = run_cli(lab, tmp_path, *extra, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0001") == "auth"
        assert "host key" in result.outcomes["lab-0001"]["cause"]
        assert commands(lab, "lab-0001") == []  # no command ever reached the impostor
        assert result.category("lab-0002") == "connected"


def test_unknown_host_key_needs_accept_new_and_is_then_remembered(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=2) as lab:
        lab.known_hosts_file.write_text("", encoding="utf-8")
        pb = write_playbook(tmp_path / "pb.yaml")
        result = run_cli(lab, tmp_path, playbook=pb, state_dir=tmp_path / "s1")
        assert {o["category"] for o in result.outcomes.values()} == {"auth"}, result.describe()

        result = run_cli(lab, tmp_path, "--accept-new-host-keys", playbook=pb,
                         state_dir=tmp_path / "s2")
        assert {o["category"] for o in result.outcomes.values()} == {"connected"}
        # Learnt into the file the inventory names, which verifies them from now on.
        learnt = lab.known_hosts_file.read_text(encoding="utf-8").splitlines()
        assert sorted(line.split()[0] for line in learnt) == sorted(
            f"[{h.address}]:{lab.ssh_port}" for h in lab.hosts.values())
        for name in lab.hosts:
            lab.set_scenario(name, Scenario())
        result = run_cli(lab, tmp_path, playbook=pb, state_dir=tmp_path / "s3")
        assert {o["category"] for o in result.outcomes.values()} == {"connected"}


# ---- run-level promises ---------------------------------------------------------------------

def test_shell_hostile_values_reach_the_agent_exactly(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=1) as lab:

        def hostile(body: dict[str, Any]) -> None:
            body["defaults"]["azure"]["tags"] = HOSTILE_TAGS
            body["hosts"]["lab-0001"]["azure"] = {"resource_name": "web-01_prod"}

        inventory = edit_inventory(lab, "hostile.yaml", hostile)
        result = run_cli(lab, tmp_path, "--tags", "note=$PATH `ls` ; rm -rf /",
                         inventory=inventory, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        call = connect_calls(lab, "lab-0001")[-1]
        wanted_tags = {**HOSTILE_TAGS, "note": "$PATH `ls` ; rm -rf /"}
        assert call.option("tags") == format_tags(wanted_tags)
        assert call.option("resource-name") == "web-01_prod"
        assert call.argv[-3:] == ("--config", call.config_path, "--verbose"), call.argv
        state = lab.call(lambda: lab.hosts["lab-0001"].state)
        assert state.resource_name == "web-01_prod"


@pytest.mark.parametrize(
    "edit",
    [
        {"tags": {"owner": "Jane 'JD' Doe"}},  # azcmagent's --tags cannot carry quotes
        {"tags": {'na"me': "x"}},
        # A comma would split the value into another tag (`a,b=c` is a=... and b=c): refused.
        {"tags": {"owner": "Jane,role=admin"}},
        {"resource_name": "web$(id)"},  # Azure refuses it (AZCM0017)
        {"resource_name": "web 01"},
    ],
)
def test_values_azcmagent_refuses_exit_2_before_contact(tmp_path: Path,
                                                        edit: dict[str, Any]) -> None:
    with lab_of(tmp_path, hosts=1) as lab:
        inventory = edit_inventory(
            lab, "bad.yaml", lambda body: body["hosts"]["lab-0001"].update({"azure": edit}))
        result = run_cli(lab, tmp_path, inventory=inventory)
        assert result.returncode == 2, result.describe()
        assert "lab-0001" in result.stderr and "bad.yaml" in result.stderr
        assert result.stdout == ""
        assert commands(lab, "lab-0001") == []


@pytest.mark.parametrize("tags", ["owner=it's", "k/x=1", 'x="y"'])
def test_refused_command_line_tags_exit_2_before_contact(tmp_path: Path, tags: str) -> None:
    with lab_of(tmp_path, hosts=1) as lab:
        result = run_cli(lab, tmp_path, "--tags", tags)
        assert result.returncode == 2, result.describe()
        assert "tags" in result.stderr and result.stdout == ""
        assert commands(lab, "lab-0001") == []


def test_json_lines_and_exit_statuses(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=3, plan=plan(lab_0003=Scenario(K.RBAC_403))) as lab:
        pb = write_playbook(tmp_path / "pb.yaml")
        result = run_cli(lab, tmp_path, "--limit", "lab-0001:lab-0002", playbook=pb)
        assert result.returncode == 0, result.describe()
        for line in result.stdout.splitlines():
            body = json.loads(line)
            assert set(JSON_FIELDS) <= set(body), body
            assert body["transport"] == "ssh" and body["address"].startswith(SSH_SUBNET)
        assert set(result.outcomes) == {"lab-0001", "lab-0002"}

        result = run_cli(lab, tmp_path, playbook=pb)
        assert result.returncode == 1, result.describe()
        failed = result.outcomes["lab-0003"]
        assert (failed["status"], failed["category"], failed["azcm_code"],
                failed["exit_code"]) == ("failed", "permissions", "AZCM0042", 42)
        assert "role" in failed["fix"].lower() or "Contributor" in failed["fix"]

        before = commands(lab, "lab-0001")
        result = run_cli(lab, tmp_path, playbook=tmp_path / "missing.yaml")
        assert result.returncode == 2 and result.stdout == ""
        lab.secret_file.unlink()  # every secret is read before any host is contacted
        result = run_cli(lab, tmp_path, playbook=pb)
        assert result.returncode == 2 and result.stdout == ""
        assert "sp_secret" in result.stderr and "service_principal" in result.stderr
        assert commands(lab, "lab-0001") == before


def test_throttled_waits_for_retry_after(tmp_path: Path) -> None:
    throttled = Scenario(K.THROTTLED, retry_after_s=2)
    with lab_of(tmp_path, plan=plan(throttled)) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        assert result.outcomes["lab-0001"]["attempts"] == 2
        with RunStore.open(result.state_dir, create=False) as store:
            rows = [r for r in store.attempts_for(result.run_id(), "lab-0001")
                    if r.stage == "connect" and r.category]
        assert [r.category for r in rows] == ["throttled", "connected"]
        first_end = datetime.fromisoformat(rows[0].started_at).timestamp() + rows[0].duration_s
        waited = datetime.fromisoformat(rows[1].started_at).timestamp() - first_end
        assert waited >= 2.0, waited


def test_preflight_playbook_changes_nothing(tmp_path: Path) -> None:
    scenarios = plan(lab_0002=Scenario(K.ALREADY_CONNECTED),
                     lab_0003=Scenario(K.CONNECTED_ELSEWHERE), lab_0004=Scenario(K.SUDO_PASSWORD))
    with lab_of(tmp_path, hosts=4, plan=scenarios) as lab:
        states = lab.call(lambda: {n: h.state for n, h in lab.hosts.items()})
        result = run_cli(lab, tmp_path, command="preflight")
        assert {h: o["category"] for h, o in result.outcomes.items()} == {
            "lab-0001": "ready", "lab-0002": "already_connected",
            "lab-0003": "resource_conflict", "lab-0004": "elevation"}, result.describe()
        assert "onboard would connect" in result.outcomes["lab-0001"]["cause"]
        for name in lab.hosts:
            assert not connect_calls(lab, name)
            assert not sftp_writes(lab, name)
            # The host script makes its private directory for step output even here; no
            # config file goes into it, and it is gone afterwards.
            assert not any("disconnect" in c or "connect.json" in c for c in commands(lab, name))
            assert not config_leftovers(lab.hosts[name])
        assert lab.call(lambda: {n: h.state for n, h in lab.hosts.items()}) == states


def test_offboard_disconnects(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=2, plan=plan(Scenario(K.ALREADY_CONNECTED))) as lab:
        result = run_cli(lab, tmp_path, command="offboard")
        assert result.returncode == 0, result.describe()
        assert {o["category"] for o in result.outcomes.values()} == {"disconnected"}
        assert lab.call(lambda: [h.state.connected for h in lab.hosts.values()]) == [False] * 2
        assert any("disconnect --config" in c for c in commands(lab, "lab-0001"))
        assert not all_leftovers(lab)
        assert_no_secret_on_hosts(lab)


@pytest.mark.parametrize("command", ["onboard", "offboard"])
def test_no_private_directory_fails_the_host_before_any_write(tmp_path: Path,
                                                              command: str) -> None:
    start = Scenario(K.ALREADY_CONNECTED if command == "offboard" else K.SUCCESS)
    with lab_of(tmp_path, plan=plan(start)) as lab:
        (lab.hosts["lab-0001"].fs_root / "tmp").rmdir()  # mktemp -d /tmp/... cannot work
        result = run_cli(lab, tmp_path, command=command,
                         playbook=write_playbook(tmp_path / "pb.yaml", mode=command))
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0001") == "host_prerequisite"
        assert "/tmp" in result.outcomes["lab-0001"]["fix"]
        assert not sftp_writes(lab, "lab-0001")  # the config file went nowhere
        assert not list(lab.hosts["lab-0001"].fs_root.rglob("connect.json"))
        assert not connect_calls(lab, "lab-0001")


def test_offboard_restarts_a_stopped_service_once(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=2, plan=plan(Scenario(K.ALREADY_CONNECTED))) as lab:

        def stop_himds() -> None:
            lab.hosts["lab-0001"].service_running = False

        lab.call(stop_himds)
        result = run_cli(lab, tmp_path, command="offboard")  # the built-in offboard playbook
        assert result.returncode == 0, result.describe()
        line = result.outcomes["lab-0001"]
        assert line["category"] == "disconnected"
        assert line["remediations"] == ["restart_agent_service"]
        assert lab.call(lambda: lab.hosts["lab-0001"].service_restarts) == 1
        assert lab.call(lambda: [h.state.connected for h in lab.hosts.values()]) == [False] * 2
        assert not all_leftovers(lab)


def test_reconnect_playbook_replaces_a_connection_elsewhere(tmp_path: Path) -> None:
    with lab_of(tmp_path, plan=plan(Scenario(K.CONNECTED_ELSEWHERE))) as lab:
        result = run_cli(lab, tmp_path, state_dir=tmp_path / "s1")
        assert result.category("lab-0001") == "resource_conflict", result.describe()
        assert not connect_calls(lab, "lab-0001")

        result = run_cli(lab, tmp_path, playbook="reconnect", state_dir=tmp_path / "s2")
        assert result.returncode == 0, result.describe()
        assert result.category("lab-0001") == "connected"
        state = lab.call(lambda: lab.hosts["lab-0001"].state)
        assert (state.resource_group, state.location) == ("rg-arclab", "westeurope")
        assert lab.hosts["lab-0001"].state.same_target(lab.target)
        assert not all_leftovers(lab)


def test_ctrl_c_exits_130_records_interrupted_and_leaves_no_config(tmp_path: Path) -> None:
    slow = Scenario(K.SLOW, latency_s=30.0)
    with lab_of(tmp_path, hosts=6, plan=plan(slow)) as lab:
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 3})
        result = interrupt_run(lab, tmp_path, pb, in_flight=3)
        assert_interrupted(result, 6)
        written = [n for n in lab.hosts if any(w.path.endswith("/connect.json")
                                               for w in sftp_writes(lab, n))]
        # The hosts in flight (3 in agent slots, up to 3 prepared ahead) had their config file on
        # the host ...
        assert 3 <= len(written) <= 6
        assert not all_leftovers(lab)  # ... and it is gone
        assert wait_until(lambda: not any(running(lab, n) for n in lab.hosts))

        # The interrupted run resumes: every host is worked again and ends connected.
        for name in lab.hosts:
            lab.set_scenario(name, Scenario())
        resumed = run_cli(lab, tmp_path, "--resume", playbook=pb)
        assert resumed.returncode == 0, resumed.describe()
        assert {o["category"] for o in resumed.outcomes.values()} == {"connected"}
        assert len(resumed.outcomes) == 6


def test_run_log_and_transcripts_exist_without_secrets(tmp_path: Path) -> None:
    scenarios = plan(lab_0002=Scenario(K.WRONG_SECRET), lab_0003=Scenario(K.TRANSIENT))
    with lab_of(tmp_path, hosts=3, plan=scenarios) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        folder = result.run_folder()
        log_lines = (folder / "run.log").read_text(encoding="utf-8").splitlines()
        events = [json.loads(line) for line in log_lines]
        finished = {e["host"]: e["category"] for e in events if e["event"] == "host finished"}
        assert finished == {"lab-0001": "connected", "lab-0002": "credentials",
                            "lab-0003": "connected"}
        assert any(e["event"] == "step" and e["stage"] == "connect" for e in events)
        for name in lab.hosts:
            transcript = (folder / "transcripts" / f"{name}.log").read_text(encoding="utf-8")
            assert "connect --config" in transcript and "# outcome:" in transcript
        assert_no_secret_in_files(lab, result.state_dir, result.stdout, result.stderr)
        assert_no_secret_on_hosts(lab)


def test_jump_hosts_two_hops_through_lab_hosts(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=3) as lab:
        port = lab.ssh_port
        first, second, target = (lab.hosts[n] for n in ("lab-0001", "lab-0002", "lab-0003"))

        def via_bastions(body: dict[str, Any]) -> None:
            body["hosts"] = {"lab-0003": body["hosts"]["lab-0003"]}
            body["hosts"]["lab-0003"]["ssh"] = {
                "jump_hosts": [f"arc@{first.address}:{port}", f"{second.address}:{port}"]}

        inventory = edit_inventory(lab, "jump.yaml", via_bastions)
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 0, result.describe()
        assert result.category("lab-0003") == "connected"
        forwards = lab.call(lambda: (list(first.forwards), list(second.forwards)))
        assert [(f.dest_host, f.dest_port) for f in forwards[0]] == [(second.address, port)]
        assert [(f.dest_host, f.dest_port) for f in forwards[1]] == [(target.address, port)]
        assert commands(lab, "lab-0001") == [] and commands(lab, "lab-0002") == []



def test_jump_host_that_cannot_reach_the_target_is_unreachable(tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=2) as lab:
        bastion = lab.hosts["lab-0001"]

        def beyond_bastion(body: dict[str, Any]) -> None:
            # The lab's bastion forwards to loopback only, as a real one may be restricted.
            body["hosts"]["lab-0002"]["address"] = "10.255.255.1"
            body["hosts"]["lab-0002"]["ssh"] = {
                "jump_hosts": [f"{bastion.address}:{lab.ssh_port}"]}

        inventory = edit_inventory(lab, "beyond.yaml", beyond_bastion)
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml"))
        assert result.returncode == 1, result.describe()
        assert result.category("lab-0002") == "unreachable"
        assert "jump host" in result.outcomes["lab-0002"]["cause"]
        assert result.category("lab-0001") == "connected"
        assert [f.allowed for f in lab.call(lambda: list(bastion.forwards))] == [False]

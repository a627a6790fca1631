"""Issue 12 on the lab: the real CLI in a subprocess; the breaker is scoped and confirmed, the
agent's service gets its time, and a stale agent is handled as the playbook allows.

(a) AZCM0041 carrying network messages in three languages never trips the breaker, while a second
service principal with a wrong secret trips it for its own hosts only; (b) a resource group
without RBAC does not stop the other group; (c) three hosts printing AADSTS7000215 among a hundred
of the same service principal stop nobody; (d) himds that answers only after 45 s.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from tests.engine_support import (
    SSH_SUBNET,
    commands,
    connect_calls,
    edit_inventory,
    plan,
    run_cli,
    write_playbook,
)

K = ScenarioKind
SP2 = "5ec0dd00-9999-4abc-8def-0000000000b2"
LOGIN = 'Post "https://login.microsoftonline.com/t/oauth2/token": '
NETWORK_MESSAGES = (
    # English, German and French Windows socket errors behind Go's net/http, as the agent prints
    LOGIN + "read tcp 10.1.0.4:50712->20.190.160.1:443: wsarecv: An existing connection was "
    "forcibly closed by the remote host.",
    LOGIN + "read tcp 10.1.0.4:50713->20.190.160.1:443: wsarecv: Eine vorhandene Verbindung "
    "wurde vom Remotehost geschlossen.",
    LOGIN + "dial tcp 20.190.160.1:443: connectex: Une tentative de connexion a échoué car le "
    "parti connecté n’a pas répondu convenablement au-delà d’une certaine durée.",
)


def lab_of(tmp_path: Path, hosts: int, **kwargs: Any) -> AbstractContextManager[LabFleet]:
    return LabFleet.in_thread(tmp_path / "lab", hosts=hosts, subnet=SSH_SUBNET, **kwargs)


def _name(n: int) -> str:
    return f"lab-{n:04d}"


def test_network_0041_never_trips_and_a_wrong_second_sp_trips_only_its_hosts(
        tmp_path: Path) -> None:
    network = {_name(n): Scenario(K.AZCM, code="AZCM0041", message=NETWORK_MESSAGES[n % 3])
               for n in range(1, 51)}
    second = {_name(n): Scenario(K.WRONG_SECRET) for n in range(51, 61)}
    scenarios = ScenarioPlan(default=Scenario(), hosts=tuple({**network, **second}.items()))
    with lab_of(tmp_path, hosts=60, plan=scenarios) as lab:
        secret2 = tmp_path / "sp2.secret"
        secret2.write_text("a-secret-of-the-second-app\n", encoding="utf-8")
        secret2.chmod(0o600)

        def second_sp(body: dict[str, Any]) -> None:
            for name in second:
                body["hosts"][name]["azure"] = {"service_principal": {
                    "client_id": SP2, "secret": {"file": str(secret2)}}}

        inventory = edit_inventory(lab, "two-sps.yaml", second_sp)
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 6})
        # The host-side breaker is under test: the Azure preflight would stop the second
        # service principal (unknown to the lab's Entra ID) before any host is contacted.
        result = run_cli(lab, tmp_path, "--no-azure-check", inventory=inventory, playbook=pb,
                         timeout=400)
        outcomes = result.outcomes
        assert len(outcomes) == 60, result.describe()
        for name in network:
            assert outcomes[name]["category"] == "network", (name, outcomes[name])
        second_categories = {outcomes[name]["category"] for name in second}
        assert second_categories <= {"credentials", "skipped"}, second_categories
        skipped = [name for name in second if outcomes[name]["category"] == "skipped"]
        assert skipped, "the second service principal's breaker never tripped"
        for name in skipped:
            cause = outcomes[name]["cause"]
            assert "service principal" in cause and SP2 in cause, cause
            assert "AADSTS7000215" in cause, cause
            assert not connect_calls(lab, name)
        failed = [n for n in second if outcomes[n]["category"] == "credentials"]
        assert len(failed) >= 3


def test_a_resource_group_without_rbac_does_not_stop_the_other(tmp_path: Path) -> None:
    denied = {_name(n): Scenario(K.RBAC_403) for n in range(11, 21)}
    with lab_of(tmp_path, hosts=20, plan=ScenarioPlan(Scenario(), hosts=tuple(denied.items()))) \
            as lab:
        def two_groups(body: dict[str, Any]) -> None:
            for name in denied:
                body["hosts"][name]["azure"] = {"resource_group": "rg-norbac"}

        inventory = edit_inventory(lab, "two-rgs.yaml", two_groups)
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 3})
        # The host-side breaker is under test: the Azure preflight would stop rg-norbac's
        # hosts first (the group does not exist in the lab's ARM; tests/test_azure_preflight.py).
        result = run_cli(lab, tmp_path, "--no-azure-check", inventory=inventory, playbook=pb,
                         timeout=300)
        outcomes = result.outcomes
        for n in range(1, 11):
            assert outcomes[_name(n)]["category"] == "connected", outcomes[_name(n)]
        categories = {outcomes[name]["category"] for name in denied}
        assert categories <= {"permissions", "skipped"}, categories
        skipped = [name for name in denied if outcomes[name]["category"] == "skipped"]
        assert skipped
        for name in skipped:
            assert "resource group rg-norbac" in outcomes[name]["cause"]
        failed = [outcomes[n] for n in denied if outcomes[n]["category"] == "permissions"]
        # the fix names the denied action and the scope from the message
        assert all("Microsoft.HybridCompute/machines/read" in o["fix"] for o in failed)
        assert all("rg-norbac" in o["fix"] for o in failed)


def test_three_hostile_hosts_among_a_hundred_stop_nobody(tmp_path: Path) -> None:
    scenarios = ScenarioPlan(default=Scenario(), spread=(Scenario(K.WRONG_SECRET),) * 3)
    with lab_of(tmp_path, hosts=100, plan=scenarios) as lab:
        pb = write_playbook(tmp_path / "pb.yaml")
        result = run_cli(lab, tmp_path, playbook=pb, timeout=400)
        categories = [o["category"] for o in result.outcomes.values()]
        assert len(categories) == 100, result.describe()
        assert categories.count("connected") == 97, result.describe()
        assert categories.count("credentials") == 3
        assert "skipped" not in categories


def test_himds_that_answers_after_45_s_is_waited_for(tmp_path: Path) -> None:
    starting = Scenario(K.HIMDS_STARTING, himds_after_s=45.0)
    with lab_of(tmp_path, hosts=1, plan=plan(starting)) as lab:
        pb = write_playbook(tmp_path / "pb.yaml", deadlines={"host_s": 150})
        result = run_cli(lab, tmp_path, playbook=pb, timeout=240)
        line = result.outcomes["lab-0001"]
        assert line["category"] == "connected", result.describe()
        assert "wait_for_himds" in line["remediations"]
        shows = [c for c in commands(lab, "lab-0001") if " show" in c]
        assert len(shows) >= 3  # polled, not slept once
        assert [c.exit_status for c in connect_calls(lab, "lab-0001")] == [64, 0]


def test_expired_agent_with_a_resource_id_is_reconnected_only_when_allowed(
        tmp_path: Path) -> None:
    with lab_of(tmp_path, hosts=1, plan=plan(Scenario(K.EXPIRED_AGENT))) as lab:
        result = run_cli(lab, tmp_path, playbook=write_playbook(tmp_path / "pb.yaml"))
        line = result.outcomes["lab-0001"]
        assert line["category"] == "stale_resource", result.describe()
        assert "does not allow disconnect_force_local_only" in line["cause"]
        assert "--playbook reconnect" in line["fix"]
        assert not any("force-local-only" in c for c in commands(lab, "lab-0001"))

        allowing = write_playbook(
            tmp_path / "reconnect.yaml",
            remediations=["restart_agent_service", "wait_for_himds",
                          "disconnect_force_local_only"])
        result = run_cli(lab, tmp_path, playbook=allowing, state_dir=tmp_path / "s2")
        line = result.outcomes["lab-0001"]
        assert line["category"] == "connected", result.describe()
        assert "disconnect_force_local_only" in line["remediations"]
        assert any("force-local-only" in c for c in commands(lab, "lab-0001"))

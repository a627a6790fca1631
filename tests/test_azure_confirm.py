"""The breaker asks Azure before it trips (issue 17), on the lab's fake Entra ID and ARM.

Hosts' scenarios print a wrong-secret or RBAC verdict; the fake Azure says whether it is true.
A verdict Azure contradicts stops nobody, even where the share rule alone would have tripped;
one Azure confirms trips at the threshold, even where the share rule alone would not.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from fleet.lab.fleet import LabFleet
from fleet.lab.scenario import Scenario, ScenarioKind, ScenarioPlan
from tests.engine_support import SSH_SUBNET, connect_calls, edit_inventory, run_cli, write_playbook

K = ScenarioKind


def _name(n: int) -> str:
    return f"lab-{n:04d}"


def lab_of(tmp_path: Path, hosts: int, plan: ScenarioPlan) -> AbstractContextManager[LabFleet]:
    return LabFleet.in_thread(tmp_path / "lab", hosts=hosts, subnet=SSH_SUBNET, plan=plan)


def token_requests(lab: LabFleet) -> int:
    return sum(1 for r in lab.azure.state.requests if r.path.endswith("/token"))


def test_a_wrong_secret_verdict_azure_contradicts_stops_nobody(tmp_path: Path) -> None:
    # 8 of the first hosts claim a wrong secret: by share alone (8 of 20) the breaker trips.
    wrong = {_name(n): Scenario(K.WRONG_SECRET) for n in range(1, 9)}
    with lab_of(tmp_path, 20, ScenarioPlan(Scenario(), hosts=tuple(wrong.items()))) as lab:
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 3})
        result = run_cli(lab, tmp_path, playbook=pb, timeout=300)
        outcomes = result.outcomes
        assert len(outcomes) == 20, result.describe()
        categories = {name: o["category"] for name, o in outcomes.items()}
        assert "skipped" not in categories.values(), result.describe()
        assert all(categories[name] == "credentials" for name in wrong), categories
        assert sum(1 for c in categories.values() if c == "connected") == 12
        # The preflight's token, then exactly one more: the breaker asking, once for the scope.
        assert token_requests(lab) == 2
        log = (result.run_folder() / "run.log").read_text(encoding="utf-8")
        assert "breaker asked Azure" in log and "refuted" in log


def test_a_wrong_secret_verdict_azure_confirms_trips_at_the_threshold(tmp_path: Path) -> None:
    wrong = {_name(n): Scenario(K.WRONG_SECRET) for n in range(1, 5)}
    with lab_of(tmp_path, 30, ScenarioPlan(Scenario(), hosts=tuple(wrong.items()))) as lab:
        # The secret expires right after the preflight signed in: the hosts are right.
        lab.azure.state.apps[lab.target.client_id.lower()].tokens_before_expiry = 1
        # share 1.0: without Azure's word the breaker would wait for every started host to fail
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 2},
                            breaker={"threshold": 3, "share": 1.0})
        result = run_cli(lab, tmp_path, playbook=pb, timeout=300)
        outcomes = result.outcomes
        assert len(outcomes) == 30, result.describe()
        skipped = [n for n, o in outcomes.items() if o["category"] == "skipped"]
        assert len(skipped) >= 20, result.describe()
        for name in skipped:
            cause = outcomes[name]["cause"]
            assert "confirmed with Azure" in cause and lab.target.client_id in cause, cause
            assert not connect_calls(lab, name)
        assert token_requests(lab) == 2


def test_an_rbac_verdict_azure_contradicts_does_not_stop_the_group(tmp_path: Path) -> None:
    denied = {_name(n): Scenario(K.RBAC_403) for n in range(1, 7)}
    with lab_of(tmp_path, 12, ScenarioPlan(Scenario(), hosts=tuple(denied.items()))) as lab:
        def group_b(body: dict[str, Any]) -> None:
            for n in range(1, 13):
                body["hosts"][_name(n)]["azure"] = {"resource_group": "rg-b"}

        sub = lab.target.subscription_id
        lab.azure.state.add_resource_group(sub, "rg-b")
        lab.azure.state.assign_role(lab.target.client_id,
                                    f"/subscriptions/{sub}/resourceGroups/rg-b",
                                    "Azure Connected Machine Onboarding")
        inventory = edit_inventory(lab, "rg-b.yaml", group_b)
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 2})
        result = run_cli(lab, tmp_path, inventory=inventory, playbook=pb, timeout=300)
        categories = {n: o["category"] for n, o in result.outcomes.items()}
        assert "skipped" not in categories.values(), result.describe()
        assert [categories[n] for n in denied] == ["permissions"] * 6
        permission_reads = [r for r in lab.azure.state.requests
                            if r.path.endswith("/providers/Microsoft.Authorization/permissions")]
        assert len(permission_reads) == 2  # the preflight's and the breaker's

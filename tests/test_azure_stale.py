"""--delete-stale and create_resource_group (issue 17), on the lab's fake ARM.

The lab's agents create their machines through the fake ARM (``simulate_arm``), so a stale
resource fails a host with AZCM0044 because ARM has it, and deleting it is what lets the host
connect.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from fleet.azure.record import checks_for
from fleet.lab.azure import Machine
from fleet.lab.fleet import LabFleet
from tests.engine_support import SSH_SUBNET, edit_inventory, run_cli, write_playbook
from tests.run_support import contacted

OPERATOR = "0be7a702-0000-4abc-8def-00000000a11f"
ADMIN = "Azure Connected Machine Resource Administrator"


def _rows(result: Any) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {}
    for row in checks_for(result.state_dir / "arcfleet.db", result.run_id()):
        rows.setdefault(row.check, []).append(row)
    return rows


def test_delete_stale_deletes_only_what_the_inventory_claims(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=4, subnet=SSH_SUBNET,
                            simulate_arm=True) as lab:
        state, target = lab.azure.state, lab.target
        sub, rg = target.subscription_id, target.resource_group
        state.add_resource_group(sub, "rg-other")
        state.add_machine(Machine(sub, rg, "lab-0001", status="Disconnected"))
        state.add_machine(Machine(sub, rg, "lab-0002", status="Expired"))
        state.add_machine(Machine(sub, "rg-other", "lab-0003", status="Disconnected"))
        pb = write_playbook(tmp_path / "pb.yaml")
        # Without the flag: ARM still holds the stale machines, the agents fail with AZCM0044.
        first = run_cli(lab, tmp_path, playbook=pb, state_dir=tmp_path / "s1", timeout=300)
        assert first.outcomes["lab-0001"]["azcm_code"] == "AZCM0044", first.describe()
        assert first.outcomes["lab-0002"]["azcm_code"] == "AZCM0044", first.describe()
        assert {r.check for r in _rows(first)["machine_name"]} == {"machine_name"}
        # The onboarding role cannot delete: the operator's own identity (here from AZURE_*)
        # holds the Resource Administrator role and deletes them.
        password = secrets.token_urlsafe(20)
        state.add_app(target.tenant_id, OPERATOR, password)
        state.assign_role(OPERATOR, f"/subscriptions/{sub}/resourceGroups/{rg}", ADMIN)
        monkeypatch.setenv("AZURE_TENANT_ID", target.tenant_id)
        monkeypatch.setenv("AZURE_CLIENT_ID", OPERATOR)
        monkeypatch.setenv("AZURE_CLIENT_SECRET", password)
        second = run_cli(lab, tmp_path, "--delete-stale", "--limit", "lab-0001,lab-0002,lab-0003",
                         playbook=pb, state_dir=tmp_path / "s2", timeout=300)
        categories = {n: o["category"] for n, o in second.outcomes.items()}
        # lab-0003 connected in the first run (its name's clash is in another group)
        assert categories == {"lab-0001": "connected", "lab-0002": "connected",
                              "lab-0003": "already_connected"}, second.describe()
        stale = _rows(second)["stale_machine"]
        assert sorted(r.hosts for r in stale) == [("lab-0001",), ("lab-0002",)]
        assert all(r.status == "fixed" and "operator" in r.cause for r in stale)
        deletes = [r for r in state.requests if r.method == "DELETE"]
        assert len(deletes) == 2 and {r.principal for r in deletes} == {OPERATOR.lower()}
        # The machine in another resource group is not the inventory's: still there.
        assert any(m.resource_group == "rg-other" for m in state.machines.values())
        assert password not in second.stdout + second.stderr


def test_delete_stale_as_the_onboarding_identity_when_it_may_and_refused_without_preflight(
        tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, subnet=SSH_SUBNET,
                            simulate_arm=True) as lab:
        state, target = lab.azure.state, lab.target
        scope = f"/subscriptions/{target.subscription_id}/resourceGroups/{target.resource_group}"
        state.assign_role(target.client_id, scope, ADMIN)
        state.add_machine(Machine(target.subscription_id, target.resource_group, "lab-0002",
                                  status="Expired"))
        pb = write_playbook(tmp_path / "pb.yaml")
        refused = run_cli(lab, tmp_path, "--delete-stale", "--no-azure-check", playbook=pb,
                          state_dir=tmp_path / "s0", timeout=120)
        assert refused.returncode == 2 and "--delete-stale" in refused.stderr, refused.stderr
        assert sum(contacted(lab).values()) == 0
        result = run_cli(lab, tmp_path, "--delete-stale", playbook=pb, timeout=300)
        assert {o["category"] for o in result.outcomes.values()} == {"connected"}, \
            result.describe()
        [row] = _rows(result)["stale_machine"]
        assert row.status == "fixed" and target.client_id in row.cause, row
        deletes = [r for r in state.requests if r.method == "DELETE"]
        assert [r.principal for r in deletes] == [target.client_id.lower()]


def _new_group(lab: LabFleet) -> Path:
    def edit(body: dict[str, Any]) -> None:
        body["defaults"]["azure"]["resource_group"] = "rg-new"
        body["defaults"]["azure"]["create_resource_group"] = True

    return edit_inventory(lab, "new-rg.yaml", edit)


def test_create_resource_group_when_the_inventory_asks(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, subnet=SSH_SUBNET,
                            simulate_arm=True) as lab:
        state, target = lab.azure.state, lab.target
        inventory = _new_group(lab)
        pb = write_playbook(tmp_path / "pb.yaml")
        # The onboarding role on rg-arclab only: the creation is refused, no host contacted.
        refused = run_cli(lab, tmp_path, inventory=inventory, playbook=pb,
                          state_dir=tmp_path / "s1", timeout=300)
        [row] = _rows(refused)["resource_group"]
        assert row.status == "failed" and "az group create" in row.fix, row
        assert sum(contacted(lab).values()) == 0
        offline = run_cli(lab, tmp_path, "--no-azure-check", inventory=inventory, playbook=pb,
                          state_dir=tmp_path / "s2", timeout=120)
        assert offline.returncode == 2 and "create_resource_group" in offline.stderr
        # Contributor on the subscription: created, then its hosts connect (role inherited).
        state.assign_role(target.client_id, f"/subscriptions/{target.subscription_id}",
                          "Contributor")
        created = run_cli(lab, tmp_path, inventory=inventory, playbook=pb,
                          state_dir=tmp_path / "s3", timeout=300)
        assert {o["category"] for o in created.outcomes.values()} == {"connected"}, \
            created.describe()
        rows = _rows(created)
        assert [r.status for r in rows["resource_group"]] == ["fixed"]
        assert [r.status for r in rows["permissions"]] == ["passed"]
        assert "rg-new" in state.subscriptions[target.subscription_id.lower()].resource_groups

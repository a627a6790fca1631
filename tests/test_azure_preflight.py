"""The Azure preflight against the lab's fake Entra ID and ARM (HTTPS on loopback, lab CA).

Each test drives ``arcfleet`` as a subprocess against a lab fleet in a thread, sets the fake
Azure's state the way the scenario needs, and reads the verdict from the run store: the hosts'
outcomes and the ``azure_checks`` rows. "Not contacted" is the lab hosts' own command record.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from fleet.azure.record import checks_for
from fleet.lab.azure import Machine
from fleet.lab.fleet import LabFleet
from tests.run_support import arcfleet, contacted, onboard_args, run_id_of, write_playbook

SUB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def outcomes(state_dir: Path) -> dict[str, tuple[str, str, str]]:
    """host -> (status, category, cause) of the latest outcome of each host."""
    with sqlite3.connect(state_dir / "arcfleet.db") as db:
        rows = db.execute("SELECT host, status, category, cause FROM outcomes ORDER BY rowid")
        return {host: (status, category, cause) for host, status, category, cause in rows}


def checks(state_dir: Path, stderr: str) -> dict[str, list[tuple[str, str, tuple[str, ...]]]]:
    """check name -> [(status, cause, hosts)] of the run that printed ``stderr``."""
    result: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
    for row in checks_for(state_dir / "arcfleet.db", run_id_of(stderr)):
        result.setdefault(row.check, []).append((row.status, row.cause + " | " + row.fix,
                                                 row.hosts))
    return result


def test_expired_secret_stops_only_that_service_principal(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=200) as lab:
        lab.azure.state.apps[lab.target.client_id.lower()].secret_expired = True
        playbook = write_playbook(tmp_path)
        for command in ("preflight", "onboard"):
            state = tmp_path / f"state-{command}"
            args = onboard_args(lab, state, playbook)
            args[0] = command
            if command == "preflight":
                args[args.index("--playbook") + 1] = "preflight"
            result = arcfleet(*args)
            assert result.returncode == 1, result.stderr
            assert "AADSTS7000222" in result.stderr
            found = outcomes(state)
            assert len(found) == 200
            assert {(s, c) for s, c, _ in found.values()} == {("failed", "credentials")}
            assert all("secret has expired" in cause for _, _, cause in found.values())
            credential = checks(state, result.stderr)["credential"]
            assert [(s, len(h)) for s, _, h in credential] == [("failed", 200)]
            # The secret itself is nowhere: terminal, store, run log.
            assert lab.secret not in result.stderr + result.stdout
            for path in state.rglob("*"):
                if path.is_file():
                    assert lab.secret.encode() not in path.read_bytes(), path
        assert sum(contacted(lab).values()) == 0
        # One token request per run, none from any host.
        tokens = [r for r in lab.azure.state.requests if r.path.endswith("/token")]
        assert len(tokens) == 2


def test_resource_group_without_role_skips_only_its_hosts(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=6) as lab:
        # A second resource group with no role for the lab's service principal.
        lab.azure.state.add_resource_group(lab.target.subscription_id, "rg-norole")
        inventory = yaml.safe_load(lab.inventory_path.read_text(encoding="utf-8"))
        for name in ("lab-0004", "lab-0005", "lab-0006"):
            inventory["hosts"][name]["azure"] = {"resource_group": "rg-norole"}
        lab.inventory_path.write_text(yaml.safe_dump(inventory), encoding="utf-8")
        state = tmp_path / "state"
        result = arcfleet(*onboard_args(lab, state, write_playbook(tmp_path)))
        assert result.returncode == 1, result.stderr
        found = outcomes(state)
        assert {h for h, (s, _, _) in found.items() if s == "success"} == {
            "lab-0001", "lab-0002", "lab-0003"}
        for name in ("lab-0004", "lab-0005", "lab-0006"):
            status, category, cause = found[name]
            assert (status, category) == ("failed", "permissions")
            assert "Microsoft.HybridCompute/machines/write" in cause
        permissions = checks(state, result.stderr)["permissions"]
        failed = [row for row in permissions if row[0] == "failed"]
        assert len(failed) == 1
        assert "Azure Connected Machine Onboarding" in failed[0][1]
        assert "rg-norole" in failed[0][1]
        touched = contacted(lab)
        assert all(touched[n] == 0 for n in ("lab-0004", "lab-0005", "lab-0006"))
        assert all(touched[n] > 0 for n in ("lab-0001", "lab-0002", "lab-0003"))
        # The report has the target-level section.
        report = arcfleet("report", "--state-dir", str(state))
        assert report.returncode == 0, report.stderr
        text = report.stdout + report.stderr
        assert "Azure preflight of run" in text
        assert "failed   permissions" in text and "rg-norole" in text


def test_unregistered_provider_reported_then_registered_on_request(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=3) as lab:
        azure = lab.azure.state
        azure.set_registered(lab.target.subscription_id, "Microsoft.HybridConnectivity", False)
        # Registering needs */register/action on the subscription: the onboarding role has not.
        azure.assign_role(lab.target.client_id, f"/subscriptions/{lab.target.subscription_id}",
                          "Contributor")
        playbook = write_playbook(tmp_path)
        first = arcfleet(*onboard_args(lab, tmp_path / "s1", playbook))
        assert first.returncode == 1, first.stderr
        row = checks(tmp_path / "s1", first.stderr)["providers"]
        assert [r[0] for r in row] == ["failed"]
        assert "Microsoft.HybridConnectivity (NotRegistered)" in row[0][1]
        assert "--register-providers" in row[0][1]
        assert sum(contacted(lab).values()) == 0
        second = arcfleet(*onboard_args(lab, tmp_path / "s2", playbook, "--register-providers"))
        assert second.returncode == 0, second.stderr
        row = checks(tmp_path / "s2", second.stderr)["providers"]
        assert [r[0] for r in row] == ["fixed"]
        assert "Microsoft.HybridConnectivity" in azure.subscriptions[
            lab.target.subscription_id.lower()].registered
        assert {s for s, _, _ in outcomes(tmp_path / "s2").values()} == {"success"}


def test_register_refused_without_the_right(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=2) as lab:
        lab.azure.state.set_registered(lab.target.subscription_id, "Microsoft.HybridCompute",
                                       False)
        result = arcfleet(*onboard_args(lab, tmp_path / "s", write_playbook(tmp_path),
                                        "--register-providers"))
        assert result.returncode == 1, result.stderr
        row = checks(tmp_path / "s", result.stderr)["providers"]
        assert [r[0] for r in row] == ["failed"]
        assert "refused" in row[0][1] and "AuthorizationFailed" in row[0][1]
        assert sum(contacted(lab).values()) == 0


def test_name_taken_by_connected_machine_in_another_group(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=3) as lab:
        azure = lab.azure.state
        azure.add_resource_group(lab.target.subscription_id, "rg-other")
        azure.assign_role(lab.target.client_id, f"/subscriptions/{lab.target.subscription_id}",
                          "Reader")
        azure.add_machine(Machine(lab.target.subscription_id, "rg-other", "lab-0002"))
        state = tmp_path / "state"
        result = arcfleet(*onboard_args(lab, state, write_playbook(tmp_path)))
        names = checks(state, result.stderr)["machine_name"]
        assert [(s, h) for s, _, h in names] == [("warning", ("lab-0002",))]
        assert "rg-other" in names[0][1] and "Connected" in names[0][1]
        # Printed before the run's first host line.
        assert result.stderr.index("machine_name") < result.stderr.index("run ")


def test_location_from_provider_metadata_and_offline_syntax_only(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=2) as lab:
        sub = lab.azure.state.subscriptions[lab.target.subscription_id.lower()]
        sub.machine_locations = ("East US",)
        state = tmp_path / "state"
        result = arcfleet(*onboard_args(lab, state, write_playbook(tmp_path)))
        assert result.returncode == 1
        location = checks(state, result.stderr)["location"]
        assert [r[0] for r in location] == ["failed"] and "eastus" in location[0][1]
        assert {c for _, c, _ in outcomes(state).values()} == {"invalid_input"}
        offline = arcfleet(*onboard_args(lab, tmp_path / "off", write_playbook(tmp_path),
                                         "--no-azure-check"))
        assert offline.returncode == 0, offline.stderr
        assert "syntax only" in offline.stderr
        assert [r[0] for r in checks(tmp_path / "off", offline.stderr)["location"]] == [
            "not_done"]


def test_unreachable_azure_is_not_done_and_the_run_goes_on(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=2) as lab:
        lab.azure.state.unavailable = True
        state = tmp_path / "state"
        result = arcfleet(*onboard_args(lab, state, write_playbook(tmp_path)))
        assert result.returncode == 0, result.stderr
        assert "not done" in result.stderr
        assert {s for s, _, _ in outcomes(state).values()} == {"success"}


def test_throttled_arm_is_waited_for(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=2) as lab:
        lab.azure.state.throttle(2, retry_after_s=1)
        state = tmp_path / "state"
        result = arcfleet(*onboard_args(lab, state, write_playbook(tmp_path)))
        assert result.returncode == 0, result.stderr
        statuses = {r.status for r in lab.azure.state.requests}
        assert 429 in statuses
        rows = checks(state, result.stderr)
        assert all(s in ("passed",) for rs in rows.values() for s, _, _ in rs), rows


def test_azure_not_listening_is_not_done(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=2) as lab:
        lab.azure.stop()  # connection refused at the endpoints the inventory names
        state = tmp_path / "state"
        result = arcfleet(*onboard_args(lab, state, write_playbook(tmp_path)))
        assert result.returncode == 0, result.stderr
        credential = checks(state, result.stderr)["credential"]
        assert [r[0] for r in credential] == ["not_done"]
        assert {s for s, _, _ in outcomes(state).values()} == {"success"}
        lab.azure.server = type(lab.azure.server)(lab.azure.state, lab.azure.certificates)
        lab.azure.server.start()  # the lab's stop() stops it again

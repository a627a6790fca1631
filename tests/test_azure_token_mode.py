"""Token mode on the lab (issue 17): the jump host mints ARM access tokens, hosts get only those.

The lab runs with ``simulate_arm``: each simulated agent signs in and creates its machine through
the fake Entra ID and ARM with exactly the credential its --config file gave it. So "the fake
ARM saw only tokens from the hosts" is read from the fake's own request log, and a token that
expired before a host used it would fail that host (AZCM0012).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet.lab.azure import Machine
from fleet.lab.fleet import LabFleet
from tests.engine_support import (
    SSH_SUBNET,
    WINRM_SUBNET,
    assert_no_secret_in_files,
    assert_no_secret_on_hosts,
    connect_calls,
    edit_inventory,
    run_cli,
    write_playbook,
)

MACHINE_PUT = "/providers/Microsoft.HybridCompute/machines/"


def test_200_hosts_in_token_mode_never_see_the_secret_and_the_token_is_refreshed(
        tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=200, subnet=SSH_SUBNET, simulate_arm=True,
                            latency_s=1.0) as lab:
        state = lab.azure.state
        # Shortened token lifetime: the run (200 connects of >= 1 s, 20 at a time) outlives it.
        state.token_lifetime_s = 10
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 20})
        result = run_cli(lab, tmp_path, "--auth", "token", playbook=pb, timeout=600)
        outcomes = result.outcomes
        assert len(outcomes) == 200, result.describe()
        assert {o["category"] for o in outcomes.values()} == {"connected"}, result.describe()
        # Every host's agent got an access token and no secret, neither in its config nor argv.
        for name in lab.hosts:
            calls = connect_calls(lab, name)
            assert calls, name
            for call in calls:
                assert "access-token" in call.credentials, (name, call.credentials)
                assert "service-principal-secret" not in call.credentials, name
                assert call.option("service-principal-id") is None, name
        assert_no_secret_on_hosts(lab)
        # The fake Azure: no host asked Entra ID for a token (they had no secret to ask with);
        # every host request to ARM carried a token the jump host had minted.
        log = (result.run_folder() / "run.log").read_text(encoding="utf-8")
        minted = log.count("access token minted")
        assert minted >= 2 and '"refresh": true' in log, log[-2000:]
        from_hosts = [r for r in state.requests if r.user_agent.startswith("azcmagent-lab/")]
        assert not [r for r in from_hosts if r.path.endswith("/token")]
        assert all(r.token for r in from_hosts)
        puts = [r for r in from_hosts if MACHINE_PUT in r.path and r.method == "PUT"]
        assert len(puts) == 200 and all(r.status == 200 for r in puts)
        assert len({r.principal for r in puts}) == 1  # the service principal's tokens
        assert len({r.token for r in puts}) >= 2  # hosts after the refresh got the new token
        assert len(state.machines) == 200
        # Tokens are secrets: none in the store, run log, transcripts, reports or terminal.
        issued = list(state.tokens)
        assert issued
        for path in result.state_dir.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(t.encode() in data for t in issued), path
        assert not any(t in result.stdout + result.stderr for t in issued)
        assert_no_secret_in_files(lab, result.state_dir, result.stdout, result.stderr)


def test_arm_state_decides_conflicts_and_denials_in_token_mode(tmp_path: Path) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=3, subnet=SSH_SUBNET,
                            simulate_arm=True) as lab:
        target = lab.target
        # lab-0002's name is taken in the target resource group by a Connected machine: the
        # agent's GET finds it (AZCM0044), whatever the host's own scenario says.
        lab.azure.state.add_machine(Machine(target.subscription_id, target.resource_group,
                                            "lab-0002"))
        pb = write_playbook(tmp_path / "pb.yaml")
        result = run_cli(lab, tmp_path, "--auth", "token", "--no-azure-check", playbook=pb,
                         timeout=300)
        outcomes = result.outcomes
        assert outcomes["lab-0001"]["category"] == "connected", result.describe()
        assert outcomes["lab-0003"]["category"] == "connected", result.describe()
        assert outcomes["lab-0002"]["azcm_code"] == "AZCM0044", outcomes["lab-0002"]
        # The role removed from the group: ARM refuses the agent's read (AuthorizationFailed).
        scope = f"/subscriptions/{target.subscription_id}/resourceGroups/{target.resource_group}"
        lab.azure.state.remove_roles(target.client_id, scope)
        denied = run_cli(lab, tmp_path, "--auth", "token", "--no-azure-check", "--limit",
                         "lab-0002", playbook=pb, state_dir=tmp_path / "state-denied",
                         timeout=300)
        assert denied.outcomes["lab-0002"]["category"] == "permissions", denied.describe()
        assert "rg-arclab" in denied.outcomes["lab-0002"]["fix"], denied.outcomes
        lab.azure.state.assign_role(target.client_id, scope, "Azure Connected Machine Onboarding")
        # The onboarding role may not delete machines: ARM refuses the disconnect's DELETE.
        offboard = run_cli(lab, tmp_path, "--auth", "token", command="offboard",
                           state_dir=tmp_path / "state-off", timeout=300)
        off = offboard.outcomes
        assert off["lab-0001"]["category"] == "permissions", offboard.describe()
        assert len(lab.azure.state.machines) == 3  # nothing deleted without the role


def test_windows_hosts_in_token_mode_get_a_token_and_offboard_with_one(tmp_path: Path) -> None:
    # WinRM hosts take the step-by-step path (config file, then the agent), not the host script.
    with LabFleet.in_thread(tmp_path / "lab", hosts=0, windows=2, subnet=WINRM_SUBNET,
                            simulate_arm=True) as lab:
        state, target = lab.azure.state, lab.target
        state.assign_role(target.client_id, f"/subscriptions/{target.subscription_id}/"
                          f"resourceGroups/{target.resource_group}",
                          "Azure Connected Machine Resource Administrator")
        pb = write_playbook(tmp_path / "pb.yaml")
        result = run_cli(lab, tmp_path, "--auth", "token", playbook=pb, timeout=300)
        assert {o["category"] for o in result.outcomes.values()} == {"connected"}, \
            result.describe()
        for name in lab.hosts:
            [call] = connect_calls(lab, name)
            assert "access-token" in call.credentials and \
                "service-principal-secret" not in call.credentials, call.credentials
        assert len(state.machines) == 2
        off = run_cli(lab, tmp_path, "--auth", "token", command="offboard",
                      state_dir=tmp_path / "state-off", timeout=300)
        assert {o["category"] for o in off.outcomes.values()} == {"disconnected"}, \
            off.describe()
        assert not state.machines  # deleted through the fake ARM, with the hosts' tokens
        deletes = [r for r in state.requests if r.method == "DELETE"]
        assert len(deletes) == 2 and all(r.user_agent.startswith("azcmagent-lab/")
                                         and r.token for r in deletes)
        assert_no_secret_on_hosts(lab)


def test_token_mode_with_a_certificate_sends_no_key_material(tmp_path: Path) -> None:
    # The jump host signs its token request with the certificate (a client assertion the fake
    # Entra ID verifies); the hosts get the token, neither the certificate nor a path to it.
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, subnet=SSH_SUBNET,
                            simulate_arm=True) as lab:
        made = lab.call(lambda: lab.add_sp_certificate())

        def certificate(body: dict[str, Any]) -> None:
            body["defaults"]["azure"]["service_principal"] = {
                "client_id": lab.target.client_id, "certificate_file": str(made.path)}

        inventory = edit_inventory(lab, "cert.yaml", certificate)
        result = run_cli(lab, tmp_path, "--auth", "token", inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml"), timeout=300)
        assert {o["category"] for o in result.outcomes.values()} == {"connected"}, \
            result.describe()
        for name in lab.hosts:
            [call] = connect_calls(lab, name)
            assert call.credentials == ("access-token", "config"), call.credentials
            assert call.option("service-principal-cert") is None
            writes = lab.call(lambda n=name: list(lab.hosts[n].sftp_writes))
            assert not [w for w in writes if "sp-cert" in w.path], writes
            scripts = lab.call(lambda n=name: "\n".join(lab.hosts[n].scripts))
            assert "BEGIN" not in scripts and made.thumbprint not in scripts
        puts = [r for r in lab.azure.state.requests
                if r.user_agent.startswith("azcmagent-lab/") and r.method == "PUT"]
        assert len(puts) == 2 and all(r.token and r.status == 200 for r in puts)


def test_a_refresh_entra_refuses_fails_the_next_hosts_as_credentials(tmp_path: Path) -> None:
    # The secret expires after the first token: the hosts served before the refresh connect,
    # the refresh is refused, the next hosts end `credentials` without their agent running,
    # and the breaker stops the rest of that service principal's hosts.
    with LabFleet.in_thread(tmp_path / "lab", hosts=12, subnet=SSH_SUBNET, simulate_arm=True,
                            latency_s=1.0) as lab:
        state = lab.azure.state
        state.token_lifetime_s = 4
        state.apps[lab.target.client_id.lower()].tokens_before_expiry = 1
        pb = write_playbook(tmp_path / "pb.yaml", pacing={"forks": 2})
        result = run_cli(lab, tmp_path, "--auth", "token", "--no-azure-check", playbook=pb,
                         timeout=300)
        outcomes = result.outcomes
        categories = [o["category"] for o in outcomes.values()]
        assert len(categories) == 12, result.describe()
        assert "connected" in categories and "skipped" in categories, categories
        refused = [n for n, o in outcomes.items() if o["category"] == "credentials"]
        assert refused, categories
        for name in refused:
            assert "AADSTS7000222" in str(outcomes[name]), outcomes[name]
            assert not connect_calls(lab, name)  # the agent never ran without a token
        assert lab.secret not in result.stdout + result.stderr

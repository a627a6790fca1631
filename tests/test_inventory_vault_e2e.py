"""End to end: an Ansible inventory whose WinRM password is an inline `!vault` value, read by
the ansible engine (ansible-core's ansible-inventory and ansible-vault, the real programs), onboards
a lab Windows host; the password appears nowhere arcfleet writes or prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from hostile_support import arcfleet, outcomes, write_playbook
from test_secrets_sentinel import files_under, leaks

from fleet.lab.fleet import LabFleet

BIN = Path(sys.executable).parent


def _vault_string(name: str, value: str, password_file: Path) -> str:
    result = subprocess.run(
        # The value on stdin: never in argv, and a value starting with "-" is not an option.
        [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file",
         str(password_file), "--stdin-name", name],
        input=value, capture_output=True, text=True, check=True, timeout=120)
    return result.stdout


def _vault_inventory(lab: LabFleet, tmp_path: Path, vault_password: Path) -> tuple[Path, str]:
    """An Ansible YAML inventory of the lab's Windows host whose WinRM password is `!vault`."""
    lab_inventory = yaml.safe_load(lab.inventory_path.read_text())
    name, entry = next((n, h) for n, h in lab_inventory["hosts"].items()
                       if h.get("transport") == "winrm")
    azure = lab_inventory["defaults"]["azure"]
    encrypted = _vault_string("ansible_password", lab.winrm_password, vault_password)
    inventory = tmp_path / "hosts.yml"
    lines = [
        "all:", "  hosts:", f"    {name}:",
        f"      ansible_host: {entry['address']}", f"      ansible_port: {entry['port']}",
        "      ansible_connection: winrm", "      ansible_winrm_transport: basic",
        "      ansible_winrm_scheme: http", "      arc_winrm_allow_basic_over_http: true",
        "      ansible_winrm_server_cert_validation: ignore",
        "      ansible_user: arcadmin",
        *["      " + line for line in encrypted.splitlines()],
        "  vars:",
        f"    arc_tenant_id: {azure['tenant_id']}",
        f"    arc_subscription_id: {azure['subscription_id']}",
        f"    arc_resource_group: {azure['resource_group']}",
        f"    arc_location: {azure['location']}",
        f"    arc_sp_client_id: {azure['service_principal']['client_id']}",
        f"    arc_sp_secret_file: {lab.work_dir / 'sp_secret'}",
    ]
    inventory.write_text("\n".join(lines) + "\n")
    return inventory, name


def _ansible_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "ansible.cfg").write_text("")
    return {"PATH": f"{BIN}:/usr/bin:/bin",
            "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}


def test_vault_password_onboards_and_never_leaks(tmp_path: Path) -> None:
    vault_password = tmp_path / "vault-password"
    vault_password.write_text("the-vault-password\n")
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, windows=1) as lab:
        inventory, name = _vault_inventory(lab, tmp_path, vault_password)
        env = {**_ansible_env(tmp_path), "ARCFLEET_INVENTORY_ENGINE": "ansible",
               "ANSIBLE_VAULT_PASSWORD_FILE": str(vault_password)}
        state = tmp_path / "state"
        run = arcfleet(
            "onboard", "-i", inventory, "--playbook", write_playbook(tmp_path),
            "--state-dir", state, "--json", env=env, timeout=300)
        shown = arcfleet("inventory", "show", "--json", "-i", inventory, env=env, timeout=300)
        report = arcfleet("report", "--format", "json", "--all", "--state-dir", state)
    assert outcomes(run)[name]["category"] == "connected", run.stderr
    assert "vault:ansible_password" in shown.stdout, shown.stderr
    sentinels = {"winrm password": lab.winrm_password}
    problems = [f"{p}: {hit}" for p in files_under(state) for hit in leaks(p.read_bytes(),
                                                                           sentinels)]
    for label, text in (("onboard", run.stdout + run.stderr),
                        ("show", shown.stdout + shown.stderr),
                        ("report", report.stdout + report.stderr)):
        problems += [f"{label}: {hit}" for hit in leaks(text.encode(), sentinels)]
    assert problems == []


def test_engine_and_vault_flags_on_the_run_commands(tmp_path: Path) -> None:
    """--inventory-engine and --vault-password-file work on preflight and onboard as on
    `inventory show` (no environment variables), and a rerun recalls them."""
    vault_password = tmp_path / "vault-password"
    vault_password.write_text("the-vault-password\n")
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, windows=1) as lab:
        inventory, name = _vault_inventory(lab, tmp_path, vault_password)
        env = _ansible_env(tmp_path)
        state = tmp_path / "state"
        flags = ("--inventory-engine", "ansible", "--vault-password-file", vault_password)
        without = arcfleet("preflight", "-i", inventory, "--state-dir", state, "--json",
                           env=env, timeout=300)
        preflight = arcfleet("preflight", "-i", inventory, *flags, "--state-dir", state,
                             "--json", env=env, timeout=300)
        onboard = arcfleet("onboard", "-i", inventory, *flags, "--playbook",
                           write_playbook(tmp_path), "--state-dir", state, "--json",
                           "--limit", "@ready", env=env, timeout=300)
        again = arcfleet("rerun", "--state-dir", state, "--json", env=env, timeout=300)
    assert without.returncode == 2 and "vault" in without.stderr, without.stderr
    assert outcomes(preflight)[name]["category"] == "ready", preflight.stderr
    assert outcomes(onboard)[name]["category"] == "connected", onboard.stderr
    # the rerun read the inventory with the recalled engine and vault file
    assert again.returncode == 0 and "vault" not in again.stderr.lower(), again.stderr

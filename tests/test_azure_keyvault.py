"""Key Vault secret references (issue 17) against the lab's fake Key Vault, Entra ID and ARM.

The operator's own identity (here: ``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET`` in the environment,
one of DefaultAzureCredential's sources) reads the service principal's secret from the vault once
per run; the hosts then connect with it. The value is a secret like any other: nowhere in the
store, logs, reports or terminal.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet.lab.fleet import LabFleet
from tests.engine_support import (
    ROOT,
    SSH_SUBNET,
    assert_no_secret_in_files,
    assert_no_secret_on_hosts,
    cli_env,
    edit_inventory,
    run_cli,
    write_playbook,
)
from tests.run_support import contacted

OPERATOR = "0be7a702-0000-4abc-8def-00000000a11f"


def _vault_inventory(lab: LabFleet, url: str) -> Path:
    def from_vault(body: dict[str, Any]) -> None:
        body["defaults"]["azure"]["service_principal"]["secret"] = {"keyvault": url}

    return edit_inventory(lab, "vault.yaml", from_vault)


def _operator(lab: LabFleet, monkeypatch: pytest.MonkeyPatch, *, reader: bool) -> str:
    password = secrets.token_urlsafe(20)
    state = lab.azure.state
    state.add_app(lab.target.tenant_id, OPERATOR, password)
    if reader:
        state.allow_keyvault(OPERATOR)
    monkeypatch.setenv("AZURE_TENANT_ID", lab.target.tenant_id)
    monkeypatch.setenv("AZURE_CLIENT_ID", OPERATOR)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", password)
    return password


def test_the_secret_is_read_from_key_vault_once(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=4, subnet=SSH_SUBNET) as lab:
        state = lab.azure.state
        state.set_keyvault_secret("arc-onboarding", "an-old-value")
        state.set_keyvault_secret("arc-onboarding", lab.secret)  # the current version
        password = _operator(lab, monkeypatch, reader=True)
        inventory = _vault_inventory(lab, f"{lab.azure.url}/secrets/arc-onboarding")
        result = run_cli(lab, tmp_path, inventory=inventory,
                         playbook=write_playbook(tmp_path / "pb.yaml"), timeout=300)
        assert {o["category"] for o in result.outcomes.values()} == {"connected"}, \
            result.describe()
        reads = [r for r in state.requests if r.path.startswith("/secrets/") and r.status == 200]
        assert len(reads) == 1 and reads[0].principal == OPERATOR.lower()
        assert_no_secret_on_hosts(lab)
        assert_no_secret_in_files(lab, result.state_dir, result.stdout, result.stderr)
        for path in result.state_dir.rglob("*"):
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path


def test_a_named_version_and_a_refused_read(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with LabFleet.in_thread(tmp_path / "lab", hosts=2, subnet=SSH_SUBNET) as lab:
        state = lab.azure.state
        version = state.set_keyvault_secret("arc-onboarding", lab.secret)
        state.set_keyvault_secret("arc-onboarding", "a-newer-but-wrong-value")
        _operator(lab, monkeypatch, reader=False)
        url = f"{lab.azure.url}/secrets/arc-onboarding/{version}"
        inventory = _vault_inventory(lab, url)
        argv = [sys.executable, "-m", "fleet", "onboard", "-i", str(inventory), "--state-dir",
                str(tmp_path / "state")]
        refused = subprocess.run(argv, cwd=ROOT, env=cli_env(tmp_path), capture_output=True,
                                 text=True, timeout=120, check=False)
        assert refused.returncode == 2, refused.stderr
        assert "Key Vault Secrets User" in refused.stderr and url in refused.stderr
        assert "Traceback" not in refused.stderr
        assert sum(contacted(lab).values()) == 0
        # Allowed now: the named (older) version is the one used, and it is the right one.
        state.allow_keyvault(OPERATOR)
        result = run_cli(lab, tmp_path, inventory=inventory, state_dir=tmp_path / "state2",
                         playbook=write_playbook(tmp_path / "pb.yaml"), timeout=300)
        assert {o["category"] for o in result.outcomes.values()} == {"connected"}, \
            result.describe()


@pytest.mark.parametrize("url", [
    "https://evil.example.com/secrets/arc",  # not a Key Vault domain: the token would go there
    "http://ops.vault.azure.net/secrets/arc",  # not HTTPS
    "https://ops.vault.azure.net/keys/arc",  # not a secret
    "https://ops.vault.azure.net/secrets/arc/not-a-version",
])
def test_a_bad_key_vault_url_is_bad_input(tmp_path: Path, url: str) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "arcfleet: 1\nhosts:\n  web1:\n    address: 127.0.0.1\n    azure:\n"
        "      service_principal:\n        client_id: 0be7a702-0000-4abc-8def-00000000a11f\n"
        f"        secret: {{keyvault: '{url}'}}\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "fleet", "inventory", "validate", "-i",
                             str(inventory)], cwd=ROOT, env=cli_env(tmp_path),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "web1" in result.stderr and "keyvault" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

"""The shim as a program (no sshd needed): host chosen by SSH_CONNECTION, state persisted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.lab.host import LAB_CLIENT_ID, LAB_SUBSCRIPTION_ID, LAB_TENANT_ID

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="connect needs the shim to run as root")


def _shim(root: Path, address: str, *args: str, scenario: Path | None = None
          ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SSH_CONNECTION": f"127.0.0.1 40000 {address} 22",
           "ARCFLEET_LAB_ROOT": str(root)}
    if scenario is not None:
        env["ARCFLEET_LAB_SCENARIO"] = str(scenario)
    return subprocess.run([sys.executable, "-m", "fleet", "lab", "agent-shim", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_shim_state_scenario_and_secret(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    root.mkdir()
    (root / "target.json").write_text(json.dumps({"secret": "right-secret"}))
    scenario = tmp_path / "scenarios.yaml"
    scenario.write_text("default: success\nhosts:\n  127.21.3.2: rbac_403\n")
    config = tmp_path / "connect.json"

    def write_config(secret: str) -> None:
        config.write_text(json.dumps({
            "service-principal-id": LAB_CLIENT_ID, "service-principal-secret": secret,
            "tenant-id": LAB_TENANT_ID, "subscription-id": LAB_SUBSCRIPTION_ID,
            "resource-group": "rg-arclab", "location": "westeurope"}))

    write_config("wrong-secret")
    wrong = _shim(root, "127.21.3.1", "connect", "--config", str(config), scenario=scenario)
    assert wrong.returncode == 41 and "AADSTS7000215" in wrong.stdout
    write_config("right-secret")
    first = _shim(root, "127.21.3.1", "connect", "--config", str(config), scenario=scenario)
    assert first.returncode == 0, first.stdout
    again = _shim(root, "127.21.3.1", "connect", "--config", str(config), scenario=scenario)
    assert again.returncode == 67
    shown = json.loads(_shim(root, "127.21.3.1", "show", "--json", scenario=scenario).stdout)
    assert shown["status"] == "Connected"
    other = _shim(root, "127.21.3.2", "connect", "--config", str(config), scenario=scenario)
    assert other.returncode == 42 and "AuthorizationFailed" in other.stdout
    log = root / "127.21.3.1" / "var/opt/azcmagent/log/azcmagent.log"
    assert "Exit Code:  AZCM0067" in log.read_text()
    assert "right-secret" not in log.read_text()

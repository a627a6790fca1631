"""The ansible engine and engine choice, through the real `arcfleet` process and ansible-core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.inventory import load_inventory
from fleet.inventory.ansible_engine import VaultOptions

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "ansible_corpus"
BIN = Path(sys.executable).parent
VAULT_PLAINTEXT = "S3cret-from-vault"  # what 40-vault-inline-password encrypts


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ANSIBLE_"))}
    (tmp_path / "ansible.cfg").write_text("")
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "HOME": str(tmp_path),
                "ANSIBLE_HOME": str(tmp_path / ".ansible"),
                "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
                "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")})
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_vault_password_is_a_secret_in_memory_only(tmp_path: Path) -> None:
    case = CORPUS / "40-vault-inline-password"
    env = environment(tmp_path)
    vault = VaultOptions(password_files=(str(case / "vault-password"),))
    inventory = load_inventory([case / "inv.yml"], env=env, vault=vault)
    host = inventory.hosts[0]
    password = host.winrm.password
    assert password is not None and password.describe() == "vault:ansible_password"
    assert password.resolve() == VAULT_PLAINTEXT
    assert VAULT_PLAINTEXT not in repr(host) + str(host.model_dump()) + host.model_dump_json()
    # The CLI shows the reference, never the value.
    result = run(env, "inventory", "show", "--json", "-i", str(case / "inv.yml"),
                 "--vault-password-file", str(case / "vault-password"))
    assert result.returncode == 0, result.stderr
    assert VAULT_PLAINTEXT not in result.stdout + result.stderr
    shown = json.loads(result.stdout)["hosts"][0]
    assert shown["credential"].endswith("winrm vault:ansible_password")


def test_wrong_vault_password_is_one_line_exit_2(tmp_path: Path) -> None:
    case = CORPUS / "40-vault-inline-password"
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    result = run(environment(tmp_path), "inventory", "validate", "-i", str(case / "inv.yml"),
                 "--vault-password-file", str(wrong))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_native_engine_refuses_a_plugin_naming_the_engine(tmp_path: Path) -> None:
    case = CORPUS / "42-constructed-plugin" / "inv"
    result = run(environment(tmp_path), "inventory", "validate", "-i", str(case),
                 "--inventory-engine", "native")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "02-constructed.yml" in lines[0] and "--inventory-engine ansible" in lines[0]


@pytest.mark.parametrize("engine", ["auto", "ansible"])
def test_auto_and_ansible_engines_run_the_plugin(tmp_path: Path, engine: str) -> None:
    case = CORPUS / "42-constructed-plugin" / "inv"
    result = run(environment(tmp_path), "inventory", "validate", "-i", str(case),
                 "--inventory-engine", engine)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 hosts OK"


def test_ansible_engine_without_ansible_inventory_is_refused(tmp_path: Path) -> None:
    env = environment(tmp_path)
    env["PATH"] = str(tmp_path / "empty")  # no ansible-inventory anywhere
    result = subprocess.run([sys.executable, "-m", "fleet", "inventory", "validate", "-i",
                             str(CORPUS / "01-ini-basic" / "hosts"), "--inventory-engine",
                             "ansible"], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=120)
    assert result.returncode == 2
    assert "ansible-inventory is not on PATH" in result.stderr


def test_auto_engine_sees_a_vaulted_vars_file(tmp_path: Path) -> None:
    """Without a vault password, auto still picks ansible-inventory (a native read could only
    refuse) and its failure is one error line."""
    case = CORPUS / "41-vault-encrypted-group-vars"
    env = environment(tmp_path)
    result = run(env, "inventory", "validate", "-i", str(case / "hosts"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ansible-inventory failed" in lines[0], result.stderr
    ok = run(env, "inventory", "validate", "-i", str(case / "hosts"),
             "--vault-password-file", str(case / "vault-password"))
    assert ok.returncode == 0, ok.stderr

"""`arcfleet inventory show|validate`, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _inventory_util import ARC_VARS_INI, arcfleet, write

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True,
                          cwd=REPO, env={**clean, **(env or {})}, timeout=60)


def test_validate_ok(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[web]\nweb[1:3]\n")
    result = run("inventory", "validate", "-i", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3 hosts OK"


def test_validate_problems_exit_2_one_line_each(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yaml", arcfleet(
        "hosts:\n  a: {azure: {location: atlantis!}}\n  b: {port: 0}\n"
        "  c: {winrm: {password: 'TopSecret99'}}\n"))
    result = run("inventory", "validate", "-i", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith(f"error: {path}: host ") for line in lines)
    assert any("host a: field azure.location" in line for line in lines)
    assert any("host b: field port" in line for line in lines)
    assert "TopSecret99" not in result.stderr + result.stdout


def test_show_json_limit_and_references(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[web]\nw1\nw2\n[db]\nd1\n")
    result = run("inventory", "show", "-i", str(path), "--limit", "web:!w2", "--json",
                 "--tag", "cli=yes", env={"ARC_SP_SECRET": "ValueNeverShown"})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [h["name"] for h in doc["hosts"]] == ["w1"]
    host = doc["hosts"][0]
    assert host["credential"] == "sp env:ARC_SP_SECRET"
    assert host["azure"]["tags"] == {"cli": "yes"}
    assert doc["sources"] == [str(path)] and len(doc["digest"]) == 64
    assert "ValueNeverShown" not in result.stdout


def test_show_table(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[web]\nweb1 ansible_host=10.0.0.7\n")
    result = run("inventory", "show", "-i", str(path))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "web1" in line)
    for cell in ("10.0.0.7:22", "ssh", "linux", "arc", "rg-arc", "westeurope",
                 "env:ARC_SP_SECRET"):
        assert cell in row


def test_limit_matching_nothing_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[web]\nweb1\n")
    result = run("inventory", "show", "-i", str(path), "--limit", "nothere")
    assert result.returncode == 2
    assert "nothere" in result.stderr and "--limit" in result.stderr


def test_bad_override_flag_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[web]\nweb1\n")
    result = run("inventory", "validate", "-i", str(path), "--location", "mars-1")
    assert result.returncode == 2
    assert "<command line>" in result.stderr and "location" in result.stderr

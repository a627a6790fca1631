"""`inventory validate` refuses a WinRM auth whose Python packages are not installed, naming the
extra; with the packages installed the same inventory validates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import winrm.transport
from _inventory_util import ARC_VARS_INI, write

REPO = Path(__file__).resolve().parents[1]
INSTALLED = {"kerberos": winrm.transport.HAVE_KERBEROS, "credssp": winrm.transport.HAVE_CREDSSP}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True,
                          cwd=REPO, env=clean, timeout=60)


@pytest.mark.parametrize("auth", ["kerberos", "credssp"])
def test_auth_without_its_extra_is_refused_naming_the_extra(tmp_path: Path, auth: str) -> None:
    path = write(tmp_path, "hosts", f"{ARC_VARS_INI}\n[win]\nw1 ansible_connection=winrm "
                 f"ansible_winrm_transport={auth} arc_winrm_password_env=PW\n")
    result = run("inventory", "validate", "-i", str(path))
    if INSTALLED[auth]:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: host w1: field winrm.auth")
    assert f"arcfleet[{auth}]" in lines[0]
    assert "Traceback" not in result.stderr

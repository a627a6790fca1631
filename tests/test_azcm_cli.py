"""``arcfleet codes`` as an operator runs it: a real subprocess of ``python -m fleet``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SAMPLES = Path(__file__).parent / "samples"
MANIFEST: dict[str, dict[str, Any]] = json.loads((SAMPLES / "manifest.json").read_text())


def arcfleet(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fleet", *args], input=stdin, capture_output=True, timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_explain_each_sample(name: str) -> None:
    spec = MANIFEST[name]
    out = arcfleet("codes", "--explain", str(SAMPLES / name),
                   "--exit-code", str(spec["exit_status"]))
    assert out.returncode == 0, out.stderr
    assert re.search(rf"^category\s+{spec['category']}$", out.stdout, re.MULTILINE)
    assert "evidence" in out.stdout


def test_explain_json_from_stdin() -> None:
    data = (SAMPLES / "fail_missing_registration_logrus.txt").read_bytes()
    out = arcfleet("codes", "--explain", "-", "--json", stdin=data)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["category"] == "permissions" and got["action"] == "fail_run"
    assert got["correlation_ids"] == ["6d574a85-8040-4cc2-ad53-102e15cadaca"]


def test_explain_with_agent_version_picks_old_meaning() -> None:
    text = b'time="t" level=info msg="Exit Code:  AZCM0068: x"\ntime="t" level=fatal msg="x"\n'
    new = json.loads(arcfleet("codes", "--explain", "-", "--json", stdin=text).stdout)
    old = json.loads(arcfleet("codes", "--explain", "-", "--json", "--agent-version", "1.10",
                              stdin=text).stdout)
    assert new["name"] == "Unable to Fetch Subscription ID"
    assert old["name"] == "Internal Disconnect Error"


def test_explain_reads_invalid_utf8() -> None:
    out = arcfleet("codes", "--explain", "-", stdin=b"\xff\xfe AZCM0026 \x00\x1b[31m broken\n")
    assert out.returncode == 0, out.stderr
    assert "network" in out.stdout


def test_one_code_shows_every_meaning() -> None:
    out = arcfleet("codes", "AZCM0064")
    assert out.returncode == 0
    assert "Unable to Obtain Change Token" in out.stdout
    assert "Agent Service Not Responding" in out.stdout  # the 2021 meaning
    assert "<1.21" in out.stdout and ">=1.21" in out.stdout


def test_code_spellings_and_json() -> None:
    out = arcfleet("codes", "41", "--json")
    assert out.returncode == 0
    rows = json.loads(out.stdout)
    assert rows[0]["code"] == "AZCM0041" and rows[0]["action"] == "retry"


@pytest.mark.parametrize("code", ["AZCM0109", "banana"])
def test_unknown_code_is_one_line_exit_2(code: str) -> None:
    out = arcfleet("codes", code)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    assert code in out.stderr


def test_list_table_and_json() -> None:
    table = arcfleet("codes", "--list")
    assert table.returncode == 0
    assert "AZCM0171" in table.stdout and "AZCM0013" in table.stdout
    rows = json.loads(arcfleet("codes", "--list", "--json").stdout)
    codes = {r["code"] for r in rows}
    assert {"AZCM0000", "AZCM0108", "AZCM0127", "AZCM0171", "AZCM0017"} <= codes
    assert {r["era"] for r in rows if r["code"] == "AZCM0066"} == {"current", "2021"}


def test_missing_file_is_an_input_error() -> None:
    out = arcfleet("codes", "--explain", "/nonexistent/azcmagent.log")
    assert out.returncode == 2
    assert "/nonexistent/azcmagent.log" in out.stderr


def test_explain_detects_installer_json(tmp_path: Path) -> None:
    body = {"status": "failed", "error": {"code": "AZCM0159", "message": "busy"}}
    file = tmp_path / "install-output.json"
    file.write_text(json.dumps(body))
    out = arcfleet("codes", "--explain", str(file), "--exit-code", "1", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["code"], got["action"], got["extra"]["source"]) == ("AZCM0159", "retry",
                                                                    "installer")

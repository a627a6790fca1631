"""Bad input: one clear line per problem naming file, host and field, exit status 2, no Python
traceback (unless --debug), and nothing contacted: the lab's command record stays empty."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_support import INPUT_SUBNET, arcfleet, edit_inventory, lab_contacts, write_playbook

from fleet.lab.fleet import LabFleet


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    with LabFleet.in_thread(tmp_path_factory.mktemp("badinput"), hosts=2, windows=1,
                            subnet=INPUT_SUBNET) as fleet:
        yield fleet
    # Every case below ran against this lab; none may have reached it.


def _inventory(lab: LabFleet, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    return edit_inventory(lab, change, lab.work_dir / name)


def _assert_refused(result: Any, lab: LabFleet, *must_name: str) -> str:
    """Exit 2, every stderr line an ``error:`` line, each naming what it must; returns stderr."""
    err: str = result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, err)
    lines = err.strip().splitlines()
    assert lines, "no error printed"
    assert all(line.startswith("error: ") for line in lines), err
    assert "Traceback" not in err + result.stdout
    for text in must_name:
        assert text in lines[0], (text, err)
    assert lab_contacts(lab) == {}
    return err


def _run(lab: LabFleet, tmp_path: Path, *args: str | Path, inventory: Path | None = None,
         env: dict[str, str] | None = None) -> Any:
    return arcfleet("onboard", "-i", inventory or lab.inventory_path, "--playbook",
                    write_playbook(tmp_path), "--state-dir", tmp_path / "state", *args, env=env)


def test_bad_inventory_field(lab: LabFleet, tmp_path: Path) -> None:
    def bad_port(body: dict[str, Any]) -> None:
        body["hosts"]["lab-0002"]["port"] = "twenty-two"

    inventory = _inventory(lab, "bad_port.yaml", bad_port)
    _assert_refused(_run(lab, tmp_path, inventory=inventory),
                    lab, str(inventory), "host lab-0002", "field port")


def test_bad_inventory_with_debug_is_still_one_line(lab: LabFleet, tmp_path: Path) -> None:
    def unknown_key(body: dict[str, Any]) -> None:
        body["hosts"]["lab-0001"]["adress"] = "10.0.0.1"

    inventory = _inventory(lab, "typo.yaml", unknown_key)
    result = arcfleet("--debug", "onboard", "-i", inventory, "--state-dir", tmp_path / "s")
    _assert_refused(result, lab, str(inventory), "host lab-0001", "adress")


@pytest.mark.parametrize(("body", "field"), [
    ("name: p\ndeadlines: {command_s: 5, comand_s: 1}\n", "field deadlines.comand_s"),
    ("name: p\nattempts: 0\n", "field attempts"),
    ("name: p\nremediations: [reboot_host]\n", "field remediations.0"),
    ("name: p\ndeadlines: [\n", "line 3"),
    ("just a string\n", "mapping"),
])
def test_bad_playbook(lab: LabFleet, tmp_path: Path, body: str, field: str) -> None:
    playbook = tmp_path / "bad-playbook.yaml"
    playbook.write_text(body)
    result = arcfleet("onboard", "-i", lab.inventory_path, "--playbook", playbook,
                      "--state-dir", tmp_path / "state")
    err = _assert_refused(result, lab, str(playbook), field)
    assert len(err.strip().splitlines()) == 1


def test_playbook_that_is_not_utf8(lab: LabFleet, tmp_path: Path) -> None:
    playbook = tmp_path / "binary.yaml"
    playbook.write_bytes(b"name: p\n\xff\xfe\x00junk")
    result = arcfleet("onboard", "-i", lab.inventory_path, "--playbook", playbook,
                      "--state-dir", tmp_path / "state")
    _assert_refused(result, lab, str(playbook))


def test_missing_secret_env_var(lab: LabFleet, tmp_path: Path) -> None:
    def from_env(body: dict[str, Any]) -> None:
        body["defaults"]["azure"]["service_principal"]["secret"] = {
            "env": "ARCFLEET_TEST_UNSET_SECRET"}

    inventory = _inventory(lab, "env_secret.yaml", from_env)
    err = _assert_refused(_run(lab, tmp_path, inventory=inventory), lab, str(inventory),
                          "field azure.service_principal.secret",
                          "ARCFLEET_TEST_UNSET_SECRET")
    # One error for the one reference, naming the hosts that use it (issue 18).
    assert len(err.strip().splitlines()) == 1, err
    assert "referenced by 3 hosts: lab-0001, lab-0002, lab-0003" in err


def test_secret_file_that_is_not_text(lab: LabFleet, tmp_path: Path) -> None:
    binary = lab.work_dir / "binary_secret"
    binary.write_bytes(b"\xff\xfe\x00\x81secret")
    binary.chmod(0o600)

    def from_file(body: dict[str, Any]) -> None:
        body["defaults"]["winrm"]["password"] = {"file": str(binary)}

    inventory = _inventory(lab, "binary_secret.yaml", from_file)
    _assert_refused(_run(lab, tmp_path, inventory=inventory), lab, str(inventory),
                    "host lab-0003", "field winrm.password")


def test_unknown_limit_pattern(lab: LabFleet, tmp_path: Path) -> None:
    err = _assert_refused(_run(lab, tmp_path, "--limit", "no-such-host*:nope"), lab)
    assert "no-such-host" in err or "nope" in err


def test_unusable_state_dir(lab: LabFleet, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = arcfleet("onboard", "-i", lab.inventory_path, "--playbook",
                      write_playbook(tmp_path), "--state-dir", blocker / "state")
    _assert_refused(result, lab, str(blocker / "state"), "field --state-dir")


def test_state_dir_that_is_a_file(lab: LabFleet, tmp_path: Path) -> None:
    blocker = tmp_path / "state-file"
    blocker.write_text("not a directory")
    result = arcfleet("onboard", "-i", lab.inventory_path, "--playbook",
                      write_playbook(tmp_path), "--state-dir", blocker)
    # click checks this one itself: its usage error, also exit 2.
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--state-dir'" in result.stderr
    assert str(blocker) in result.stderr and "is a file" in result.stderr
    assert "Traceback" not in result.stderr
    assert lab_contacts(lab) == {}


def test_rerun_without_runs(lab: LabFleet, tmp_path: Path) -> None:
    result = arcfleet("rerun", "--state-dir", tmp_path / "empty")
    _assert_refused(result, lab, "no run recorded")


def test_missing_inventory_file(lab: LabFleet, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    _assert_refused(_run(lab, tmp_path, inventory=missing), lab, str(missing))

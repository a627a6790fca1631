"""Secret references name only places meant for secrets (issue 16, item 7), trust on first use
is bad input with a known_hosts file that cannot fail closed (item 4), security opt-ins are not
carried into rerun/--resume (item 4), and arcfleet dumps no core (item 11, local part).

Refusals are bad input: one line naming file, host and field, exit 2, nothing contacted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_support import arcfleet, edit_inventory, lab_contacts, outcomes, write_playbook

from fleet.cli.run_request import RunRequest, given_request, override_request, recall_request
from fleet.lab.fleet import LabFleet
from fleet.store import RunRecord

SUBNET = "127.73"
SP_FIELD = "field azure.service_principal.secret"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabFleet]:
    # One lab per test: "nothing contacted" is read from its record.
    with LabFleet.in_thread(tmp_path / "lab", hosts=1, subnet=SUBNET) as fleet:
        yield fleet


def _onboard(lab: LabFleet, tmp_path: Path, inventory: Path, *args: str | Path,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return arcfleet("onboard", "-i", inventory, "--playbook", write_playbook(tmp_path),
                    "--state-dir", tmp_path / "state", "--json", *args, env=env)


def _refused(result: subprocess.CompletedProcess[str], lab: LabFleet, *names: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert "Traceback" not in result.stderr
    assert lab_contacts(lab) == {}
    return lines[0]


def _secret_ref(lab: LabFleet, tmp_path: Path, ref: dict[str, str]) -> Path:
    def change(body: dict[str, Any]) -> None:
        body["defaults"]["azure"]["service_principal"]["secret"] = ref

    return edit_inventory(lab, change, lab.work_dir / "edited.yaml")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_secret_file_others_can_read_is_refused(
    lab: LabFleet, tmp_path: Path, mode: int
) -> None:
    secret = tmp_path / "sp_secret"
    secret.write_text(lab.secret + "\n")
    secret.chmod(mode)
    inventory = _secret_ref(lab, tmp_path, {"file": str(secret)})
    line = _refused(_onboard(lab, tmp_path, inventory), lab, str(inventory), "host lab-0001",
                    SP_FIELD, str(secret), "chmod 600")
    assert lab.secret not in line


def test_a_secret_file_owned_by_someone_else_is_refused(lab: LabFleet, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    secret = tmp_path / "sp_secret"
    secret.write_text(lab.secret + "\n")
    secret.chmod(0o600)
    os.chown(secret, 65534, 65534)
    inventory = _secret_ref(lab, tmp_path, {"file": str(secret)})
    _refused(_onboard(lab, tmp_path, inventory), lab, str(inventory), SP_FIELD, "not owned")


def test_a_private_secret_file_is_used(lab: LabFleet, tmp_path: Path) -> None:
    """The counterpart: a 0600 file owned by the user (the lab writes its files so) is read."""
    inventory = _secret_ref(lab, tmp_path, {"file": str(lab.secret_file)})
    result = _onboard(lab, tmp_path, inventory)
    assert result.returncode == 0, result.stderr
    assert outcomes(result)["lab-0001"]["status"] == "success"
    assert lab_contacts(lab)  # the check above can see contacts


def test_an_environment_variable_outside_the_allow_list_is_refused(
    lab: LabFleet, tmp_path: Path
) -> None:
    inventory = _secret_ref(lab, tmp_path, {"env": "AWS_SECRET_ACCESS_KEY"})
    env = {"AWS_SECRET_ACCESS_KEY": lab.secret}
    line = _refused(_onboard(lab, tmp_path, inventory, env=env), lab, str(inventory),
                    "host lab-0001", SP_FIELD, "AWS_SECRET_ACCESS_KEY",
                    "--allow-secret-env AWS_SECRET_ACCESS_KEY")
    assert lab.secret not in line
    # Named by the operator, it is read and used.
    result = _onboard(lab, tmp_path, inventory, "--allow-secret-env", "AWS_SECRET_ACCESS_KEY",
                      env=env)
    assert result.returncode == 0, result.stderr
    assert outcomes(result)["lab-0001"]["status"] == "success"


@pytest.mark.parametrize("known", ["/dev/null", "broken-line", "--known-hosts /dev/null"])
def test_accept_new_with_a_known_hosts_that_cannot_fail_closed_is_bad_input(
    lab: LabFleet, tmp_path: Path, known: str
) -> None:
    args: list[str | Path] = []
    field = "field ssh.known_hosts"
    if known == "broken-line":
        path = tmp_path / "known_hosts"
        path.write_text(lab.known_hosts_file.read_text() + "one-word-line\n")
    else:
        path = Path("/dev/null")  # UserKnownHostsFile=/dev/null: every key new, every time
    if known.startswith("--known-hosts"):
        args, field = ["--known-hosts", path], "field --known-hosts"

    def change(body: dict[str, Any]) -> None:
        if args:
            del body["defaults"]["ssh"]["known_hosts"]
        else:
            body["defaults"]["ssh"]["known_hosts"] = str(path)

    inventory = edit_inventory(lab, change, lab.work_dir / "edited.yaml")
    _refused(_onboard(lab, tmp_path, inventory, "--accept-new-host-keys", *args), lab,
             str(inventory), "host lab-0001", field, str(path))


def _record(options: dict[str, Any]) -> RunRecord:
    return RunRecord(
        id="r1", kind="onboard", status="interrupted", started_at="", finished_at=None,
        command_line=[], inventory_paths=[], inventory_digest="", playbook="onboard",
        options=options, parent_run_id=None, root_run_id="r1", folder=Path("."),
    )


def test_rerun_and_resume_ask_for_the_security_flags_again() -> None:
    first = RunRequest(inventories=["/x.yaml"], accept_new_host_keys=True,
                       allow_secret_env=("AWS_SECRET_ACCESS_KEY",))
    recalled = recall_request(_record(first.options()))
    assert recalled.accept_new_host_keys is False
    assert recalled.allow_secret_env == ()
    override_request(recalled, given_request((), {}, {}))
    assert (recalled.accept_new_host_keys, recalled.allow_secret_env) == (False, ())
    override_request(recalled, given_request((), {}, {"accept_new_host_keys": True,
                                        "allow_secret_env": ("AWS_SECRET_ACCESS_KEY",)}))
    assert recalled.accept_new_host_keys is True
    assert recalled.allow_secret_env == ("AWS_SECRET_ACCESS_KEY",)


def test_arcfleet_dumps_no_core() -> None:
    probe = (
        "import resource, sys\n"
        "from fleet.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE))\n"
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0:
        pytest.skip("core dumps are already disabled for this test process")
    if soft == 0:
        # Start the child with core dumps allowed, or the check could not fail.
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "(0, 0)"

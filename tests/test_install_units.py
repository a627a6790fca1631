"""The install stage's pure parts: the policy, the install-script and msiexec verdicts (from the
documented --output JSON shapes, reference section 7.2), the command lines, the bundle check."""

from __future__ import annotations

import hashlib
import shlex
import shutil
from pathlib import Path

import pytest

from fleet.azcm.diagnosis import ActionKind, Category
from fleet.azcm.install_linux import PACKAGE_NAME, LinuxInstall, parse_output, verdict
from fleet.azcm.install_windows import MSIEXEC_CODES, msiexec_verdict, script_verdict
from fleet.engine.install_bundle import load_bundle
from fleet.engine.install_policy import InstallAction, InstallPolicy, decide
from fleet.errors import InputError

# The script's printf formats, expanded (reference 7.2): tabs, newlines, %04d codes.
FAILURE = '{\n\t"status": "%s",\n\t"error": {\n\t\t"code": "AZCM%04d",\n\t\t"message": "%s"\n\t}\n}'
SUCCESS = '{\n\t"status": "%s",\n\t"message": "%s"\n}'
S = "/tmp/arcfleet.AbCdEf12/install_linux_azcmagent.sh"

M, L, N = InstallPolicy.MISSING, InstallPolicy.ALWAYS_LATEST, InstallPolicy.NEVER


@pytest.mark.parametrize(("policy", "found", "version", "desired", "minimum", "action"), [
    (M, False, None, None, None, InstallAction.INSTALL),
    (M, True, "1.51.03008.304", None, None, InstallAction.NONE),
    (M, True, "1.40.02664.1629", None, "1.45", InstallAction.UPGRADE),
    (M, True, "1.45.02664.1629", None, "1.45", InstallAction.NONE),  # 1.45.x satisfies "1.45"
    (M, True, "1.51.03008.304", None, "1.45", InstallAction.NONE),
    (M, True, None, None, "1.45", InstallAction.NONE),  # no version read: not replaced on a guess
    (L, False, None, "1.51", None, InstallAction.INSTALL),
    (L, True, "1.51.03008.304", "1.51", None, InstallAction.NONE),  # at the wanted version
    (L, True, "1.50.02910.1", "1.51", None, InstallAction.UPGRADE),
    (L, True, "1.50.02910.1", None, None, InstallAction.UPGRADE),
    (N, False, None, None, None, InstallAction.NONE),
    (N, True, "1.40.02664.1629", None, "1.45", InstallAction.NONE),
])
def test_policy(policy: InstallPolicy, found: bool, version: str | None, desired: str | None,
                minimum: str | None, action: InstallAction) -> None:
    decision = decide(policy, version, agent_found=found, desired_version=desired,
                      minimum_version=minimum)
    assert decision.action is action, decision.reason


@pytest.mark.parametrize(("code", "category", "retried"), [
    (145, Category.HOST_PREREQUISITE, True), (146, Category.NETWORK, True),
    (130, Category.HOST_PREREQUISITE, False), (131, Category.HOST_PREREQUISITE, False),
    (132, Category.HOST_PREREQUISITE, False), (133, Category.HOST_PREREQUISITE, False),
    (141, Category.HOST_PREREQUISITE, False), (147, Category.INVALID_INPUT, False),
    (143, Category.HOST_PREREQUISITE, False), (127, Category.INVALID_INPUT, False),
])
def test_linux_verdict_is_the_output_json_code(code: int, category: Category,
                                               retried: bool) -> None:
    output = FAILURE % ("failed", code, f"{S}: some message")
    # The exit status is 1 for every failure: only the JSON says which.
    diagnosis = verdict(output, f"{S}: some message\n", "", 1)
    assert diagnosis is not None
    assert (diagnosis.code, diagnosis.category) == (f"AZCM{code:04d}", category)
    assert (diagnosis.action.kind is ActionKind.RETRY) is retried
    assert diagnosis.fix and diagnosis.evidence_line == f"{S}: some message"


def test_linux_success_json_and_its_absence() -> None:
    assert verdict(SUCCESS % ("success", "Latest version of azcmagent is installed."), "", "",
                   0) is None
    # No JSON and exit 1: a failure, never a success.
    missing = verdict("", "bash: curl: command not found\n", "", 1)
    assert missing is not None and missing.category is Category.UNKNOWN
    assert "curl" in missing.evidence_line
    # --desiredversion prefix with no match: exit 1 without an AZCM code (reference 7.2).
    prefix = verdict("", "No matching version found for prefix 9.9\n", "", 1)
    assert prefix is not None and prefix.code == "AZCM0147"


def test_a_message_with_a_quote_breaks_the_json_but_not_the_verdict() -> None:
    # printf does not escape: a message holding a double quote is not valid JSON any more.
    output = FAILURE % ("failed", 142, f'{S}: invalid --altdownload link: /x/"y"')
    doc = parse_output(output)
    assert doc is not None and doc["status"] == "failed"
    diagnosis = verdict(output, "", "", 1)
    assert diagnosis is not None and diagnosis.code == "AZCM0142"


@pytest.mark.parametrize(("status", "code", "retried"), [
    (1603, "AZCM0156", False), (112, "AZCM0158", False), (1618, "AZCM0159", True),
    (1622, "AZCM0160", False), (1633, "AZCM0153", False), (1619, "AZCM0149", False),
])
def test_msiexec_codes_map_to_the_documented_codes(status: int, code: str, retried: bool) -> None:
    log = "MSI (s): something\nAction ended 10:00:01: InstallFinalize. Return value 3.\n"
    diagnosis = msiexec_verdict(status, log)
    assert diagnosis is not None and diagnosis.code == code
    assert (diagnosis.action.kind is ActionKind.RETRY) is retried
    assert "Return value 3" in diagnosis.evidence_line  # the log's last error line
    assert f"msiexec exited {status}" in diagnosis.evidence_line


def test_msiexec_success_codes_and_the_table() -> None:
    assert msiexec_verdict(0, "") is None and msiexec_verdict(3010, "") is None
    assert MSIEXEC_CODES == {1603: "AZCM0156", 112: "AZCM0158", 1618: "AZCM0159",
                             1622: "AZCM0160", 1633: "AZCM0153"}


def test_windows_script_outfile_json() -> None:
    failed = '{"status":"failed","error":{"message":"Download failed: x","code":"AZCM0148",' \
             '"details":"x"}}'
    diagnosis = script_verdict(failed)
    assert diagnosis is not None and diagnosis.code == "AZCM0148"
    assert diagnosis.action.kind is ActionKind.RETRY
    vm = script_verdict('{"status":"failed","error":{"message":"m","code":"AZCM0147"}}')
    assert vm is not None and vm.category is Category.HOST_PREREQUISITE  # Windows: Azure VM
    ok = '{"status":"success","message":"Installation of azcmagent completed successfully"}'
    assert script_verdict(ok) is None


def test_linux_command_line() -> None:
    job = LinuxInstall("/tmp/arcfleet.AbCdEf12", proxy_url="http://proxy:3128/$(id)",
                       desired_version="1.51", offline_package=True)
    argv = shlex.split(job.command())
    assert argv[:4] == ["bash", S, "--output", "/tmp/arcfleet.AbCdEf12/install.json"]
    assert argv[argv.index("--proxy") + 1] == "http://proxy:3128/$(id)"  # one quoted word
    assert argv[argv.index("--desiredversion") + 1] == "1.51"
    # The script refuses an --altdownload ending in .deb/.rpm (AZCM0127/0128).
    assert argv[argv.index("--altdownload") + 1] == f"/tmp/arcfleet.AbCdEf12/{PACKAGE_NAME}"
    assert not PACKAGE_NAME.endswith((".deb", ".rpm"))
    assert argv[argv.index("--tempdir") + 1] == "/tmp/arcfleet.AbCdEf12"
    online = LinuxInstall("/tmp/arcfleet.AbCdEf12")
    assert "--altdownload" not in online.command() and "--proxy" not in online.command()


def test_bundle_check(tmp_path: Path) -> None:
    (tmp_path / "install_linux_azcmagent.sh").write_text("#!/bin/bash\n")
    (tmp_path / "azcmagent_1.51.deb").write_bytes(b"d" * 10)
    (tmp_path / "AzureConnectedMachineAgent.msi").write_bytes(b"not an msi")
    (tmp_path / "README.txt").write_text("ignored")
    bundle = load_bundle(str(tmp_path))
    assert sorted(f.kind for f in bundle.files) == ["deb", "linux-script", "msi"]
    deb = bundle.first("deb")
    assert deb is not None and deb.sha256 == hashlib.sha256(b"d" * 10).hexdigest()
    msi = bundle.first("msi")
    assert msi is not None
    if shutil.which("osslsigncode"):  # .ci/run installs it: the real verifier reads the file
        assert msi.signature == "unsigned"
    else:
        assert msi.signature.startswith("not checked")
    with pytest.raises(InputError, match="Authenticode signature required"):
        load_bundle(str(tmp_path), require_signed=True)


def test_bundle_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        load_bundle(str(tmp_path / "none"))
    (tmp_path / "install_linux_azcmagent.sh").write_text("#!/bin/bash\n")
    with pytest.raises(InputError, match=r"without a \.deb or \.rpm"):
        load_bundle(str(tmp_path))
    (tmp_path / "a.rpm").write_bytes(b"")
    with pytest.raises(InputError, match=r"a\.rpm.*unlikely size: 0 bytes"):
        load_bundle(str(tmp_path))

"""Microsoft's Linux install script (``install_linux_azcmagent.sh``): command line and verdict.

The script exits 1 for every failure, so the exit status says nothing about why; the AZCM code
(AZCM0127..0157) is only in the JSON it writes to ``--output`` (reference section 7.2)::

    {"status": "failed", "error": {"code": "AZCM0145", "message": "..."}}
    {"status": "success", "message": "Latest version of azcmagent is installed."}

The verdict is read from that JSON and the code's meaning from the catalog. A run that leaves no
JSON is classified from its output with the exit status only as a last resort.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, replace

from fleet.azcm import catalog
from fleet.azcm.diagnosis import FAIL_HOST, RETRY, Category, Diagnosis

SCRIPT_NAME = "install_linux_azcmagent.sh"
ONLINE_URL = "https://aka.ms/azcmagent"
OUTPUT_NAME = "install.json"
# The script refuses an --altdownload ending in .deb/.rpm (AZCM0127/0128): the package is
# uploaded under this suffix-less name.
PACKAGE_NAME = "azcmagent-package"

#: codes worth another run after a pause (the lock frees, the download works next time)
RETRIED_CODES = frozenset({"AZCM0145", "AZCM0146"})
#: codes whose failure says to read the package manager's own log
PACKAGE_LOG_CODES = frozenset({"AZCM0143"})
#: where apt/dnf/zypper keep their logs, read into the transcript on AZCM0143
PACKAGE_LOGS = ("/var/log/apt/term.log", "/var/log/dnf.log", "/var/log/zypper.log")


@dataclass(frozen=True)
class LinuxInstall:
    """One run of the install script in ``workdir`` (a private directory on the host)."""

    workdir: str
    proxy_url: str | None = None
    desired_version: str | None = None
    offline_package: bool = False  # the package was uploaded to workdir/PACKAGE_NAME
    tempdir: str | None = None

    @property
    def script_path(self) -> str:
        return f"{self.workdir}/{SCRIPT_NAME}"

    @property
    def output_path(self) -> str:
        return f"{self.workdir}/{OUTPUT_NAME}"

    def argv(self) -> list[str]:
        args = ["bash", self.script_path, "--output", self.output_path]
        if self.proxy_url:
            args += ["--proxy", self.proxy_url]
        if self.desired_version:
            args += ["--desiredversion", self.desired_version]
        if self.offline_package:
            args += ["--altdownload", f"{self.workdir}/{PACKAGE_NAME}"]
        args += ["--tempdir", self.tempdir or self.workdir]
        return args

    def command(self) -> str:
        return " ".join(shlex.quote(arg) for arg in self.argv())

    def download_command(self) -> str:
        """Online mode: the host fetches the script itself (through the proxy if set)."""
        parts = ["curl", "-fsSL", "-o", self.script_path]
        if self.proxy_url:
            parts += ["--proxy", self.proxy_url]
        parts.append(ONLINE_URL)
        return " ".join(shlex.quote(p) for p in parts)

    def read_output_command(self) -> str:
        return f"cat -- {shlex.quote(self.output_path)}"


def package_kind(dpkg_found: bool) -> str:
    """Which package of the bundle a host takes: Debian family has dpkg, the rest rpm."""
    return "deb" if dpkg_found else "rpm"


_CODE = re.compile(r"AZCM\d{4}")


def parse_output(text: str) -> dict[str, object] | None:
    """The --output JSON, or None when the file is missing or not the documented shape. The
    script builds it with printf, so a message with a quote in it can break the JSON: fall back
    to reading the status and code out of the text."""
    text = text.strip()
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        status = re.search(r'"status":\s*"(\w+)"', text)
        code = _CODE.search(text)
        message = re.search(r'"message":\s*"(.*)"', text)
        if status is None:
            return None
        error = {"code": code.group(0) if code else "", "message": message.group(1) if message
                 else ""}
        return {"status": status.group(1), "error": error}
    return doc if isinstance(doc, dict) and "status" in doc else None


def verdict(output: str, stdout: str, stderr: str, exit_status: int | None) -> Diagnosis | None:
    """None when the installer succeeded; else the diagnosis of its failure."""
    doc = parse_output(output)
    if doc is not None and doc.get("status") == "success":
        return None
    if doc is not None:
        error = doc.get("error")
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        message = str(error.get("message", "")) if isinstance(error, dict) else ""
        return diagnose_code(code, message or _last_line(stdout, stderr), platform="linux")
    if exit_status == 0:
        # Success text without the JSON (an older script ignores --output): the engine still
        # checks that azcmagent answers before it believes it.
        return None
    return no_output(stdout, stderr, exit_status)


def diagnose_code(code: str, message: str, *, platform: str) -> Diagnosis:
    entry = catalog.lookup(code, platform=platform) if code else None
    if entry is None or entry.source is not catalog.Source.INSTALLER:
        return Diagnosis(
            Category.UNKNOWN, FAIL_HOST, code=code or None, name="install failed",
            cause="The agent installer failed with a code arcfleet does not know.",
            fix="Read the installer output in the transcript, fix the cause, rerun the host.",
            doc_url=catalog.TROUBLESHOOT_URL, evidence_line=message, rule="installer",
        )
    return Diagnosis(
        category=entry.category, action=RETRY if code in RETRIED_CODES else entry.action,
        code=entry.code, name=entry.name, cause=entry.cause, fix=entry.fix,
        doc_url=entry.doc_url, evidence_line=message, rule="installer",
        extra={"stage": "install"},
    )


def no_output(stdout: str, stderr: str, exit_status: int | None) -> Diagnosis:
    line = _last_line(stdout, stderr)
    if "No matching version found" in stdout + stderr:
        # --desiredversion with no match exits 1 without an AZCM code (reference 7.2).
        entry = diagnose_code("AZCM0147", line, platform="linux")
        return replace(entry, rule="installer-text")
    return Diagnosis(
        Category.UNKNOWN, FAIL_HOST, name="install failed",
        cause=f"The install script exited {exit_status} and wrote no --output JSON.",
        fix="Read the installer output in the transcript; check the script ran (bash, curl, "
        "a writable temp directory), then rerun the host.",
        doc_url=catalog.TROUBLESHOOT_URL, evidence_line=line, rule="installer",
    )


def _last_line(stdout: str, stderr: str) -> str:
    lines = [line.strip() for line in (stdout + "\n" + stderr).splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""

"""The lab learns installing: Microsoft's install script, msiexec and the package managers.

A lab host may start without the agent (``agent_missing``, the ``install_*`` scenarios, or any
scenario with ``no_agent: true``). Running the install script (Linux) or ``msiexec /i`` on an
uploaded MSI (Windows) installs the simulator; the ``install_*`` scenarios fail instead, with the
verbatim messages and the ``--output`` JSON shape of the reference (section 7.2). The JSON is
written with the script's own printf formats, tabs and all.
"""

from __future__ import annotations

import asyncio
import json
import time

from fleet.lab.agent.simulator import AGENT_VERSION
from fleet.lab.host import LabHost
from fleet.lab.scenario import ScenarioKind

# The install script's formats (reference 7.2), as printf would expand them.
FORMAT_FAILURE = (
    '{\n\t"status": "%s",\n\t"error": {\n\t\t"code": "AZCM%04d",\n\t\t"message": "%s"\n\t}\n}'
)
FORMAT_SUCCESS = '{\n\t"status": "%s",\n\t"message": "%s"\n}'
LINUX_SCRIPT = "install_linux_azcmagent.sh"
ONLINE_SCRIPT_URLS = ("https://aka.ms/azcmagent", "https://gbl.his.arc.azure.com/azcmagent-linux")
SUPPORTED_OS = "https://learn.microsoft.com/en-us/azure/azure-arc/servers/prerequisites#supported-operating-systems"
#: how long the lab's install script waits on a held dpkg lock before AZCM0145 (the real one
#: waits 5 minutes)
LOCK_PATIENCE_S = 0.3
#: a fresh agent's himds answers this long after the install (the real one takes a while)
HIMDS_START_S = 1.0


class Outcome:
    def __init__(self, status: int, stdout: str = "", stderr: str = "") -> None:
        self.exit_status, self.stdout, self.stderr = status, stdout, stderr


def _install_agent(host: LabHost) -> None:
    host.installed = True
    host.agent_version = ""  # the repository's (and the MSI's) version: the simulator's own
    host.service_running = True
    host.himds_ready_at = time.monotonic() + HIMDS_START_S
    host.save()


def _option_value(args: list[str], i: int) -> str | None:
    return args[i + 1] if i + 1 < len(args) else None


async def run_linux_script(argv: list[str], host: LabHost, elevated: bool) -> Outcome:
    """``bash /path/install_linux_azcmagent.sh [options]`` as the real script answers."""
    script = argv[1]
    if not host.local_path(script).is_file():
        return Outcome(127, "", f"bash: {script}: No such file or directory\n")
    host.install_attempts += 1
    args = argv[2:]
    options: dict[str, str] = {}
    names = {"-p": "proxy", "--proxy": "proxy", "-o": "output", "--output": "output",
             "-a": "altdownload", "--altdownload": "altdownload", "-t": "tempdir",
             "--tempdir": "tempdir", "-d": "desiredversion", "--desiredversion": "desiredversion",
             "-e": "althisendpoint", "--althisendpoint": "althisendpoint"}
    i = 0
    while i < len(args):
        key = args[i]
        if key in names and _option_value(args, i) is not None:
            options[names[key]] = args[i + 1]
            i += 2
            continue
        return _fail(host, options, 129,
                     f"{script}: unrecognized argument: '{key}'. Type '{script} --help' for help.")
    out: list[str] = []
    alt = options.get("altdownload")
    if alt is not None:
        if alt.endswith(".deb"):
            return _fail(host, options, 127, f"{script}: error: altdownload file should not "
                                             "have .deb suffix")
        if alt.endswith(".rpm"):
            return _fail(host, options, 128, f"{script}: error: altdownload file should not "
                                             "have .rpm suffix")
        if not host.local_path(alt).is_file():
            return _fail(host, options, 142, f"{script}: invalid --altdownload link: {alt}")
    tempdir = options.get("tempdir")
    if tempdir is not None and not host.local_path(tempdir).is_dir():
        return _fail(host, options, 129, f"{script}: temp directory '{tempdir}' is not writable")
    kind = host.scenario.kind
    if kind is ScenarioKind.INSTALL_AZURE_VM:
        return _fail(host, options, 141, f"{script}: cannot install Azure Connected Machine "
                     "agent on an Azure Virtual Machine.", extra=(
                         "Azure Connected Machine Agent is designed for use outside Azure.",
                         "To connect an Azure VM for TESTING PURPOSES ONLY, see "
                         "https://aka.ms/azcmagent-testwarning for more details."))
    if kind is ScenarioKind.INSTALL_UNSUPPORTED:
        return _fail(host, options, 133, f"{script}: unsupported Linux distribution: "
                     f"centos:6.10. For supported OSs, see {SUPPORTED_OS}")
    if kind is ScenarioKind.INSTALL_LOCK and time.monotonic() < host.lock_until:
        out.append("Another apt/dpkg process is updating system. Retrying up to 5 minutes...\n")
        await asyncio.sleep(LOCK_PATIENCE_S)
        out.append("Another apt/dpkg process is updating system. Retrying up to 5 minutes...\n")
        return _fail(host, options, 145, f"{script}: file /var/lib/dpkg/lock-frontend or "
                     "/var/lib/apt/lists/lock is still busy after 5 minutes. Please make sure no "
                     "other apt/dpkg updates is still running, and retry again.", before=out)
    if kind is ScenarioKind.INSTALL_DOWNLOAD and alt is None:
        return _fail(host, options, 146, f"{script}: download of https://packages.microsoft.com/"
                     "config/ubuntu/22.04/packages-microsoft-prod.deb errored")
    if kind is ScenarioKind.INSTALL_DOWNLOAD:
        # Offline the repository package is not needed: the same cut network fails apt's
        # dependency fetch instead.
        return _package_failure(host, options, script,
                                "E: Failed to fetch http://archive.ubuntu.com/ubuntu/pool/main/"
                                "libs/libssl3.deb  Temporary failure resolving "
                                "'archive.ubuntu.com'")
    desired = options.get("desiredversion")
    if desired is not None and (kind is ScenarioKind.INSTALL_NO_VERSION
                                or not AGENT_VERSION.startswith(desired)):
        return _fail(host, options, 147, f"{script}: desired_version not found: {desired}")
    if kind in (ScenarioKind.INSTALL_FATAL, ScenarioKind.INSTALL_NO_DISK):
        reason = ("dpkg: error processing archive azcmagent.deb (--unpack): cannot copy "
                  "extracted data for './opt/azcmagent/bin/himds' to "
                  "'/opt/azcmagent/bin/himds.dpkg-new': failed to write (No space left on device)"
                  if kind is ScenarioKind.INSTALL_NO_DISK
                  else "dpkg: error processing package azcmagent (--configure): installed "
                  "azcmagent package post-installation script subprocess returned error exit "
                  "status 1")
        return _package_failure(host, options, script, reason)
    _install_agent(host)
    message = (f"azcmagent version {desired} is installed." if desired
               else "Latest version of azcmagent is installed.")
    _write_output(host, options, FORMAT_SUCCESS % ("success", message))
    return Outcome(0, "".join(out) + message + "\n")


def _package_failure(host: LabHost, options: dict[str, str], script: str,
                     reason: str) -> Outcome:
    manager = "apt" if host.package_family == "deb" else "dnf"
    log = "/var/log/apt/term.log" if manager == "apt" else "/var/log/dnf.log"
    path = host.local_path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"Log started: 2026-01-01  00:00:00\n{reason}\n"
                 "Errors were encountered while processing:\n azcmagent\n")
    return _fail(host, options, 143, f"{script}: error installing azcmagent (exit code: 100). "
                 f"See '{manager}' command logs for more information.", before=[reason + "\n"])


def _write_output(host: LabHost, options: dict[str, str], text: str) -> None:
    output = options.get("output")
    if output:
        path = host.local_path(output)
        if path.parent.is_dir():
            path.write_text(text + "\n", encoding="utf-8")


def _fail(host: LabHost, options: dict[str, str], code: int, message: str,
          extra: tuple[str, ...] = (), before: list[str] | None = None) -> Outcome:
    """The script's exit_failure: the JSON to --output, the message on stdout, exit 1."""
    _write_output(host, options, FORMAT_FAILURE % ("failed", code, message))
    lines = "".join(before or []) + message + "\n" + "".join(f"{x}\n" for x in extra)
    return Outcome(1, lines)


def curl_download(argv: list[str], host: LabHost) -> Outcome:
    """``curl -fsSL -o PATH [--proxy P] URL``: only Microsoft's install script URL exists."""
    args = argv[1:]
    target = args[args.index("-o") + 1] if "-o" in args and args.index("-o") + 1 < len(args) \
        else None
    url = args[-1] if args else ""
    if target is None or url not in ONLINE_SCRIPT_URLS:
        return Outcome(22, "", f"curl: (22) The requested URL returned error: 404 ({url})\n")
    host.local_path(target).write_text("#!/bin/bash\n# lab stand-in for "
                                       f"{LINUX_SCRIPT}\n", encoding="utf-8")
    return Outcome(0)


def package_remove(argv: list[str], host: LabHost, elevated: bool) -> Outcome:
    """``apt-get remove -y azcmagent`` / ``dnf -y remove azcmagent`` / ``zypper ... remove``."""
    tool = argv[0]
    if not elevated:
        return Outcome(100, "", f"E: Could not open lock file /var/lib/dpkg/lock-frontend - "
                                f"open (13: Permission denied) [{tool}]\n")
    if "azcmagent" not in argv or "remove" not in argv:
        return Outcome(1, "", f"{tool}: only 'remove azcmagent' is simulated here\n")
    if not host.installed:
        return Outcome(0, "Package 'azcmagent' is not installed, so not removed\n")
    host.installed = False
    host.save()
    return Outcome(0, "Removing azcmagent ...\n")


# -- Windows: msiexec ------------------------------------------------------------------------

MSIEXEC_FAILURES = {
    ScenarioKind.INSTALL_FATAL: 1603,
    ScenarioKind.INSTALL_NO_DISK: 112,
    ScenarioKind.INSTALL_BUSY: 1618,
}
_MSI_LOG_LINES = {
    1603: ("MSI (s) (A4:2C) [10:00:01:000]: Product: Azure Connected Machine Agent -- Error 1603."
           " A fatal error occurred during installation.", "Action ended 10:00:01: "
           "InstallFinalize. Return value 3."),
    112: ("MSI (s) (A4:2C) [10:00:01:000]: Error 112: There is not enough space on the disk.",
          "Action ended 10:00:01: InstallFiles. Return value 3."),
    1618: ("MSI (c) (A4:2C) [10:00:01:000]: Error 1618: Another installation is already in "
           "progress.", "Action ended 10:00:01: INSTALL. Return value 3."),
}


def msiexec(host: LabHost, msi: str, log: str) -> int:
    """``msiexec /i MSI /qn /l*v LOG``: its exit code; writes the verbose log."""
    host.install_attempts += 1
    log_path = host.local_path(log)
    if not log_path.parent.is_dir():
        return 1622
    if not host.local_path(msi).is_file():
        log_path.write_text(f"Error 1619. This installation package could not be opened: {msi}\n",
                            encoding="utf-8")
        return 1619
    kind = host.scenario.kind
    code = MSIEXEC_FAILURES.get(kind)
    if kind is ScenarioKind.INSTALL_BUSY and host.install_attempts > host.scenario.fail_times:
        code = None
    if code is not None:
        log_path.write_text("=== Verbose logging started ===\n" + "\n".join(_MSI_LOG_LINES[code])
                            + "\n=== Logging stopped ===\n", encoding="utf-8")
        return code
    log_path.write_text("=== Verbose logging started ===\nProduct: Azure Connected Machine Agent "
                        "-- Installation completed successfully.\nMSI (s): Windows Installer "
                        "installed the product. Return value 1.\n", encoding="utf-8")
    _install_agent(host)
    return 0


_SCRIPT_FAILURES = {  # install_windows_azcmagent.ps1: scenario -> (code, message)
    ScenarioKind.INSTALL_AZURE_VM: ("AZCM0147", "Azure Connected Machine Agent cannot be "
                                    "installed on an Azure Virtual Machine."),
    ScenarioKind.INSTALL_DOWNLOAD: ("AZCM0148", "Download failed: Unable to connect to the "
                                    "remote server"),
    ScenarioKind.INSTALL_FATAL: ("AZCM0156", "Installation failed: [1603]: Fatal error during "
                                 "installation. See installationlog.txt for additional details."),
    ScenarioKind.INSTALL_NO_DISK: ("AZCM0158", "Installation failed: [112]: There is not enough "
                                   "space on the disk."),
    ScenarioKind.INSTALL_BUSY: ("AZCM0159", "Installation failed: [1618]: Another installation "
                                "is already in progress."),
}


def windows_script(host: LabHost, out_file: str) -> int:
    """``& install_windows_azcmagent.ps1 -OutFile F``: the -OutFile JSON; the script returns
    (it does not exit), so the caller's ``exit 0`` is what the session reports."""
    host.install_attempts += 1
    kind = host.scenario.kind
    failure = _SCRIPT_FAILURES.get(kind)
    if kind is ScenarioKind.INSTALL_BUSY and host.install_attempts > host.scenario.fail_times:
        failure = None
    path = host.local_path(out_file)
    if failure is not None:
        code, message = failure
        body = {"status": "failed", "error": {"message": message, "code": code,
                                              "details": message}}
    else:
        _install_agent(host)
        body = {"status": "success", "message": "Installation of azcmagent completed "
                                                "successfully"}
    path.write_text(json.dumps(body), encoding="utf-8")
    return 0


def msi_log_errors(host: LabHost, log: str, lines: int) -> str:
    local = host.local_path(log)
    if not local.is_file():
        return ""
    hits = [ln for ln in local.read_text(encoding="utf-8").splitlines()
            if "error" in ln.lower() or "return value 3" in ln.lower()]
    return "".join(f"{ln}\r\n" for ln in hits[-lines:])


def windows_uninstall(host: LabHost) -> tuple[int, str]:
    if not host.installed:
        return 0, "Azure Connected Machine Agent is not installed\r\n"
    host.installed = False
    host.save()
    return 0, ""

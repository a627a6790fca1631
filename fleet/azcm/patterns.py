"""Message patterns: text azcmagent, Entra ID, ARM, the install scripts and the host print.

A message says more than a code: AZCM0041 ("no token") is a network problem when the message is a
DNS failure, AZCM0042 ("create failed") is throttling with a 429 and permissions with a 403. The
classifier therefore tries these patterns before it looks at codes. :data:`PATTERNS` is ordered
most specific first; that order is the precedence between patterns.

Every regex is bounded (no nested or unbounded wildcards) and runs on one line capped at
:data:`MAX_LINE` characters, so a hostile line cannot make it backtrack for long. Each pattern
also lists plain keywords; a line without any keyword is never tried (:func:`may_match`).
"""

from __future__ import annotations

import re

from fleet.azcm.catalog import (
    DISCONNECT_URL,
    ELEVATE,
    ENTRA_ERRORS_URL,
    INSTALL_URL,
    PRIVATE_LINK_URL,
    RESTART,
    WAIT_HIMDS,
    lookup,
)
from fleet.azcm.diagnosis import FAIL_HOST, Category
from fleet.azcm.pattern_model import (
    DISCONNECT_LOCAL,
    MAX_LINE,
    MessagePattern,
    pattern,
)
from fleet.azcm.patterns_cloud import ARM, ENTRA
from fleet.azcm.patterns_net import NETWORK

__all__ = ["MAX_LINE", "PATTERNS", "MessagePattern", "by_name", "may_match"]

C = Category
_p = pattern


def _installer(name: str, regex: str, keywords: tuple[str, ...], code: int, sample: str,
               *, platform: str | None = None) -> MessagePattern:
    """An install-script message: its meaning is the catalog entry of the code it reports."""
    full = f"AZCM{code:04d}"
    entry = lookup(full, platform=platform)
    assert entry is not None, full
    return _p(name, regex, keywords, entry.category, entry.action, entry.cause,
              entry.fix, sample, doc_url=entry.doc_url, code=full)



PATTERNS: tuple[MessagePattern, ...] = (
    # --- install scripts (their console text; the code itself is only in --output JSON) -------
    _installer("installer_altdownload_deb", r"altdownload file should not have \.deb suffix",
               ("altdownload",), 127,
               "install_linux_azcmagent.sh: error: altdownload file should not have .deb suffix"),
    _installer("installer_altdownload_rpm", r"altdownload file should not have \.rpm suffix",
               ("altdownload",), 128,
               "install_linux_azcmagent.sh: error: altdownload file should not have .rpm suffix"),
    _installer("installer_bad_argument",
               r"unrecognized argument: '|temp directory '[^']{0,512}' is not writable",
               ("unrecognized argument", "is not writable"), 129,
               "install_linux_azcmagent.sh: unrecognized argument: '--bogus'. Type "
               "'install_linux_azcmagent.sh --help' for help."),
    _installer("installer_systemd_missing", r"requires systemd", ("systemd",), 130,
               "install_linux_azcmagent.sh: Azure Connected Machine Agent requires systemd, and "
               "that the command 'systemctl' be found in your PATH"),
    _installer("installer_unknown_distro", r"unknown linux distro", ("unknown linux distro",),
               131, "install_linux_azcmagent.sh: unknown linux distro. For supported OSs, see "
               "https://learn.microsoft.com/en-us/azure/azure-arc/servers/prerequisites"),
    _installer("installer_unsupported_platform", r"unsupported platform: ",
               ("unsupported platform",), 132,
               "install_linux_azcmagent.sh: unsupported platform: armv7l:Linux."),
    _installer("installer_unsupported_distro",
               r"unsupported Linux distribution: |ARM64 for .{0,80}is currently not supported",
               ("unsupported linux distribution", "currently not supported"), 133,
               "install_linux_azcmagent.sh: unsupported Linux distribution: centos:6.10"),
    _installer("installer_azure_vm",
               r"cannot install Azure Connected Machine agent on an Azure Virtual Machine",
               ("azure virtual machine",), 141,
               "install_linux_azcmagent.sh: cannot install Azure Connected Machine agent on an "
               "Azure Virtual Machine."),
    _installer("installer_bad_altdownload",
               r"invalid --altdownload link|Unable to copy altdownload file",
               ("altdownload",), 142,
               "install_linux_azcmagent.sh: invalid --altdownload link: ftp://example"),
    _installer("installer_package_failed", r"error installing azcmagent \(exit code",
               ("error installing azcmagent",), 143,
               "install_linux_azcmagent.sh: error installing azcmagent (exit code: 100). See "
               "'apt' command logs for more information."),
    _installer("installer_apt_lock", r"still busy after 5 minutes", ("still busy",), 145,
               "install_linux_azcmagent.sh: file /var/lib/dpkg/lock-frontend or "
               "/var/lib/apt/lists/lock is still busy after 5 minutes."),
    _installer("installer_repo_download",
               r"download of https://packages\.microsoft\.com/\S{0,300} errored",
               ("packages.microsoft.com",), 146,
               "install_linux_azcmagent.sh: download of https://packages.microsoft.com/config/"
               "ubuntu/22.04/packages-microsoft-prod.deb errored"),
    _installer("installer_desired_version", r"desired_?version not found",
               ("version not found",), 147,
               "install_linux_azcmagent.sh: desired_version not found: 1.99", platform="linux"),
    _installer("installer_curl_permission", r"curl permission error", ("curl permission",), 157,
               "install_linux_azcmagent.sh: curl permission error"),
    _installer("installer_msi_disk_full", r"Installation failed: \[112\]",
               ("installation failed",), 158,
               "Installation failed: [112]: There is not enough space on the disk."),
    _installer("installer_msi_busy", r"Installation failed: \[1618\]",
               ("installation failed",), 159,
               "Installation failed: [1618]: Another installation is already in progress."),
    _installer("installer_msi_log", r"Installation failed: \[1622\]",
               ("installation failed",), 160,
               "Installation failed: [1622]: Error opening installation log file."),
    _installer("installer_msi_fatal", r"Installation failed: \[1603\]",
               ("installation failed",), 156,
               "Installation failed: [1603]: Fatal error during installation."),
    _installer("installer_msiexec", r"Installation failed: \[\d{1,6}\]",
               ("installation failed",), 149,
               "Installation failed: [1625]: This installation is forbidden by system policy."),
    _installer("installer_x64_only", r"only compatible with X64", ("x64",), 153,
               "Unsupported: Azure Connected Machine Agent is only compatible with X64 operating "
               "systems"),
    _installer("installer_powershell_old", r"requires PowerShell version", ("powershell",), 154,
               "Azure Connected Machine Agent requires PowerShell version 4.0 or later"),
    _installer("installer_msi_download", r"Download failed: ", ("download failed",), 148,
               "Download failed: The remote name could not be resolved: "
               "'download.microsoft.com'"),
    _p("installer_no_matching_version", r"No matching version found for prefix",
       ("no matching version",), C.INVALID_INPUT, FAIL_HOST,
       "The agent version prefix asked of the install script matches no published version.",
       "Ask for a published MAJOR.MINOR agent version.",
       "No matching version found for prefix 1.99"),
    # --- configuration that one message pins down -----------------------------------------
    _p("private_link_scope_required", r"Private Link Scope resource ID must be provided",
       ("private link scope",), C.INVALID_INPUT, FAIL_HOST,
       "The Arc endpoints resolve to private addresses, so the agent needs the Private Link "
       "Scope to connect through.",
       "Set private_link_scope (the PLS resource id) for these hosts.",
       "Private Link Scope resource ID must be provided as endpoint gbl.his.arc.azure.com is "
       "configured private", doc_url=PRIVATE_LINK_URL),
    # --- Entra ID and ARM answers, by their codes (fleet.azcm.patterns_cloud) ---------------
    *ENTRA,
    *ARM,
    _p("arm_resource_gone",
       r"ResourceNotFound|could not be found|\b404\b",
       ("resourcenotfound", "could not be found", "404"), C.STALE_RESOURCE, DISCONNECT_LOCAL,
       "The Azure resource is already gone, so deleting it fails while the agent still points "
       "at it.",
       "Disconnect locally with `azcmagent disconnect --force-local-only`, then connect again "
       "(arcfleet does this when the playbook allows `disconnect_force_local_only`, as the "
       "reconnect playbook does).",
       "Code: ResourceNotFound Message: The Resource 'Microsoft.HybridCompute/machines/web01' "
       "could not be found.", doc_url=DISCONNECT_URL, only_with_codes=("AZCM0043", "AZCM0063")),
    # --- the local agent --------------------------------------------------------------------
    _p("himds_unreachable",
       r"(?:localhost|127\.0\.0\.1):40342.{0,256}(?:refused|actively refused)"
       r"|himds\.sock.{0,128}(?:refused|no such file)|himds (?:is )?not (?:running|responding)",
       ("40342", "himds"), C.AGENT_SERVICE, RESTART,
       "The local himds service is not listening.",
       "Start or restart himds (himdsd on Linux), then retry.",
       "Get \"http://localhost:40342/agentstatus\": dial tcp 127.0.0.1:40342: connect: "
       "connection refused"),
    _p("himds_change_token",
       # the message, not the code's short name ("Unable to Obtain Change Token"): a bare code
       # line must not outrank the message that says why
       r"failed to obtain (?:a )?change token|himds (?:is )?not (?:yet )?ready",
       ("change token", "not ready", "not yet ready"), C.AGENT_SERVICE, WAIT_HIMDS,
       "himds is not ready yet; usual in the first minutes after install.",
       "Wait for himds to answer (`azcmagent show`); arcfleet polls it up to the playbook's "
       "`himds_wait_s`, restarts it once if it is stopped, then retries.",
       "Failed to obtain change token", code="AZCM0064"),
    _p("already_connected", r"(?:machine|agent|server) is already connected",
       ("already connected",), C.RESOURCE_CONFLICT, FAIL_HOST,
       "The agent is already connected; it may be to another subscription, group or tenant.",
       "Compare `azcmagent show --json` with the target; disconnect first if it should move.",
       "The machine is already connected to Azure", code="AZCM0067"),
    # --- the host ---------------------------------------------------------------------------
    _p("sudo_password_required",
       r"sudo: (?:a )?password is required|sudo: a terminal is required|sudo: no tty present"
       r"|is not in the sudoers file|sudo: \d{1,3} incorrect password",
       ("sudo",), C.ELEVATION, FAIL_HOST,
       "sudo asked for a password (or refused the user), so nothing ran as root.",
       "Give the login user passwordless sudo (NOPASSWD) for azcmagent, or log in as root.",
       "sudo: a password is required"),
    _p("must_be_root",
       r"You must be root|must be run as root|requires? (?:root|administrator|admin|elevated) "
       r"(?:access|privileges|permissions)|Admin Privileges Needed",
       ("root", "administrator", "admin", "elevated"), C.ELEVATION, ELEVATE,
       "azcmagent was not run as root / an elevated Administrator.",
       "Run it through sudo (become) or an elevated session.",
       "You must be root to execute /usr/bin/azcmagent"),
    _p("agent_not_found",
       r"azcmagent(?:\.exe)?'?:? (?:command )?not found|azcmagent(?:\.exe)?: No such file"
       r"|'azcmagent(?:\.exe)?' is not recognized|\bcommand not found\b"
       r"|is not recognized as (?:the name of a cmdlet|an internal or external command)"
       r"|(?:wird|wurde) nicht als Name eines Cmdlet",
       ("not found", "no such file", "not recognized", "nicht als name"), C.AGENT_MISSING,
       FAIL_HOST,
       "azcmagent is not installed on the host (or not on PATH).",
       "Install the Connected Machine agent with Microsoft's install script "
       "(install_linux_azcmagent.sh / install_windows_azcmagent.ps1), then rerun the host.",
       "bash: azcmagent: command not found", doc_url=INSTALL_URL),
    _p("os_discovery_failed", r"Failed to discover OS information", ("discover os",),
       C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not read OS information (a broken PATH or system tool on the host).",
       "Check the host's PATH and system tools the error names, then retry.",
       "level=error msg=\"Failed to discover OS information for onboarding\""),
    _p("disk_full", r"no space left on device|not enough space on the disk",
       ("no space left", "not enough space"), C.HOST_PREREQUISITE, FAIL_HOST,
       "The host's disk is full.", "Free disk space on the host, then retry.",
       "write /var/opt/azcmagent/log/azcmagent.log: no space left on device"),
    # --- network ------------------------------------------------------------------------------
    *NETWORK,
    # --- generic Entra error: after the specific ones above --------------------------------
    _p("aad_error", r"AADSTS\d{4,8}", ("aadsts",), C.CREDENTIALS, FAIL_HOST,
       "Entra ID refused the sign-in; the AADSTS code says why.",
       "Look the AADSTS code up in the Entra ID error reference and fix the app or tenant.",
       "AADSTS50034: The user account does not exist in the directory.",
       doc_url=ENTRA_ERRORS_URL),
)

#: a line that contains none of these (lower-cased) cannot match any pattern nor hold a code
KEYWORDS: tuple[str, ...] = tuple(
    sorted({k for p in PATTERNS for k in p.keywords} | {"azcm"}, key=len)
)


def may_match(lower_line: str) -> bool:
    """Cheap pre-filter: whether any pattern could match this lower-cased line.

    Plain substring tests beat one big case-insensitive alternation by an order of magnitude.
    """
    return any(map(lower_line.__contains__, KEYWORDS))

CODE_RE = re.compile(r"\bAZCM(\d{4})\b", re.IGNORECASE)
CORRELATION_RE = re.compile(
    r"(?:Correlation ?ID\s{0,3}[=:]\s{0,3}|RequestCorrelationId\s{0,3}[=:]\s{0,3}"
    r"|\"correlationId\"\s{0,3}:\s{0,3}\")([0-9A-Za-z][0-9A-Za-z-]{0,63})",
    re.IGNORECASE,
)
RESOURCE_ID_RE = re.compile(
    r"/subscriptions/[^/\s'\"]{1,64}/resource[gG]roups/[^/\s'\"]{1,90}"
    r"/providers/Microsoft\.HybridCompute/machines/[^/\s'\"?#]{1,64}",
    re.IGNORECASE,
)
RETRY_AFTER_RE = re.compile(
    r"(?:retry[- ]after\W{0,6}|try again after\W{0,3})(\d{1,6}(?:\.\d{1,3})?)", re.IGNORECASE
)
NAMESPACE_RE = re.compile(r"namespace '([^']{1,128})'", re.IGNORECASE)
ACTION_RE = re.compile(r"perform action '([^']{1,256})'", re.IGNORECASE)
AADSTS_RE = re.compile(r"\b(AADSTS\d{4,8})\b")
SUCCESS_RE = re.compile(
    r"Connected machine to Azure|Successfully Onboarded Resource to Azure", re.IGNORECASE
)


def by_name(name: str) -> MessagePattern:
    for candidate in PATTERNS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)

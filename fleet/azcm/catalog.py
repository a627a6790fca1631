"""Every AZCM code arcfleet knows, as typed data: what it means, why it happens, what to do.

One code can have several meanings (:class:`CodeEntry` rows): Microsoft renumbered and re-described
codes between agent releases and between versions of the install scripts. :func:`lookup` picks the
meaning that applies to an agent version when the version is known, and the current meaning when it
is not. :func:`meanings` returns all of them (``arcfleet codes AZCM0064`` shows every one).

Sources (see docs/codes.md): the current error-code and exit-code tables of the onboarding
troubleshooting page, the 2021 version of that table, the Oct-2022 and Nov-2023 revisions, the first
(Oct-2025) exit-code table, and the codes the Linux and Windows install scripts use. Causes and
fixes below are arcfleet's own wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from fleet.azcm.diagnosis import FAIL_HOST, NONE, RETRY, Action, ActionKind, Category
from fleet.azcm.diagnosis import Remediation as Rm

LEARN = "https://learn.microsoft.com/azure/azure-arc/servers"
TROUBLESHOOT_URL = f"{LEARN}/troubleshoot-agent-onboard"
PREREQ_URL = f"{LEARN}/prerequisites"
PERMISSIONS_URL = f"{LEARN}/prerequisites#required-permissions"
PROVIDERS_URL = f"{LEARN}/prerequisites#azure-resource-providers"
SUPPORTED_OS_URL = f"{LEARN}/prerequisites#supported-operating-systems"
NETWORK_URL = f"{LEARN}/network-requirements"
NETWORK_TROUBLESHOOT_URL = f"{LEARN}/troubleshoot-networking"
PROXY_URL = f"{LEARN}/manage-agent-proxy-settings"
CHECK_URL = f"{LEARN}/azcmagent-check"
CONNECT_URL = f"{LEARN}/azcmagent-connect"
DISCONNECT_URL = f"{LEARN}/azcmagent-disconnect"
MANAGE_URL = f"{LEARN}/manage-agent"
PRIVATE_LINK_URL = f"{LEARN}/private-link-security"
THROTTLING_URL = (
    "https://learn.microsoft.com/azure/azure-resource-manager/management/"
    "request-limits-and-throttling"
)
AZURE_VM_URL = "https://aka.ms/azcmagent-testwarning"
ENTRA_ERRORS_URL = "https://learn.microsoft.com/entra/identity-platform/reference-error-codes"
ARM_ERRORS_URL = (
    "https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/"
    "common-deployment-errors"
)
RG_NOT_FOUND_URL = (
    "https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-not-found"
)
POLICY_URL = "https://learn.microsoft.com/azure/governance/policy/troubleshoot/general"
ROLES_URL = (
    "https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/management-and-"
    "governance"
)
TLS_URL = "https://learn.microsoft.com/azure/azure-arc/network-requirements-consolidated"
CLOCK_URL_LINUX = "https://learn.microsoft.com/azure/virtual-machines/linux/time-sync"
CLOCK_URL = (
    "https://learn.microsoft.com/windows-server/networking/windows-time-service/"
    "windows-time-service-tools-and-settings"
)
INSTALL_URL = f"{LEARN}/onboard-portal"
AZURE_LOCAL_URL = "https://aka.ms/install-arc-on-hci-host"

#: agents older than this used the 2021 meanings of AZCM0064..0068 and AZCM0104. The boundary is an
#: inference: 1.21 is the release that accepted subscription names (the failure that is the current
#: AZCM0068), and the 2021 table stayed published until the Oct-2022 rewrite, right after it.
MEANINGS_CHANGED_IN: tuple[int, ...] = (1, 21)

CODE_RE = re.compile(r"^(?:AZCM)?0{0,4}(\d{1,4})$", re.IGNORECASE)


class Source(StrEnum):
    AGENT = "agent"  # azcmagent itself; its exit status is the code's number
    INSTALLER = "installer"  # install_linux_azcmagent.sh / install_windows_azcmagent.ps1 (exit 1)


class Era(StrEnum):
    CURRENT = "current"  # today's troubleshooting page (error and exit-code tables)
    T2021 = "2021"  # the 2021 error table
    T2022 = "2022-10"  # the Oct-2022 revision
    T2023 = "2023-11"  # the Nov-2023 installer rows
    T2025 = "2025-10"  # the first exit-code table (Oct 2025), before TPM codes were renumbered
    OLD_INSTALLER = "installer-1.17"  # the 1.17-era Linux install script


Version = tuple[int, ...]


@dataclass(frozen=True)
class CodeEntry:
    """One meaning of one AZCM code."""

    code: str  # "AZCM0041"
    name: str  # short name; the agent's own where it prints one ("Network Error")
    cause: str
    fix: str
    category: Category
    action: Action
    doc_url: str = TROUBLESHOOT_URL
    source: Source = Source.AGENT
    era: Era = Era.CURRENT
    since: Version | None = None  # first agent version with this meaning (inclusive)
    until: Version | None = None  # first agent version without it (exclusive)
    platform: str | None = None  # "linux" / "windows" when the meaning is per OS
    note: str = ""

    @property
    def number(self) -> int:
        return int(self.code[4:])

    def applies_to(self, version: Version) -> bool:
        if self.since is not None and version[: len(self.since)] < self.since:
            return False
        return not (self.until is not None and version[: len(self.until)] >= self.until)

    @property
    def agents(self) -> str:
        """The agent versions this meaning applies to, for people."""
        low = ".".join(map(str, self.since)) if self.since else ""
        high = ".".join(map(str, self.until)) if self.until else ""
        if low and high:
            return f">={low},<{high}"
        if low:
            return f">={low}"
        if high:
            return f"<{high}"
        return "any" if self.era is Era.CURRENT else "unknown"


def parse_version(text: str | None) -> Version | None:
    """``"1.51.03008.304"`` -> ``(1, 51, 3008, 304)``; None when it does not look like one."""
    if not text:
        return None
    match = re.match(r"\s*v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,6}))?(?:\.(\d{1,6}))?", text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def normalize_code(text: str) -> str | None:
    """``"azcm64"``, ``"0064"``, ``"64"`` -> ``"AZCM0064"``; None when it is not a code."""
    match = CODE_RE.match(text.strip())
    if not match:
        return None
    return f"AZCM{int(match.group(1)):04d}"


def _rm(name: Rm) -> Action:
    return Action(ActionKind.REMEDIATE, name)


RESTART = _rm(Rm.RESTART_AGENT_SERVICE)
ELEVATE = _rm(Rm.RERUN_ELEVATED)
REFRESH_TOKEN = _rm(Rm.REFRESH_TOKEN)
WAIT_HIMDS = _rm(Rm.WAIT_FOR_HIMDS)

C = Category
OLD = MEANINGS_CHANGED_IN


def _e(
    code: int,
    name: str,
    category: Category,
    action: Action,
    cause: str,
    fix: str,
    *,
    doc_url: str = TROUBLESHOOT_URL,
    source: Source = Source.AGENT,
    era: Era = Era.CURRENT,
    since: Version | None = None,
    until: Version | None = None,
    platform: str | None = None,
    note: str = "",
) -> CodeEntry:
    return CodeEntry(
        f"AZCM{code:04d}", name, cause, fix, category, action, doc_url=doc_url, source=source,
        era=era, since=since, until=until, platform=platform, note=note,
    )


_HIMDS_FIX = (
    "Run as root/Administrator and make sure the himds service is up (systemctl restart himdsd on "
    "Linux, Restart-Service himds on Windows); right after an install give it a minute, then retry."
)
_TPM_FIX = "Enable the TPM in firmware and make sure the agent can open it, then retry."
_INPUT_FIX = "Fix the value in the inventory; `azcmagent connect --help` lists the accepted forms."

_ENTRIES: tuple[CodeEntry, ...] = (
    # --- azcmagent, current table (0000-0108) -------------------------------------------------
    _e(0, "No Error", C.CONNECTED, NONE,
       "The command finished without error.", "Nothing to do."),
    _e(1, "Default Error", C.UNKNOWN, RETRY,
       "The agent failed without saying why.",
       "Retry once; if it fails again collect `azcmagent logs` and open a support case."),
    _e(2, "Internal Error", C.AGENT_SERVICE, RESTART,
       "Something inside the agent failed.",
       "Restart the himds service and retry; open a support case if it keeps happening."),
    _e(3, "Operation Not Supported", C.HOST_PREREQUISITE, FAIL_HOST,
       "This agent version or OS does not support the requested command.",
       "Upgrade the agent or use a command this OS and version support."),
    _e(4, "Arc Proxy Not Running", C.AGENT_SERVICE, RESTART,
       "The local Arc proxy service (arcproxy) is not running.",
       "Start himds and arcproxy (arcproxyd on Linux), then retry."),
    _e(5, "No File Logger", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not open its log file.",
       "Check that the agent's log directory exists, is writable and the disk is not full."),
    _e(6, "Initialization Failed", C.AGENT_SERVICE, RETRY,
       "The agent could not start up (network or local permissions).",
       "Check network access and local permissions, then run connect again."),
    _e(11, "Control C Pressed", C.INTERRUPTED, RETRY,
       "azcmagent was interrupted (Ctrl+C / SIGINT); under automation usually a dropped session "
       "or a killed command.",
       "Run the command again and let it finish."),
    _e(12, "Invalid Access Token", C.CREDENTIALS, REFRESH_TOKEN,
       "The access token passed to azcmagent was rejected (expired or for the wrong audience).",
       "Pass a new access token for https://management.azure.com/ (e.g. from `az account "
       "get-access-token`); with service-principal or device login, open a support case."),
    _e(16, "Missing Mandatory Parameter", C.INVALID_INPUT, FAIL_HOST,
       "A required option was not given to the command.",
       "See which option the output names and add it; `azcmagent <command> --help` lists them."),
    _e(18, "Admin Privileges Needed", C.ELEVATION, ELEVATE,
       "azcmagent was not run as root / an elevated Administrator.",
       "Run it again elevated (sudo, or an elevated WinRM session)."),
    _e(19, "Configuration File Not Found", C.INVALID_INPUT, FAIL_HOST,
       "The --config file path does not exist or cannot be read.",
       "Point --config at a readable file."),
    _e(20, "Unknown Region", C.INVALID_INPUT, FAIL_HOST,
       "The --location value is not a region azcmagent knows.",
       "Correct the region name (e.g. `eastus`) and check Arc is offered there."),
    _e(23, "Invalid Argument", C.INVALID_INPUT, FAIL_HOST,
       "One of the option values is malformed or not allowed.", _INPUT_FIX),
    _e(26, "Network Error", C.NETWORK, RETRY,
       "An Azure endpoint could not be reached (DNS, proxy, firewall) or an Azure service was "
       "briefly unavailable.",
       "Run `azcmagent check --location <region>` on the host; if it reaches Azure through a "
       "proxy, set azure.proxy_url (arc_proxy_url) in the inventory; behind Private Link, pass "
       "--private-link-scope.", doc_url=NETWORK_URL),
    _e(27, "Configuration Conflict", C.INVALID_INPUT, FAIL_HOST,
       "Settings in the agent's local configuration contradict each other or the command.",
       "Inspect `azcmagent config list`, clear the conflicting setting, retry."),
    _e(28, "TPM Open Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not open the TPM device.", _TPM_FIX),
    # The documented cause is the credentials, but the same code wraps every failure to get a
    # token (DNS, proxy, TLS, a dropped connection): only the message names the cause, so the
    # code alone is never a reason to stop other hosts (see fleet.azcm.classifier).
    _e(41, "Failed to Get Access Token", C.UNKNOWN, RETRY,
       "The agent got no token from Entra ID, and the message does not say why: a wrong or "
       "expired secret, an app or tenant mix-up, or the way to login.microsoftonline.com.",
       "Read the message after the code: an AADSTS code names a credential problem (fix the "
       "service principal once for all hosts); a socket, DNS, proxy or TLS error names the "
       "network (`azcmagent check`)."),
    _e(42, "Failed to Create Resource", C.PERMISSIONS, FAIL_HOST,
       "ARM refused to create the Arc machine resource; the message that follows says why.",
       "Read the ARM message: grant 'Azure Connected Machine Onboarding' on the resource group, "
       "register the resource providers, or wait out throttling.", doc_url=PERMISSIONS_URL),
    _e(43, "Failed to Delete Resource", C.PERMISSIONS, FAIL_HOST,
       "ARM refused to delete the Arc machine resource during disconnect.",
       "The 'Azure Connected Machine Onboarding' role cannot delete machines: give the principal "
       "'Azure Connected Machine Resource Administrator' on the resource group; if the resource "
       "is already gone, disconnect with --force-local-only.", doc_url=PERMISSIONS_URL),
    _e(44, "Resource Already Exists", C.RESOURCE_CONFLICT, FAIL_HOST,
       "An Arc machine with this resource name already exists in the resource group.",
       "Give the host another --resource-name, or delete the old resource first."),
    _e(45, "Failed to Update Public Key", C.NETWORK, RETRY,
       "The agent could not send its new public key while reconnecting.",
       "Check connectivity to Azure, then retry; the agent log has the detail."),
    _e(61, "Agent Communication Error", C.AGENT_SERVICE, WAIT_HIMDS,
       "azcmagent could not talk to the local himds service.", _HIMDS_FIX),
    _e(62, "Failed to Onboard Server to Azure", C.STALE_RESOURCE, FAIL_HOST,
       "Connecting failed part-way; the Azure resource may exist without a working agent behind "
       "it.",
       "Read the error that follows; if the resource was created, delete it before retrying."),
    _e(63, "Failed to Disconnect Server from Azure", C.STALE_RESOURCE, FAIL_HOST,
       "Disconnecting failed; Azure and the host may disagree about the connection.",
       "Delete the Azure resource, then run `azcmagent disconnect --force-local-only` on the "
       "host.", doc_url=DISCONNECT_URL),
    _e(64, "Unable to Obtain Change Token", C.AGENT_SERVICE, WAIT_HIMDS,
       "The himds service did not answer (typical just after install).", _HIMDS_FIX,
       since=OLD),
    _e(65, "Unable to Obtain Agent Metadata", C.AGENT_SERVICE, WAIT_HIMDS,
       "The himds service did not return the agent's metadata.", _HIMDS_FIX, since=OLD),
    _e(66, "Unable to Obtain Agent Status", C.AGENT_SERVICE, WAIT_HIMDS,
       "The himds service did not return the agent's status.", _HIMDS_FIX, since=OLD),
    _e(67, "Machine Already Connected", C.RESOURCE_CONFLICT, FAIL_HOST,
       "The agent on this host is already connected (maybe to another subscription, group or "
       "tenant).",
       "Compare `azcmagent show --json` with the target; if it is elsewhere, disconnect first "
       "(arcfleet does so only when policy allows)."),
    _e(68, "Unable to Fetch Subscription ID", C.INVALID_INPUT, FAIL_HOST,
       "A subscription name was given and could not be turned into its GUID.",
       "Pass the subscription GUID instead of its name.", since=OLD),
    _e(69, "Local Config Update Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not write its local configuration.",
       "Check ownership and permissions of the agent's config directory, then retry."),
    _e(70, "Unable to Obtain Local Configuration", C.AGENT_SERVICE, RESTART,
       "The himds service did not return the local configuration.", _HIMDS_FIX),
    _e(72, "Extension Tool Error", C.HOST_PREREQUISITE, FAIL_HOST,
       "An extension helper failed.", "Read the extension logs on the host, fix, retry."),
    _e(73, "Partner Configuration Unavailable", C.INVALID_INPUT, FAIL_HOST,
       "The partner-integration settings could not be read.",
       "Check the partner configuration, then retry."),
    _e(74, "Extension Add Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "An extension could not be added.", "Check the extension package, then retry."),
    _e(75, "Cloud Configuration Unavailable", C.NETWORK, RETRY,
       "The agent could not fetch its cloud configuration from Azure.",
       "Check connectivity to the Azure endpoints, then retry.", doc_url=NETWORK_URL),
    _e(76, "TPM Connect Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "Connecting with TPM-based authentication failed.", _TPM_FIX),
    _e(81, "Failed to Get MSI Certificate from HIS", C.STALE_RESOURCE, FAIL_HOST,
       "The managed-identity certificate could not be downloaded, so the agent cannot talk to "
       "Arc.",
       "Delete the Azure resource, run `azcmagent disconnect --force-local-only`, connect again."),
    _e(82, "TPM Certificate Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "himds could not get the managed-identity certificate using the TPM.",
       "Make sure himds runs and the TPM is reachable, then retry."),
    _e(83, "Persistent Credential Registration Failed", C.NETWORK, RETRY,
       "The Arc persistent credential could not be registered with Azure.",
       "Check connectivity, then retry; the agent log has the detail.", doc_url=NETWORK_URL),
    _e(101, "Command Execution Error", C.INVALID_INPUT, FAIL_HOST,
       "The command could not be parsed or run.",
       "Check the command line with `azcmagent <command> --help`; the agent log has the detail."),
    _e(102, "Failed to Generate Resource Name", C.INVALID_INPUT, FAIL_HOST,
       "The host name could not be read to name the resource.",
       "Set resource_name for the host (letters, digits, '-' and '_', not ending in '-' or '_')."),
    _e(103, "Failed to Generate RSA Keys", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not create its RSA key pair.", "Open a support case."),
    _e(104, "Failed to Retrieve Private Key", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent's private key could not be read back.",
       "Check the key store on the host, then retry.", since=OLD,
       note="Listed only in the exit-code table today."),
    _e(105, "Failed to Get Signed Message", C.NETWORK, RETRY,
       "The agent did not get a signed message back from Arc.",
       "Check connectivity to the Arc service, then retry.", doc_url=NETWORK_URL),
    _e(106, "Failed to Save Parameters File", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not write its parameters file.",
       "Free disk space and check permissions, then retry.",
       note="Listed only in the exit-code table."),
    _e(107, "Failed to Retrieve Certificate", C.HOST_PREREQUISITE, FAIL_HOST,
       "The certificate could not be read from the certificate store.",
       "Check the host's certificate store, then retry."),
    _e(108, "Failed to Process TPM Keys", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not use the TPM keys.", _TPM_FIX),
    # --- azcmagent, 2021 table: removed codes and older meanings ------------------------------
    _e(13, "Invalid Tags", C.INVALID_INPUT, FAIL_HOST,
       "The --tags value could not be parsed.",
       "Write tags as Name=Value pairs separated by commas; quote names or values that contain "
       "spaces with single quotes.", era=Era.T2021, until=OLD),
    _e(14, "Invalid Cloud", C.INVALID_INPUT, FAIL_HOST,
       "The --cloud value is not a cloud the agent supports.",
       "Use a supported cloud name such as AzureCloud or AzureUSGovernment.",
       era=Era.T2021, until=OLD),
    _e(15, "Invalid Correlation ID", C.INVALID_INPUT, FAIL_HOST,
       "The --correlation-id value is not a GUID.", "Pass a GUID or leave the option out.",
       era=Era.T2021, until=OLD),
    _e(17, "Invalid Resource Name", C.INVALID_INPUT, FAIL_HOST,
       "The resource name has characters Azure does not allow.",
       "Use letters, digits, '-' and '_' only, not ending in '-' or '_'.",
       era=Era.T2021, until=OLD),
    _e(64, "Agent Service Not Responding", C.AGENT_SERVICE, RESTART,
       "The himds service did not respond.",
       "Start himds if it is stopped; if it runs, wait a minute and retry.",
       era=Era.T2021, until=OLD),
    _e(65, "Internal Agent Communication Error", C.AGENT_SERVICE, FAIL_HOST,
       "Components of the agent could not talk to each other.", "Open a support case.",
       era=Era.T2021, until=OLD),
    _e(66, "Agent Web Service Unavailable", C.AGENT_SERVICE, RESTART,
       "The agent's local web service did not respond.",
       "Restart himds and retry; open a support case if it persists.",
       era=Era.T2021, until=OLD),
    _e(67, "Agent Already Connected", C.RESOURCE_CONFLICT, FAIL_HOST,
       "The agent is already connected to Azure.",
       "Disconnect the agent first if it should point elsewhere, then connect again.",
       era=Era.T2021, until=OLD, doc_url=MANAGE_URL),
    _e(68, "Internal Disconnect Error", C.AGENT_SERVICE, FAIL_HOST,
       "The agent failed internally while disconnecting from Azure.", "Open a support case.",
       era=Era.T2021, until=OLD),
    _e(104, "Failed to Read System Information", C.ELEVATION, ELEVATE,
       "The agent could not read system information, usually for lack of privileges.",
       "Run azcmagent as root / an elevated Administrator.", era=Era.T2021, until=OLD),
    _e(105, "MSI Certificate Download Failed", C.STALE_RESOURCE, FAIL_HOST,
       "The managed-identity certificate could not be downloaded.",
       "Delete the Azure resource and connect again.", era=Era.T2022,
       note="Oct-2022 wording; the agent version where it changed is not documented."),
    # --- first exit-code table (Oct 2025): TPM codes before renumbering ------------------------
    _e(76, "TPM Open Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not open the TPM device.", _TPM_FIX, era=Era.T2025,
       note="Later renumbered to 28; the agent versions are not documented."),
    _e(77, "Failed to Process TPM Keys", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent could not use the TPM keys.", _TPM_FIX, era=Era.T2025,
       note="Later renumbered to 108."),
    _e(78, "TPM Connect Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "Connecting with TPM-based authentication failed.", _TPM_FIX, era=Era.T2025,
       note="Later renumbered to 76."),
)

_I = Source.INSTALLER
_INSTALLER: tuple[CodeEntry, ...] = (
    _e(127, "Alt Download Is .deb", C.INVALID_INPUT, FAIL_HOST,
       "The install script's --altdownload points at a file ending in .deb, which it refuses.",
       "Pass the alternate download without the .deb suffix.", source=_I, platform="linux"),
    _e(128, "Alt Download Is .rpm", C.INVALID_INPUT, FAIL_HOST,
       "The install script's --altdownload points at a file ending in .rpm, which it refuses.",
       "Pass the alternate download without the .rpm suffix.", source=_I, platform="linux"),
    _e(129, "Bad Installer Argument", C.INVALID_INPUT, FAIL_HOST,
       "The install script got an option it does not know, or its temp directory is not "
       "writable.",
       "Check the install script options and that --tempdir is writable.",
       source=_I, platform="linux"),
    _e(130, "systemd Required", C.HOST_PREREQUISITE, FAIL_HOST,
       "The host has no systemctl; the agent needs systemd.",
       "Use a systemd-based supported distribution.", doc_url=SUPPORTED_OS_URL, source=_I,
       platform="linux"),
    _e(131, "Unknown Linux Distribution", C.HOST_PREREQUISITE, FAIL_HOST,
       "The install script could not tell which Linux distribution this is.",
       "Install on a supported distribution.", doc_url=SUPPORTED_OS_URL, source=_I,
       platform="linux"),
    _e(132, "Unsupported Platform", C.HOST_PREREQUISITE, FAIL_HOST,
       "The CPU architecture or platform is not supported.",
       "Install on a supported architecture.", doc_url=SUPPORTED_OS_URL, source=_I,
       platform="linux"),
    _e(133, "Unsupported Distribution", C.HOST_PREREQUISITE, FAIL_HOST,
       "This distribution version (or its ARM64 build) is not supported.",
       "Install on a supported distribution and architecture.", doc_url=SUPPORTED_OS_URL,
       source=_I, platform="linux"),
    _e(141, "Azure VM Refused", C.HOST_PREREQUISITE, FAIL_HOST,
       "The host is an Azure virtual machine; the agent refuses to install there.",
       "Do not onboard Azure VMs to Arc; for test labs only, see the test-warning page.",
       doc_url=AZURE_VM_URL, source=_I, platform="linux"),
    _e(142, "Bad Alt Download", C.INVALID_INPUT, FAIL_HOST,
       "The --altdownload link is invalid or the file could not be copied to the temp directory.",
       "Fix the --altdownload URL or path.", source=_I, platform="linux"),
    _e(143, "Package Install Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "apt/dnf/zypper failed to install the azcmagent package.",
       "Read the package manager's output on the host, fix the repository or dependency issue, "
       "retry.", source=_I, platform="linux"),
    _e(145, "Package Lock Busy", C.HOST_PREREQUISITE, RETRY,
       "Another apt/dpkg run held the package lock for more than 5 minutes.",
       "Wait for the other package operation (often unattended upgrades) to end, then retry.",
       source=_I, platform="linux"),
    _e(146, "Repo Config Download Failed", C.NETWORK, RETRY,
       "The packages-microsoft-prod repository package could not be downloaded.",
       "Allow packages.microsoft.com through the firewall/proxy, then retry.",
       doc_url=NETWORK_URL, source=_I, platform="linux"),
    _e(147, "Desired Version Not Found", C.INVALID_INPUT, FAIL_HOST,
       "The --desiredversion asked of the Linux install script does not exist in the repository.",
       "Ask for an agent version that is published.", source=_I, platform="linux"),
    _e(147, "Azure VM Refused", C.HOST_PREREQUISITE, FAIL_HOST,
       "The Windows host is an Azure virtual machine; the agent refuses to install there.",
       "Do not onboard Azure VMs to Arc; for test labs only, see the test-warning page.",
       doc_url=AZURE_VM_URL, source=_I, platform="windows"),
    _e(148, "Installer Download Failed", C.NETWORK, RETRY,
       "The agent MSI could not be downloaded.",
       "Check proxy and firewall access to the download endpoint, then retry.",
       doc_url=NETWORK_URL, source=_I, platform="windows"),
    _e(149, "msiexec Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "msiexec returned an error the install script does not recognise.",
       "Look up the msiexec code it reports and read the installation log, then retry.",
       source=_I, platform="windows"),
    _e(150, "Generic Install Failure", C.UNKNOWN, FAIL_HOST,
       "The installation failed for a reason the script did not identify.",
       "Read the installer output and log; open a support case if unclear.",
       source=_I, platform="windows"),
    _e(151, ".NET Framework Too Old", C.HOST_PREREQUISITE, FAIL_HOST,
       "The required .NET Framework version is missing.",
       "Install the required .NET Framework, then retry.", doc_url=PREREQ_URL, source=_I,
       platform="windows"),
    _e(152, "Azure Local Host", C.HOST_PREREQUISITE, FAIL_HOST,
       "The host runs Azure Stack HCI / Azure Local, which registers with Arc its own way.",
       "Use the Azure Local registration instead of this tool.", doc_url=AZURE_LOCAL_URL,
       source=_I, platform="windows"),
    _e(153, "64-bit OS Required", C.HOST_PREREQUISITE, FAIL_HOST,
       "The OS is not 64-bit x64.", "Install on a supported x64 OS.", doc_url=PREREQ_URL,
       source=_I, platform="windows"),
    _e(154, "PowerShell Too Old", C.HOST_PREREQUISITE, FAIL_HOST,
       "Windows PowerShell is older than 3.0.", "Upgrade Windows PowerShell, then retry.",
       source=_I, platform="windows"),
    _e(155, "Installer Not Elevated", C.ELEVATION, ELEVATE,
       "The install script did not run as Administrator.",
       "Run the installer from an elevated session.", source=_I, platform="windows"),
    _e(156, "MSI Fatal Error", C.HOST_PREREQUISITE, FAIL_HOST,
       "msiexec failed fatally (1603).",
       "Read installationlog.txt under %SystemRoot%\\AzureConnectedMachineAgent\\temp, fix, "
       "retry.", source=_I, platform="windows"),
    _e(157, "curl Permission Error", C.HOST_PREREQUISITE, FAIL_HOST,
       "The install script could not run curl or write its output (curl exit 23).",
       "Make sure curl is installed and the install user can run it and write the temp "
       "directory.", source=_I, platform="linux"),
    _e(158, "Disk Full", C.HOST_PREREQUISITE, FAIL_HOST,
       "There was not enough disk space to install (msiexec 112).",
       "Free disk space, then retry.", source=_I, platform="windows"),
    _e(159, "Another Install Running", C.HOST_PREREQUISITE, RETRY,
       "Another Windows Installer operation was in progress (msiexec 1618).",
       "Wait for it to end, then retry.", source=_I, platform="windows"),
    _e(160, "Install Log Unwritable", C.HOST_PREREQUISITE, FAIL_HOST,
       "msiexec could not open its log file (1622).",
       "Make sure the installer log directory exists and is writable, then retry.",
       source=_I, platform="windows"),
    _e(171, "MSI Signature Invalid", C.HOST_PREREQUISITE, FAIL_HOST,
       "The downloaded agent MSI failed its signature check.",
       "Download the genuine Microsoft-signed MSI again (check for proxies that rewrite "
       "downloads).", source=_I, platform="windows"),
    # Nov-2023 meanings of installer codes that were re-described later.
    _e(153, "Unsupported Platform", C.HOST_PREREQUISITE, FAIL_HOST,
       "The system's platform is not supported by the agent.", "Install on a supported OS.",
       source=_I, era=Era.T2023),
    _e(154, "PowerShell Too Old", C.HOST_PREREQUISITE, FAIL_HOST,
       "Windows PowerShell is too old (that revision asked for 4.0).",
       "Upgrade Windows PowerShell, then retry.", source=_I, era=Era.T2023),
    _e(156, "Agent Install Failed", C.HOST_PREREQUISITE, FAIL_HOST,
       "The agent installation failed; an Azure VM is a common reason.",
       "Check the host is not an Azure VM and read %TEMP%\\installationlog.txt.",
       source=_I, era=Era.T2023),
    _e(157, "Repo Metadata Download Failed", C.NETWORK, RETRY,
       "The Microsoft Linux repository metadata could not be downloaded.",
       "Allow packages.microsoft.com through the firewall/proxy, then retry.",
       doc_url=NETWORK_URL, source=_I, era=Era.T2023),
    # The 1.17-era Linux script reported unsupported distributions per family.
    *(
        _e(n, f"Unsupported {distro}", C.HOST_PREREQUISITE, FAIL_HOST,
           f"The {distro} release is not supported by this (old) install script.",
           "Use a current install script on a supported distribution.",
           doc_url=SUPPORTED_OS_URL, source=_I, era=Era.OLD_INSTALLER, platform="linux")
        for n, distro in (
            (134, "CentOS"), (135, "Oracle Linux"), (136, "SLES"), (137, "Amazon Linux"),
            (138, "Debian"), (139, "Ubuntu"), (140, "Linux distribution"),
        )
    ),
)


@cache
def _by_code() -> dict[str, tuple[CodeEntry, ...]]:
    table: dict[str, list[CodeEntry]] = {}
    for entry in (*_ENTRIES, *_INSTALLER):
        table.setdefault(entry.code, []).append(entry)
    # current meaning first, then older eras in table order
    return {
        code: tuple(sorted(rows, key=lambda e: e.era is not Era.CURRENT))
        for code, rows in sorted(table.items())
    }


def all_entries() -> tuple[CodeEntry, ...]:
    """Every meaning of every code, ordered by code, current meaning first."""
    return tuple(entry for rows in _by_code().values() for entry in rows)


def meanings(code: str) -> tuple[CodeEntry, ...]:
    """All meanings of one code (any spelling :func:`normalize_code` accepts); () if unknown."""
    normal = normalize_code(code)
    return _by_code().get(normal, ()) if normal else ()


def lookup(
    code: str, agent_version: str | None = None, *, platform: str | None = None
) -> CodeEntry | None:
    """The meaning of ``code`` for this agent version (and OS, for installer codes).

    Unknown version: the current meaning. A code that only has historical meanings returns the
    newest of those whatever the version, since that is the best guess there is.
    """
    rows = meanings(code)
    if not rows:
        return None
    if platform is not None:
        rows = tuple(r for r in rows if r.platform in (None, platform)) or rows
    version = parse_version(agent_version)
    if version is not None:
        dated = [r for r in rows if (r.since or r.until) and r.applies_to(version)]
        if dated:
            return dated[0]
        current = [r for r in rows if r.era is Era.CURRENT and r.applies_to(version)]
        if current:
            return current[0]
    current = [r for r in rows if r.era is Era.CURRENT]
    return current[0] if current else rows[0]

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
from dataclasses import dataclass

from fleet.azcm.catalog import (
    CHECK_URL,
    DISCONNECT_URL,
    ELEVATE,
    NETWORK_TROUBLESHOOT_URL,
    NETWORK_URL,
    PERMISSIONS_URL,
    PRIVATE_LINK_URL,
    PROVIDERS_URL,
    PROXY_URL,
    REFRESH_TOKEN,
    RESTART,
    THROTTLING_URL,
    TROUBLESHOOT_URL,
    WAIT_HIMDS,
    lookup,
)
from fleet.azcm.diagnosis import FAIL_HOST, FAIL_RUN, RETRY, Action, ActionKind, Category
from fleet.azcm.diagnosis import Remediation as Rm

MAX_LINE = 4096

C = Category
DISCONNECT_LOCAL = Action(ActionKind.REMEDIATE, Rm.DISCONNECT_LOCAL)
LOGIN_HOST = r"login\.(?:windows\.net|microsoftonline\.com|microsoftonline\.us|chinacloudapi\.cn)"


@dataclass(frozen=True)
class MessagePattern:
    """One recognisable message and what it means."""

    name: str
    regex: re.Pattern[str]
    keywords: tuple[str, ...]  # lower-case literals; one must occur in the line
    category: Category
    action: Action
    cause: str
    fix: str
    doc_url: str = TROUBLESHOOT_URL
    code: str | None = None  # the code this message belongs to, when it has one
    only_with_codes: tuple[str, ...] = ()  # applies only when one of these codes was found
    sample: str = ""  # a line it matches (tests and `arcfleet codes --list` use it)

    def search(self, line: str) -> re.Match[str] | None:
        return self.regex.search(line)


def _p(
    name: str,
    regex: str,
    keywords: tuple[str, ...],
    category: Category,
    action: Action,
    cause: str,
    fix: str,
    sample: str,
    *,
    doc_url: str = TROUBLESHOOT_URL,
    code: str | None = None,
    only_with_codes: tuple[str, ...] = (),
) -> MessagePattern:
    return MessagePattern(
        name, re.compile(regex, re.IGNORECASE), keywords, category, action, cause, fix,
        doc_url=doc_url, code=code, only_with_codes=only_with_codes, sample=sample,
    )


def _installer(name: str, regex: str, keywords: tuple[str, ...], code: int, sample: str,
               *, platform: str | None = None) -> MessagePattern:
    """An install-script message: its meaning is the catalog entry of the code it reports."""
    full = f"AZCM{code:04d}"
    entry = lookup(full, platform=platform)
    assert entry is not None, full
    return _p(name, regex, keywords, entry.category, entry.action, entry.cause,
              entry.fix, sample, doc_url=entry.doc_url, code=full)


_GPO_NOTE = (
    " On Windows, a Group Policy that deletes user profiles older than N days at restart also "
    "deletes the himds service profile and its cached certificate: if that policy applies, "
    "disconnect the agent and connect it again."
)

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
    # --- Entra ID refusing the service principal ------------------------------------------
    _p("aad_invalid_secret", r"AADSTS7000215|Invalid client secret (?:is )?provided",
       ("aadsts7000215", "invalid client secret"), C.CREDENTIALS, FAIL_RUN,
       "Entra ID rejected the service principal secret: it is not a valid secret of this app "
       "(a secret id pasted instead of its value is a classic).",
       "Put the secret's value in the secret store and rerun; every host uses it.",
       "Failed to acquire authorization token from SPN: Invalid client secret is provided"),
    _p("aad_expired_secret", r"AADSTS7000222|client secret keys? (?:for|of) .{0,160}expired",
       ("aadsts7000222", "expired"), C.CREDENTIALS, FAIL_RUN,
       "The service principal's client secret has expired.",
       "Create a new client secret for the app, store it, rerun.",
       "AADSTS7000222: The provided client secret keys for app "
       "'00000000-0000-0000-0000-000000000000' are expired."),
    _p("aad_app_not_found",
       r"AADSTS700016|Application with identifier '[^']{0,128}' (?:was not|wasn't) found",
       ("aadsts700016", "application with identifier"), C.CREDENTIALS, FAIL_RUN,
       "The client id is not an application in this tenant (wrong id, a display name used as "
       "the id, or the wrong tenant).",
       "Use the app (client) id of the service principal and the tenant it lives in.",
       "Failed to acquire authorization token from SPN: Application with identifier "
       "'00000000-0000-0000-0000-000000000000' wasn't found in the directory "
       "'00000000-0000-0000-0000-000000000000'."),
    _p("aad_tenant_not_found", r"AADSTS90002|Tenant '[^']{0,128}' not found",
       ("aadsts90002", "tenant '"), C.CREDENTIALS, FAIL_RUN,
       "The tenant id does not name an existing tenant in this cloud.",
       "Correct tenant_id (and the cloud, if the tenant is sovereign).",
       "AADSTS90002: Tenant '11111111-2222-3333-4444-555555555555' not found."),
    # --- ARM ----------------------------------------------------------------------------------
    _p("arm_token_rejected",
       r"(?:Expired|Invalid)AuthenticationToken|access token (?:has )?expired",
       ("authenticationtoken", "token has expired", "token expired"), C.CREDENTIALS,
       REFRESH_TOKEN,
       "ARM rejected the access token passed with --access-token (expired or not for ARM).",
       "Mint a fresh token for https://management.azure.com/ and retry the host.",
       "Code: ExpiredAuthenticationToken Message: The access token expiry UTC time is earlier "
       "than current UTC time.", code="AZCM0012"),
    _p("arm_provider_not_registered",
       r"MissingSubscriptionRegistration|(?:is not|isn't) registered to use namespace",
       ("missingsubscriptionregistration", "registered to use namespace"),
       C.PERMISSIONS, FAIL_RUN,
       "The subscription has not registered the Azure Arc resource providers.",
       "Register Microsoft.HybridCompute, Microsoft.GuestConfiguration and "
       "Microsoft.HybridConnectivity once (`az provider register --namespace ...`), then rerun.",
       "Code: MissingSubscriptionRegistration httpStatusCode:409 The subscription is not "
       "registered to use namespace 'Microsoft.HybridCompute'.", doc_url=PROVIDERS_URL),
    _p("arm_throttled",
       r"TooManyRequests|(?:status ?code|httpStatusCode|status)\W{0,3}429\b"
       r"|\b429 Too Many Requests|excessive volume of traffic",
       ("toomanyrequests", "429", "excessive volume"), C.THROTTLED, RETRY,
       "ARM throttled the requests (HTTP 429): too many writes per second for this principal.",
       "arcfleet waits for Retry-After and retries; lower --concurrency if it keeps happening.",
       "Failed to create resource: Code=TooManyRequests Status Code=429 Retry-After: 17",
       doc_url=THROTTLING_URL),
    _p("arm_authorization_failed",
       r"AuthorizationFailed|does not have authorization to perform action"
       r"|(?:status ?code|httpStatusCode)\W{0,3}403\b",
       ("authorizationfailed", "does not have authorization", "403"), C.PERMISSIONS, FAIL_RUN,
       "The service principal lacks a role that allows creating Arc machines in this scope.",
       "Assign 'Azure Connected Machine Onboarding' (or Contributor) on the resource group to "
       "the service principal, wait for it to apply, rerun.",
       "Get ARM Resource Response: The client 'arc-onboarding' with object id "
       "'00000000-0000-0000-0000-000000000000' does not have authorization to perform action "
       "'Microsoft.HybridCompute/machines/read' over scope '/subscriptions/"
       "00000000-0000-0000-0000-000000000000/resourcegroups/rg/providers/"
       "Microsoft.HybridCompute/machines/web01' or the scope is invalid. Status Code=403",
       doc_url=PERMISSIONS_URL),
    _p("arm_resource_group_not_found",
       r"ResourceGroupNotFound|Resource group '[^']{0,128}' could not be found",
       ("resourcegroupnotfound", "resource group '"), C.INVALID_INPUT, FAIL_HOST,
       "The resource group does not exist and the agent could not create it.",
       "Create the resource group (or correct its name) before connecting.",
       "Code: ResourceGroupNotFound Message: Resource group 'rg-missing' could not be found."),
    _p("arm_resource_gone",
       r"ResourceNotFound|could not be found|\b404\b",
       ("resourcenotfound", "could not be found", "404"), C.STALE_RESOURCE, DISCONNECT_LOCAL,
       "The Azure resource is already gone, so deleting it fails while the agent still points "
       "at it.",
       "Disconnect locally with `azcmagent disconnect --force-local-only`, then connect again.",
       "Code: ResourceNotFound Message: The Resource 'Microsoft.HybridCompute/machines/web01' "
       "could not be found.", doc_url=DISCONNECT_URL, only_with_codes=("AZCM0043", "AZCM0063")),
    # --- the local agent --------------------------------------------------------------------
    _p("himds_unreachable",
       r"(?:localhost|127\.0\.0\.1):40342.{0,256}(?:refused|actively refused)",
       ("40342",), C.AGENT_SERVICE, RESTART,
       "The local himds service is not listening.",
       "Start or restart himds (himdsd on Linux), then retry.",
       "Get \"http://localhost:40342/agentstatus\": dial tcp 127.0.0.1:40342: connect: "
       "connection refused"),
    _p("himds_change_token", r"(?:failed|unable) to obtain (?:a )?change token",
       ("change token",), C.AGENT_SERVICE, WAIT_HIMDS,
       "himds is not ready yet; usual in the first minutes after install.",
       "Wait for himds to answer (`azcmagent show`), then retry.",
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
       "Give the login user passwordless sudo for azcmagent, or set a become password.",
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
       r"|'azcmagent(?:\.exe)?' is not recognized|\bcommand not found\b",
       ("not found", "no such file", "not recognized"), C.AGENT_MISSING, FAIL_HOST,
       "azcmagent is not installed on the host (or not on PATH).",
       "Install the agent first (arcfleet's install stage, or the install script).",
       "bash: azcmagent: command not found"),
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
    _p("login_dns_failure",
       rf"lookup {LOGIN_HOST}.{{0,64}}no such host|Device Authorization Code.{{0,512}}no such host",
       ("no such host",), C.NETWORK, RETRY,
       "The host could not resolve the Entra ID login endpoint (DNS)." + _GPO_NOTE,
       "Fix DNS for login.microsoftonline.com / login.windows.net (see `azcmagent check`)."
       + _GPO_NOTE, "Failed to acquire authorization token device flow: Error occurred while "
       "sending request for Device Authorization Code: Post https://login.windows.net/"
       "00000000-0000-0000-0000-000000000000/oauth2/devicecode?api-version=1.0:  dial tcp "
       "lookup login.windows.net: no such host", doc_url=NETWORK_TROUBLESHOOT_URL),
    _p("dns_failure",
       r"no such host|Temporary failure in name resolution|Name or service not known"
       r"|server misbehaving|remote name could not be resolved",
       ("no such host", "name resolution", "not known", "misbehaving", "could not be resolved"),
       C.NETWORK, RETRY,
       "A name (an Azure endpoint or the proxy) did not resolve in DNS on the host.",
       "Fix the host's DNS for the Azure endpoints; run `azcmagent check --location <region>`.",
       "dial tcp: lookup management.azure.com on 10.0.0.2:53: no such host",
       doc_url=NETWORK_URL),
    _p("proxy_no_ip_addresses", r"no IP addresses found", ("no ip addresses",),
       C.NETWORK, FAIL_HOST,
       "A known defect of the first agent 1.31 build with proxies.",
       "Upgrade the agent past the first 1.31 build, then retry.",
       "AZCM0026: Network Error: no IP addresses found", doc_url=PROXY_URL),
    _p("proxy_refused", r"proxyconnect tcp", ("proxyconnect",), C.NETWORK, FAIL_HOST,
       "The agent is set to use a proxy that does not accept connections.",
       "Fix or clear the agent's proxy (`azcmagent config set proxy.url ...` / "
       "`config clear proxy.url`).",
       "proxyconnect tcp: dial tcp [::1]:8888: connectex: No connection could be made because "
       "the target machine actively refused it.", doc_url=PROXY_URL),
    _p("network_forbidden",
       rf"network is Forbidden|{LOGIN_HOST}/\S{{0,512}}:\s{{0,4}}Forbidden"
       r"|management\.azure\.com/\S{0,1024}:\s{0,4}Forbidden",
       ("forbidden",), C.NETWORK, FAIL_HOST,
       "A proxy or firewall blocks the Entra ID or ARM endpoint (it answered Forbidden).",
       "Allow login.microsoftonline.com, login.windows.net and management.azure.com through "
       "the proxy/firewall; `azcmagent check` shows which endpoint is blocked.",
       "Failed to acquire authorization token from SPN: Failed to execute the refresh request. "
       "Error = 'Post https://login.windows.net/00000000-0000-0000-0000-000000000000/oauth2/"
       "token?api-version=1.0: Forbidden'", doc_url=CHECK_URL),
    _p("tls_interception",
       r"x509: |certificate signed by unknown authority|tls: failed to verify",
       ("x509", "unknown authority", "failed to verify"), C.NETWORK, FAIL_HOST,
       "TLS to Azure failed certificate checks (often a TLS-inspecting proxy).",
       "Exclude the Azure Arc endpoints from TLS inspection, or trust its CA on the host.",
       "tls: failed to verify certificate: x509: certificate signed by unknown authority",
       doc_url=NETWORK_TROUBLESHOOT_URL),
    _p("network_unreachable", r"network is unreachable|no route to host",
       ("unreachable", "no route"), C.NETWORK, RETRY,
       "The host has no route to the Azure endpoint.",
       "Check the host's routing/egress to Azure on TCP 443; `azcmagent check` tests it.",
       "dial tcp 40.126.9.7:443: connect: network is unreachable", doc_url=NETWORK_URL),
    _p("connection_refused", r"connection refused|actively refused|connection reset by peer",
       ("refused", "reset by peer"), C.NETWORK, RETRY,
       "An endpoint refused or reset the TCP connection.",
       "Check firewalls between the host and Azure on TCP 443, then retry.",
       "dial tcp 20.42.0.1:443: connect: connection refused", doc_url=NETWORK_URL),
    _p("network_timeout",
       r"i/o timeout|TLS handshake timeout|context deadline exceeded|Client\.Timeout exceeded",
       ("timeout", "deadline exceeded"), C.NETWORK, RETRY,
       "A request to Azure timed out.",
       "Retry; if it persists check proxy/firewall latency to the Azure endpoints.",
       "dial tcp 20.42.0.1:443: i/o timeout", doc_url=NETWORK_URL),
    # --- generic Entra error: after the specific ones above --------------------------------
    _p("aad_error", r"AADSTS\d{4,8}", ("aadsts",), C.CREDENTIALS, FAIL_HOST,
       "Entra ID refused the sign-in; the AADSTS code says why.",
       "Look the AADSTS code up in the Entra ID error reference and fix the app or tenant.",
       "AADSTS50034: The user account does not exist in the directory."),
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
RETRY_AFTER_RE = re.compile(r"retry[- ]after\W{0,6}(\d{1,6}(?:\.\d{1,3})?)", re.IGNORECASE)
NAMESPACE_RE = re.compile(r"namespace '([^']{1,128})'", re.IGNORECASE)
ACTION_RE = re.compile(r"perform action '([^']{1,256})'", re.IGNORECASE)
AADSTS_RE = re.compile(r"\b(AADSTS\d{4,8})\b")
SUCCESS_RE = re.compile(
    r"Connected machine to Azure|Successfully Onboarded Resource to Azure", re.IGNORECASE
)


def by_name(name: str) -> MessagePattern:
    for pattern in PATTERNS:
        if pattern.name == name:
            return pattern
    raise KeyError(name)

"""Value rules azcmagent enforces, checked here so a bad value never reaches a host.

Each check returns ``None`` when the value is fine, else a one-line message that never repeats the
value in full (a mistyped secret could land in any field).
"""

from __future__ import annotations

import re

from fleet.inventory.regions import location_syntax_problem

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# azcmagent (AZCM0017/AZCM0102): alphanumerics, hyphens, underscores, not ending in - or _.
# Azure caps Microsoft.HybridCompute/machines names at 54 characters.
RESOURCE_NAME_MAX = 54
_RESOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]*[A-Za-z0-9]$")
# Resource groups: 1-90 letters, digits, '_', '-', '.', '(' or ')'; no final period.
_RESOURCE_GROUP_RE = re.compile(r"^[\w().-]{1,90}$")
TAG_NAME_MAX = 512
TAG_VALUE_MAX = 256
TAGS_MAX = 50
# Azure refuses these in tag names; quotes, '=' and ',' would break azcmagent's --tags syntax.
_TAG_NAME_FORBIDDEN = set("<>%&\\?/=,'\"")
# In a value, a ',' would start another tag in `--tags k=v,k2=v2` (`a,b=c` becomes two tags).
_TAG_VALUE_FORBIDDEN = set("',\"")
_ARM_ID_RE = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[\w().-]{1,90}/providers/"
    r"Microsoft\.HybridCompute/(?P<kind>privateLinkScopes|gateways)/[\w.-]{1,260}$",
    re.IGNORECASE,
)
_PROXY_RE = re.compile(r"^https?://[^\s/:@]+(:\d{1,5})?/?$")
_JUMP_RE = re.compile(r"^(?:[^\s@:/]+@)?(?:\[[0-9A-Fa-f:.]+\]|[^\s@:/\[\]]+)(?::\d{1,5})?$")


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def check_guid(value: str) -> str | None:
    if GUID_RE.match(value):
        return None
    return "must be a GUID like 00000000-0000-0000-0000-000000000000"


def check_resource_name(value: str) -> str | None:
    if len(value) > RESOURCE_NAME_MAX:
        return (
            f"Azure resource name is {len(value)} characters long; "
            f"the limit is {RESOURCE_NAME_MAX}"
        )
    if not _RESOURCE_NAME_RE.match(value):
        return (
            "Azure resource name may only use letters, digits, hyphens and underscores and must "
            "not end with a hyphen or underscore (azcmagent AZCM0017)"
        )
    return None


def check_resource_group(value: str) -> str | None:
    if not _RESOURCE_GROUP_RE.match(value) or value.endswith("."):
        return (
            "resource group name must be 1-90 letters, digits, '_', '-', '.', '(' or ')' and "
            "must not end with '.'"
        )
    return None


def check_location(value: str) -> str | None:
    return location_syntax_problem(value)


def check_tags(tags: dict[str, str]) -> list[str]:
    problems: list[str] = []
    if len(tags) > TAGS_MAX:
        problems.append(f"{len(tags)} tags; Azure allows at most {TAGS_MAX} per resource")
    for name, value in tags.items():
        if not name.strip():
            problems.append("tag name is empty")
            continue
        if len(name) > TAG_NAME_MAX:
            problems.append(f"tag name is longer than {TAG_NAME_MAX} characters")
        bad = sorted(_TAG_NAME_FORBIDDEN.intersection(name))
        if bad or _has_control(name):
            shown = " ".join(bad) if bad else "control characters"
            problems.append(f"tag name {name[:40]!r} contains forbidden characters: {shown}")
        if len(value) > TAG_VALUE_MAX:
            problems.append(f"tag {name[:40]!r}: value is longer than {TAG_VALUE_MAX} characters")
        bad_v = sorted(_TAG_VALUE_FORBIDDEN.intersection(value))
        if bad_v or _has_control(value):
            shown = " ".join(bad_v) if bad_v else "control characters"
            problems.append(f"tag {name[:40]!r}: value contains forbidden characters: {shown}")
    return problems


def check_arm_id(value: str, kind: str) -> str | None:
    match = _ARM_ID_RE.match(value)
    if match and match.group("kind").lower() == kind.lower():
        return None
    return (
        "must be an ARM resource id like /subscriptions/<guid>/resourceGroups/<rg>/providers/"
        f"Microsoft.HybridCompute/{kind}/<name>"
    )


#: azcmagent's proxy.bypass names (reference 5.5)
PROXY_BYPASS_NAMES = ("AAD", "ARM", "AMA", "Arc", "ArcData")
PROXY_AUTH_REFUSED = (
    "holds a user name or password, and the Connected Machine agent does not support proxy "
    "authentication (https://learn.microsoft.com/azure/azure-arc/servers/"
    "manage-agent-proxy-settings); use a proxy that allows the host without credentials"
)


def check_proxy_url(value: str) -> str | None:
    # The text after "://" and before the next "/": user:password@ would sit there. The value is
    # never echoed: it may hold a password.
    authority = value.partition("://")[2].partition("/")[0]
    if "@" in authority:
        return PROXY_AUTH_REFUSED
    if _PROXY_RE.match(value):
        return None
    return "must be http://host:port or https://host:port (no path)"


def proxy_bypass_name(value: str) -> str | None:
    """The canonical spelling of a proxy.bypass name, or None when it is not one."""
    for name in PROXY_BYPASS_NAMES:
        if value.strip().lower() == name.lower():
            return name
    return None


# https://NAME.vault.azure.net/secrets/NAME[/VERSION] (and the sovereign clouds' vault domains);
# a loopback host is the lab's fake Key Vault.
KEYVAULT_SUFFIXES = (".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn")
_KEYVAULT_RE = re.compile(
    r"^https://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?/secrets/"
    r"(?P<name>[A-Za-z0-9-]{1,127})(?:/(?P<version>[0-9A-Fa-f]{32}))?/?$")


def check_keyvault_url(value: str) -> str | None:
    match = _KEYVAULT_RE.match(value)
    if match is None:
        return ("must be a Key Vault secret URL: https://VAULT.vault.azure.net/secrets/NAME "
                "(optionally /VERSION, 32 hex digits)")
    host = match["host"].lower()
    if host.endswith(KEYVAULT_SUFFIXES) or host in ("127.0.0.1", "localhost"):
        return None
    return ("the host must be a Key Vault (" + ", ".join("*" + s for s in KEYVAULT_SUFFIXES)
            + ")")


def check_jump_host(value: str) -> str | None:
    if _JUMP_RE.match(value):
        return None
    return "jump host must be [user@]host[:port]"


def check_plain_text(value: str, what: str) -> str | None:
    if not value.strip():
        return f"{what} is empty"
    if _SPACE_OR_CONTROL.search(value):
        return f"{what} contains whitespace or control characters"
    return None

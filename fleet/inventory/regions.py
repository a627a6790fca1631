"""Azure region names: their syntax, and the cloud a name belongs to by its naming convention.

There is no list of regions here: regions come and go, and a stale list blocks runs. Whether
``Microsoft.HybridCompute/machines`` is offered in a region is asked from Azure by the Azure
preflight (:mod:`fleet.azure.preflight`, the provider's metadata). Offline (``--no-azure-check``)
a name is checked for syntax only, and the run says so.
"""

from __future__ import annotations

import re

from fleet.inventory.model import Cloud

# ARM's location names: lower-case letters and digits ("westeurope", "eastus2euap").
_LOCATION_RE = re.compile(r"^[a-z][a-z0-9]{1,39}$")
# Sovereign region names start with these (usgovvirginia, usdodeast, chinanorth3, ...).
_PREFIXES: dict[Cloud, tuple[str, ...]] = {
    Cloud.US_GOVERNMENT: ("usgov", "usdod", "ussec", "usnat"),
    Cloud.CHINA: ("china",),
}


def normalize_location(value: str) -> str:
    """``West Europe`` and ``westeurope`` name the same region; ARM uses the latter."""
    return "".join(value.split()).lower()


def location_syntax_problem(value: str) -> str | None:
    """Why ``value`` cannot be an Azure location name, or None when it could be one."""
    if _LOCATION_RE.match(normalize_location(value)):
        return None
    return ("not an Azure region name (letters and digits, like westeurope; the Azure "
            "preflight checks that the region exists)")


def cloud_of(location: str) -> Cloud:
    """The cloud a region name belongs to by the naming convention of sovereign regions."""
    for cloud, prefixes in _PREFIXES.items():
        if location.startswith(prefixes):
            return cloud
    return Cloud.AZURE

"""The clouds arcfleet supports, mapped to their Entra ID authority and ARM endpoints.

An endpoints file, JSON ``{"authority_host", "resource_manager", "ca_bundle"}``, replaces the
endpoints of the cloud for the jump host's own Azure calls (hosts are not affected): named by an
inventory's ``azure.endpoints_file`` (the lab's inventory names its fake Entra ID and ARM), or
for every inventory by ``ARCFLEET_AZURE_ENDPOINTS``. It is read when a check runs; a bad one is
bad input.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import Problem, UsageError
from fleet.inventory.model import Cloud

ENDPOINTS_ENV = "ARCFLEET_AZURE_ENDPOINTS"


@dataclass(frozen=True)
class CloudEndpoints:
    name: str
    authority_host: str  # https://login.microsoftonline.com
    resource_manager: str  # https://management.azure.com
    audience: str  # the ARM token audience; scope is audience + "/.default"
    ca_bundle: str | None = None  # None: the system's trust store
    overridden: bool = False  # endpoints came from ARCFLEET_AZURE_ENDPOINTS

    @property
    def arm_scope(self) -> str:
        return self.audience.rstrip("/") + "/.default"


CLOUDS: dict[Cloud, CloudEndpoints] = {
    Cloud.AZURE: CloudEndpoints(
        Cloud.AZURE.value, "https://login.microsoftonline.com", "https://management.azure.com",
        "https://management.azure.com"),
    Cloud.US_GOVERNMENT: CloudEndpoints(
        Cloud.US_GOVERNMENT.value, "https://login.microsoftonline.us",
        "https://management.usgovcloudapi.net", "https://management.usgovcloudapi.net"),
    Cloud.CHINA: CloudEndpoints(
        Cloud.CHINA.value, "https://login.chinacloudapi.cn", "https://management.chinacloudapi.cn",
        "https://management.chinacloudapi.cn"),
}


def endpoints_for(cloud: Cloud, endpoints_file: Path | None = None) -> CloudEndpoints:
    """The endpoints of ``cloud``; an inventory's ``azure.endpoints_file``, else the file
    ``ARCFLEET_AZURE_ENDPOINTS`` names, replaces them."""
    path = str(endpoints_file) if endpoints_file else os.environ.get(ENDPOINTS_ENV)
    if not path:
        return CLOUDS[cloud]
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        authority = str(data["authority_host"]).rstrip("/")
        arm = str(data["resource_manager"]).rstrip("/")
        ca = data.get("ca_bundle")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(Problem(path, None, ENDPOINTS_ENV,
                                 f"not a readable endpoints file ({type(exc).__name__}: {exc}); "
                                 "it needs authority_host and resource_manager")) from None
    for field, value in (("authority_host", authority), ("resource_manager", arm)):
        if not value.startswith("https://"):
            raise UsageError(Problem(path, None, f"{ENDPOINTS_ENV}.{field}",
                                     "must be an https:// URL"))
    return CloudEndpoints(cloud.value, authority, arm, CLOUDS[cloud].audience,
                          str(ca) if ca else None, overridden=True)

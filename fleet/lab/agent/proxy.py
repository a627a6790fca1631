"""The network between a simulated agent and Azure when the host sits behind a proxy.

A host with the ``behind_proxy`` scenario reaches Azure only through its scenario's proxy. The
agent uses the proxy its ``proxy.url`` setting names (``azcmagent config set proxy.url``,
reference 6.3); endpoints named in ``proxy.bypass`` go direct. So a connect fails with AZCM0026,
in the documented shapes, when:

- no proxy is set: the direct connection times out (the catalog's AZCM0026 text);
- another proxy is set: ``proxyconnect tcp: ... connection refused`` (the shape of the verbatim
  ``azcmagent check`` output in the reference, 4.3);
- ``proxy.bypass`` sends Entra ID (``AAD``), ARM (``ARM``) or the Arc service (``Arc``) around
  the proxy: that endpoint's direct connection times out.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fleet.lab.agent.catalog import code_info
from fleet.lab.agent.console import AgentFailure
from fleet.lab.host import LabHost
from fleet.lab.scenario import ScenarioKind

_STAGE = "Failed to reach the Azure Arc service"
# What connect needs, by proxy.bypass name: the first request each makes.
_CONNECT_NEEDS = {
    "Arc": "https://gbl.his.arc.azure.com/discovery?location={location}&api-version=2.1",
    "AAD": "https://login.microsoftonline.com/{tenant}/oauth2/token?api-version=1.0",
    "ARM": "https://management.azure.com/subscriptions/{subscription}?api-version=2022-12-01",
}


def configured_proxy(host: LabHost) -> str:
    return host.agent_config.get("proxy.url", "")


def bypassed(host: LabHost) -> list[str]:
    raw = host.agent_config.get("proxy.bypass", "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def proxy_failure(host: LabHost, *, location: str, tenant: str,
                  subscription: str) -> AgentFailure | None:
    """The AZCM0026 a connect from ``host`` runs into, or None when Azure is reachable."""
    if host.scenario.kind is not ScenarioKind.BEHIND_PROXY:
        return None
    values = {"location": location, "tenant": tenant, "subscription": subscription}
    discovery = _CONNECT_NEEDS["Arc"].format(**values)
    proxy = configured_proxy(host)
    if not proxy:
        return AgentFailure("AZCM0026", code_info("AZCM0026").reason, _STAGE)
    if _normal(proxy) != _normal(host.scenario.proxy_url):
        where = urlsplit(proxy)
        return AgentFailure(
            "AZCM0026",
            f'Get "{discovery}": proxyconnect tcp: dial tcp {where.hostname}:{where.port or 80}: '
            "connect: connection refused",
            _STAGE,
        )
    for name in bypassed(host):
        if name in _CONNECT_NEEDS:
            url = _CONNECT_NEEDS[name].format(**values)
            return AgentFailure(
                "AZCM0026", f'Get "{url}": dial tcp 20.50.1.17:443: i/o timeout', _STAGE
            )
    return None


def proxy_column(host: LabHost) -> str:
    """The PROXY column of ``azcmagent check``."""
    return "set" if configured_proxy(host) else "not set"


def _normal(url: str) -> str:
    return url.strip().rstrip("/").lower()

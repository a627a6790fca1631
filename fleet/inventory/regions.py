"""Azure region names azcmagent accepts for ``--location``, per cloud.

The list is deliberately generous (every public, government and China region we know of, including
EUAP canary regions): a region missing here blocks a whole run, a stale extra name costs nothing but
an AZCM0020 on the host. Compare with :func:`normalize_location`.
"""

from __future__ import annotations

from fleet.inventory.model import Cloud

_PUBLIC = """
australiacentral australiacentral2 australiaeast australiasoutheast austriaeast belgiumcentral
brazilsouth brazilsoutheast brazilus canadacentral canadaeast centralindia centralus centraluseuap
chilecentral denmarkeast eastasia eastus eastus2 eastus2euap eastus3 francecentral francesouth
germanynorth germanywestcentral indonesiacentral israelcentral israelnorthwest italynorth japaneast
japanwest jioindiacentral jioindiawest koreacentral koreasouth malaysiasouth malaysiawest
mexicocentral newzealandnorth northcentralus northeurope norwayeast norwaywest polandcentral
qatarcentral saudiarabiacentral southafricanorth southafricawest southcentralus southcentralus2
southeastasia southeastus southindia spaincentral swedencentral swedensouth switzerlandnorth
switzerlandwest taiwannorth taiwannorthwest uaecentral uaenorth uksouth ukwest westcentralus
westeurope westindia westus westus2 westus3
"""
_US_GOVERNMENT = """
usdodcentral usdodeast usgovarizona usgoviowa usgovtexas usgovvirginia usseceast ussecwest
ussecwestcentral usnateast usnatwest
"""
_CHINA = "chinaeast chinaeast2 chinaeast3 chinanorth chinanorth2 chinanorth3"

REGIONS_BY_CLOUD: dict[Cloud, frozenset[str]] = {
    Cloud.AZURE: frozenset(_PUBLIC.split()),
    Cloud.US_GOVERNMENT: frozenset(_US_GOVERNMENT.split()),
    Cloud.CHINA: frozenset(_CHINA.split()),
}
ALL_REGIONS: frozenset[str] = frozenset().union(*REGIONS_BY_CLOUD.values())


def normalize_location(value: str) -> str:
    """``West Europe`` and ``westeurope`` name the same region; ARM uses the latter."""
    return "".join(value.split()).lower()


def cloud_of(location: str) -> Cloud | None:
    for cloud, regions in REGIONS_BY_CLOUD.items():
        if location in regions:
            return cloud
    return None

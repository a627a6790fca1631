"""What one Azure check found, and the diagnosis a failed check gives the hosts it stops.

Statuses:

``passed``    the check ran and Azure agrees with the inventory.
``failed``    the check ran and found a cause that will fail the hosts it names; those hosts are
              not contacted (only a check that ran and failed stops hosts).
``warning``   the check ran and found something worth knowing that may or may not fail a host
              (a machine name already in use); hosts are still run.
``fixed``     the check found a problem and fixed it because the operator asked (a resource
              provider registered with ``--register-providers``, a resource group created for
              ``create_resource_group``, a stale machine deleted with ``--delete-stale``).
``not_done``  the check could not run (Azure unreachable, throttled, no right to read); the run
              goes on as if it had not been asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from fleet.azcm.diagnosis import FAIL_HOST, Category, Diagnosis

ONBOARDING_ROLE = "Azure Connected Machine Onboarding"
ONBOARDING_ROLE_ID = "b64e21ea-ac4e-4cdf-9dc9-5b892992bee7"
ARC_PROVIDERS = (
    "Microsoft.HybridCompute",
    "Microsoft.GuestConfiguration",
    "Microsoft.HybridConnectivity",
)
# What `azcmagent connect` does with the identity in the resource group: read the machine
# (does it exist?), then create or update it.
MACHINE_ACTIONS = (
    "Microsoft.HybridCompute/machines/read",
    "Microsoft.HybridCompute/machines/write",
)
PRIVATE_LINK_ACTION = "Microsoft.HybridCompute/privateLinkScopes/read"
DELETE_ACTION = "Microsoft.HybridCompute/machines/delete"
RESOURCE_ADMINISTRATOR_ROLE = "Azure Connected Machine Resource Administrator"
# Statuses of a machine the agent no longer holds: --delete-stale may delete these.
STALE_STATUSES = ("disconnected", "expired")


class CheckStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    WARNING = "warning"
    FIXED = "fixed"
    NOT_DONE = "not_done"


class CheckName(StrEnum):
    CREDENTIAL = "credential"
    PROVIDERS = "providers"
    RESOURCE_GROUP = "resource_group"
    LOCATION = "location"
    PERMISSIONS = "permissions"
    MACHINE_NAME = "machine_name"
    PRIVATE_LINK_SCOPE = "private_link_scope"
    GATEWAY = "gateway"
    STALE_MACHINE = "stale_machine"  # --delete-stale: a Disconnected/Expired machine deleted


@dataclass(frozen=True)
class CheckResult:
    check: CheckName
    scope: str  # what was checked: a tenant/app, a subscription, a resource group, an id
    status: CheckStatus
    category: Category | None = None
    cause: str = ""
    fix: str = ""
    doc_url: str = ""
    hosts: tuple[str, ...] = ()  # the inventory hosts this result concerns
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def stops_hosts(self) -> bool:
        return self.status is CheckStatus.FAILED

    def diagnosis(self) -> Diagnosis:
        """What a host stopped by this result ends with (not contacted; the run goes on)."""
        return Diagnosis(
            self.category or Category.UNKNOWN,
            FAIL_HOST,
            name=f"azure preflight: {self.check.value}",
            cause=f"{self.cause} (found by the Azure preflight; the host was not contacted)",
            fix=self.fix,
            doc_url=self.doc_url,
            evidence_line=f"{self.check.value} {self.status.value}: {self.scope}",
            rule=f"azure:{self.check.value}",
            extra={"azure_check": self.check.value, "azure_scope": self.scope},
        )


def rg_scope(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"


def action_allowed(action: str, actions: list[str], not_actions: list[str]) -> bool:
    """ARM's rule for one permission entry: an action pattern matches and no notAction does.
    Patterns use ``*`` as a wildcard and compare without regard to case."""
    import fnmatch

    def match(pattern: str) -> bool:
        return fnmatch.fnmatchcase(action.lower(), pattern.lower())

    return any(match(p) for p in actions) and not any(match(p) for p in not_actions)


def parse_resource_id(resource_id: str) -> tuple[str, str, str, str] | None:
    """(subscription, resource group, type, name) of a Microsoft.HybridCompute resource id."""
    parts = resource_id.strip("/").split("/")
    if (len(parts) != 8 or parts[0].lower() != "subscriptions"
            or parts[2].lower() != "resourcegroups" or parts[4].lower() != "providers"
            or parts[5].lower() != "microsoft.hybridcompute"):
        return None
    return parts[1], parts[3], parts[6], parts[7]

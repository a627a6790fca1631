"""``--delete-stale``: delete the Disconnected or Expired machines the inventory claims first.

A machine resource with a host's resource name, in the host's target resource group, whose
status is Disconnected or Expired, makes a fresh ``azcmagent connect`` fail with AZCM0044 (or
AZCM0081 on a host still holding the old identity). With ``--delete-stale`` the Azure preflight
deletes it first. Nothing else is ever deleted: a Connected machine may be this very host, and a
machine in another resource group is not the inventory's to remove.

Who deletes: the onboarding identity when its permissions on the resource group (read by the
``permissions`` check) allow ``Microsoft.HybridCompute/machines/delete``; otherwise the
operator's own credential (DefaultAzureCredential: ``AZURE_*`` environment, managed identity,
``az login``). The Azure Connected Machine Onboarding role cannot delete; the Resource
Administrator role can. This keeps delete rights off the service principal whose secret travels
to hosts. Each deletion (or refusal) is a ``stale_machine`` row in the run store and reports,
naming the identity that deleted it.
"""

from __future__ import annotations

import threading
from typing import Any

from fleet.azcm.catalog import PERMISSIONS_URL
from fleet.azcm.diagnosis import Category
from fleet.azure.checks import (
    DELETE_ACTION,
    RESOURCE_ADMINISTRATOR_ROLE,
    CheckName,
    CheckResult,
    CheckStatus,
    action_allowed,
)
from fleet.azure.session import ArmSession, Identity
from fleet.inventory.model import ResolvedHost


class OperatorSessions:
    """The operator's own ARM sessions (DefaultAzureCredential), one per cloud/endpoints, made
    only when a deletion needs them, shared by the preflight's identity threads."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[Any, ...], ArmSession] = {}
        self._lock = threading.Lock()

    def session_for(self, like: ArmSession, tenant_id: str | None) -> ArmSession:
        key = (like.endpoints, (tenant_id or "").lower())
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = ArmSession(Identity(tenant_id), like.endpoints)
            return self._sessions[key]

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()


def can_delete(entries: list[Any] | None) -> bool:
    """Whether the permission entries of a resource group allow deleting machines."""
    return bool(entries) and any(
        action_allowed(DELETE_ACTION, list(e.actions or []), list(e.not_actions or []))
        for e in entries or [])


def delete_stale_machine(host: ResolvedHost, machine_id: str, resource_group: str, name: str,
                         status: str, session: ArmSession, identity_label: str,
                         call: Any) -> CheckResult:
    """Delete one stale machine with ``session``; the row that records it (or the refusal).
    ``call`` runs an SDK call and raises the preflight's ``_CallFailed``."""
    subscription = str(host.azure.subscription_id)
    client = session.hybrid_compute(subscription)
    try:
        call(lambda: client.machines.begin_delete(resource_group, name, polling=False).result())
    except Exception as failed:  # _CallFailed from ``call``: its message names the refusal
        status_code = getattr(failed, "status", None)
        return CheckResult(
            CheckName.STALE_MACHINE, machine_id, CheckStatus.WARNING,
            Category.PERMISSIONS if status_code == 403 else Category.STALE_RESOURCE,
            f"--delete-stale: {name} (status {status}) could not be deleted as "
            f"{identity_label}: {failed}; the host will likely fail with AZCM0044",
            f"Give {identity_label} the '{RESOURCE_ADMINISTRATOR_ROLE}' role on resource group "
            f"{resource_group}, or delete it yourself (az connectedmachine delete --name {name} "
            f"--resource-group {resource_group}), then rerun the host.",
            PERMISSIONS_URL, hosts=(host.name,),
            detail={"status": status, "resource_group": resource_group,
                    "delete_identity": identity_label})
    return CheckResult(
        CheckName.STALE_MACHINE, machine_id, CheckStatus.FIXED,
        cause=f"deleted {name} (status {status}) with --delete-stale as {identity_label}",
        hosts=(host.name,),
        detail={"status": status, "resource_group": resource_group,
                "deleted_by": identity_label})

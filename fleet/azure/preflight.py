"""The Azure preflight: each distinct target of an inventory checked once, from the jump host.

Checks are shared as far as their scope allows: one token request per service principal, one
provider read and one machine listing per subscription, one permissions read per resource group,
one read per private link scope or gateway. A failed check stops exactly the hosts in its scope
(a credential the hosts of that service principal, a resource group its hosts); a check that
could not run (Azure unreachable, throttled past the retries) stops nobody.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from fleet.azcm.catalog import PERMISSIONS_URL, PREREQ_URL, PRIVATE_LINK_URL, PROVIDERS_URL
from fleet.azcm.diagnosis import Category, Diagnosis
from fleet.azure.calls import CallFailed as _CallFailed
from fleet.azure.calls import call as _call
from fleet.azure.calls import sign_in_result as _sign_in_result
from fleet.azure.checks import (
    ARC_PROVIDERS,
    MACHINE_ACTIONS,
    ONBOARDING_ROLE,
    ONBOARDING_ROLE_ID,
    PRIVATE_LINK_ACTION,
    STALE_STATUSES,
    CheckName,
    CheckResult,
    CheckStatus,
    action_allowed,
    parse_resource_id,
    rg_scope,
)
from fleet.azure.clouds import endpoints_for
from fleet.azure.session import ArmSession, Identity
from fleet.azure.stale import OperatorSessions, can_delete, delete_stale_machine
from fleet.engine.secrets import SecretBook
from fleet.errors import SecretUnavailable, UsageError
from fleet.inventory.model import ResolvedHost
from fleet.inventory.regions import normalize_location

T = TypeVar("T")
REGISTRATION_WAIT_S = 120.0
PARALLEL_IDENTITIES = 8
MAX_LINE = 2000


@dataclass
class AzurePreflightResult:
    results: list[CheckResult] = field(default_factory=list)
    stopped: dict[str, Diagnosis] = field(default_factory=dict)  # host -> why it is not run

    def add(self, result: CheckResult) -> None:
        self.results.append(result)
        if result.stops_hosts:
            diagnosis = result.diagnosis()
            for host in result.hosts:
                self.stopped.setdefault(host, diagnosis)

    @property
    def not_done(self) -> list[CheckResult]:
        return [r for r in self.results if r.status is CheckStatus.NOT_DONE]


def _names(hosts: Iterable[ResolvedHost]) -> tuple[str, ...]:
    return tuple(h.name for h in hosts)


class AzurePreflight:
    """Runs the checks for ``hosts``; use :func:`run_azure_preflight`."""

    def __init__(self, hosts: Sequence[ResolvedHost], secrets: SecretBook, *,
                 register_providers: bool = False,
                 registration_wait_s: float = REGISTRATION_WAIT_S,
                 delete_stale: bool = False, create_resource_groups: bool = False) -> None:
        self.hosts = [h for h in hosts if h.azure.tenant_id and h.azure.subscription_id]
        self.secrets = secrets
        self.register_providers = register_providers
        self.delete_stale = delete_stale  # --delete-stale (fleet/azure/stale.py)
        # create_resource_group: true in the inventory is applied (onboard; preflight reports)
        self.create_resource_groups = create_resource_groups
        self.operator = OperatorSessions()
        self.registration_wait_s = registration_wait_s
        self.result = AzurePreflightResult()

    def run(self) -> AzurePreflightResult:
        by_identity: dict[tuple[Any, ...], list[ResolvedHost]] = defaultdict(list)
        for host in self.hosts:
            sp = host.azure.service_principal
            key = (host.azure.cloud, (host.azure.tenant_id or "").lower(),
                   sp.client_id.lower() if sp else None, sp.secret if sp else None,
                   sp.certificate_file if sp else None, host.azure.endpoints_file)
            by_identity[key].append(host)
        quiet = logging.getLogger("azure")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # azure-identity warns on every refused sign-in
        groups = list(by_identity.values())
        parts = [AzurePreflightResult() for _ in groups]
        try:
            # Identities are independent (their own sign-in and clients): checked side by side,
            # their rows then kept in inventory order.
            workers = max(1, min(PARALLEL_IDENTITIES, len(groups)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="azure") as pool:
                list(pool.map(self._identity, groups, parts))
        finally:
            quiet.setLevel(level)
            self.operator.close()
        for part in parts:
            for result in part.results:
                self.result.add(result)
        return self.result

    # ---- one identity (service principal) ---------------------------------------------

    def _identity(self, hosts: list[ResolvedHost], result: AzurePreflightResult) -> None:
        first = hosts[0]
        sp = first.azure.service_principal
        who = (f"service principal {sp.client_id}" if sp else "the operator's credential")
        scope = f"{who} in tenant {first.azure.tenant_id} ({first.azure.cloud.value})"
        names = _names(hosts)
        try:
            secret = self.secrets.sp_secret(first)
        except SecretUnavailable as exc:
            # Only `preflight` gets here (onboard reads every secret first, and refuses the run
            # when one is missing): no sign-in was tried, so the hosts are still checked.
            result.add(CheckResult(
                CheckName.CREDENTIAL, scope, CheckStatus.NOT_DONE, None,
                f"the service principal's secret cannot be read here ({exc}); the Azure "
                "checks of these hosts were not done",
                "Make the secret readable (env or file) to have Azure checked.", hosts=names))
            return
        identity = Identity(first.azure.tenant_id, sp.client_id if sp else None, secret,
                            sp.certificate_file if sp else None)
        try:
            endpoints = endpoints_for(first.azure.cloud, first.azure.endpoints_file)
        except UsageError as exc:
            result.add(CheckResult(
                CheckName.CREDENTIAL, scope, CheckStatus.FAILED, Category.INVALID_INPUT,
                f"the Azure endpoints file cannot be used: {exc}",
                "Correct azure.endpoints_file (or ARCFLEET_AZURE_ENDPOINTS), or remove it to "
                "use the cloud's own endpoints.", hosts=names))
            return
        session = ArmSession(identity, endpoints)
        try:
            try:
                _call(session.token)
            except _CallFailed as failed:
                self._credential_failed(scope, names, failed, result)
                return
            result.add(CheckResult(CheckName.CREDENTIAL, scope, CheckStatus.PASSED,
                                   cause="an ARM access token was issued", hosts=names))
            by_subscription: dict[str, list[ResolvedHost]] = defaultdict(list)
            for host in hosts:
                by_subscription[str(host.azure.subscription_id).lower()].append(host)
            for sub_hosts in by_subscription.values():
                _SubscriptionChecks(self, session, sub_hosts, result).run()
        finally:
            session.close()

    def _credential_failed(self, scope: str, names: tuple[str, ...],
                           failed: _CallFailed, result: AzurePreflightResult) -> None:
        if failed.kind == "sign_in":
            cause, fix = _sign_in_result(str(failed))
            result.add(CheckResult(CheckName.CREDENTIAL, scope, CheckStatus.FAILED,
                                   Category.CREDENTIALS, cause, fix, hosts=names))
            return
        result.add(CheckResult(
            CheckName.CREDENTIAL, scope, CheckStatus.NOT_DONE, Category.NETWORK,
            f"no token could be requested ({failed.kind}): {failed}; the other checks of "
            "these hosts were not done either",
            "Check the jump host's route or proxy (HTTPS_PROXY) to Entra ID and ARM; the run "
            "goes on without the Azure checks.", hosts=names))


class _SubscriptionChecks:
    """Providers, locations, machine names, resource groups and permissions of one
    subscription, for the hosts of one identity."""

    def __init__(self, preflight: AzurePreflight, session: ArmSession,
                 hosts: list[ResolvedHost], result: AzurePreflightResult) -> None:
        self.preflight = preflight
        self.session = session
        self.hosts = hosts
        self.subscription = str(hosts[0].azure.subscription_id)
        self.add = result.add
        # lower resource group -> the identity's permission entries there (None: not read)
        self.rg_entries: dict[str, list[Any] | None] = {}

    def not_done(self, check: CheckName, scope: str, hosts: Iterable[ResolvedHost],
                 failed: _CallFailed, what: str) -> None:
        self.add(CheckResult(check, scope, CheckStatus.NOT_DONE, None,
                             f"{what} could not be read: {failed}",
                             "Nothing stops on this; rerun the preflight when Azure answers.",
                             hosts=_names(hosts)))

    def run(self) -> None:
        machine_types = self._providers()
        self._locations(machine_types)
        by_rg: dict[str, list[ResolvedHost]] = defaultdict(list)
        for host in self.hosts:
            by_rg[str(host.azure.resource_group).lower()].append(host)
        for rg_hosts in by_rg.values():
            self._resource_group(rg_hosts)
        self._machine_names()
        self._linked("private_link_scope", CheckName.PRIVATE_LINK_SCOPE, "privatelinkscopes")
        self._linked("gateway_id", CheckName.GATEWAY, "gateways")

    # ---- resource providers and the locations of machines --------------------------------

    def _providers(self) -> list[str] | None:
        """Checks registration; returns the locations of Microsoft.HybridCompute/machines
        (None when they could not be read)."""
        client = self.session.resources(self.subscription)
        scope = f"/subscriptions/{self.subscription}"
        names = _names(self.hosts)
        states: dict[str, str] = {}
        locations: list[str] | None = None
        for namespace in ARC_PROVIDERS:
            try:
                provider = _call(partial(client.providers.get, namespace))
            except _CallFailed as failed:
                self.not_done(CheckName.PROVIDERS, scope, self.hosts, failed,
                              f"resource provider {namespace}")
                return None
            states[namespace] = provider.registration_state or "Unknown"
            if namespace == "Microsoft.HybridCompute":
                for resource_type in provider.resource_types or []:
                    if (resource_type.resource_type or "").lower() == "machines":
                        locations = list(resource_type.locations or [])
        missing = [ns for ns, state in states.items() if state.lower() != "registered"]
        if not missing:
            self.add(CheckResult(CheckName.PROVIDERS, scope, CheckStatus.PASSED,
                                 cause="Microsoft.HybridCompute, Microsoft.GuestConfiguration "
                                 "and Microsoft.HybridConnectivity are registered",
                                 hosts=names))
            return locations
        listing = ", ".join(f"{ns} ({states[ns]})" for ns in missing)
        commands = "; ".join(f"az provider register --namespace {ns}" for ns in missing)
        if not self.preflight.register_providers:
            self.add(CheckResult(
                CheckName.PROVIDERS, scope, CheckStatus.FAILED, Category.PERMISSIONS,
                f"resource providers not registered in subscription {self.subscription}: "
                f"{listing}; every connect would fail with MissingSubscriptionRegistration",
                f"Register them once ({commands}), or rerun with --register-providers (the "
                "identity then needs */register/action on the subscription, e.g. Contributor).",
                PROVIDERS_URL, hosts=names, detail={"unregistered": ",".join(missing)}))
            return locations
        self._register(missing, scope, names, commands)
        return locations

    def _register(self, missing: list[str], scope: str, names: tuple[str, ...],
                  commands: str) -> None:
        client = self.session.resources(self.subscription)
        for namespace in missing:
            try:
                _call(partial(client.providers.register, namespace))
            except _CallFailed as failed:
                if not failed.reached:
                    self.not_done(CheckName.PROVIDERS, scope, self.hosts, failed,
                                  f"registration of {namespace}")
                    return
                self.add(CheckResult(
                    CheckName.PROVIDERS, scope, CheckStatus.FAILED, Category.PERMISSIONS,
                    f"--register-providers: registering {namespace} was refused: {failed}",
                    "Ask an Owner or Contributor of the subscription to register the providers "
                    f"({commands}), then rerun.", PROVIDERS_URL, hosts=names,
                    detail={"unregistered": ",".join(missing)}))
                return
        deadline = time.monotonic() + self.preflight.registration_wait_s
        pending = list(missing)
        while pending:
            try:
                states = {ns: _call(partial(client.providers.get, ns)).registration_state
                          for ns in pending}
            except _CallFailed as failed:
                self.not_done(CheckName.PROVIDERS, scope, self.hosts, failed,
                              "registration state")
                return
            pending = [ns for ns, state in states.items() if (state or "").lower() != "registered"]
            if pending and time.monotonic() > deadline:
                self.add(CheckResult(
                    CheckName.PROVIDERS, scope, CheckStatus.FAILED, Category.PERMISSIONS,
                    f"registration was requested but is still not finished after "
                    f"{self.preflight.registration_wait_s:g} s: {', '.join(pending)}",
                    "Wait until `az provider show --namespace <name>` says Registered, then "
                    "rerun.", PROVIDERS_URL, hosts=names))
                return
            if pending:
                time.sleep(2.0)
        self.add(CheckResult(CheckName.PROVIDERS, scope, CheckStatus.FIXED,
                             cause=f"registered with --register-providers: {', '.join(missing)}",
                             hosts=names, detail={"registered": ",".join(missing)}))

    def _locations(self, locations: list[str] | None) -> None:
        by_location: dict[str, list[ResolvedHost]] = defaultdict(list)
        for host in self.hosts:
            if host.azure.location:
                by_location[host.azure.location].append(host)
        scope = f"/subscriptions/{self.subscription}"
        if locations is None:
            for location, hosts in by_location.items():
                self.add(CheckResult(
                    CheckName.LOCATION, f"{scope} {location}", CheckStatus.NOT_DONE,
                    cause="the locations of Microsoft.HybridCompute/machines could not be read; "
                    f"{location} was checked for syntax only", hosts=_names(hosts)))
            return
        available = {normalize_location(name) for name in locations}
        for location, hosts in by_location.items():
            if location in available:
                self.add(CheckResult(CheckName.LOCATION, f"{scope} {location}",
                                     CheckStatus.PASSED, hosts=_names(hosts),
                                     cause="Microsoft.HybridCompute/machines is offered there"))
                continue
            self.add(CheckResult(
                CheckName.LOCATION, f"{scope} {location}", CheckStatus.FAILED,
                Category.INVALID_INPUT,
                f"Microsoft.HybridCompute/machines is not available in {location} for this "
                "subscription (azcmagent would fail with AZCM0020)",
                "Set azure.location to one of: " + ", ".join(sorted(available)),
                PREREQ_URL, hosts=_names(hosts)))

    # ---- resource group and the identity's permissions there ------------------------------

    def _resource_group(self, hosts: list[ResolvedHost], created: bool = False) -> None:
        rg = str(hosts[0].azure.resource_group)
        scope = rg_scope(self.subscription, rg)
        names = _names(hosts)
        client = self.session.authorization(self.subscription)
        try:
            entries = _call(lambda: list(client.permissions.list_for_resource_group(rg)))
        except _CallFailed as failed:
            if failed.reached and (failed.code == "ResourceGroupNotFound"
                                   or failed.status == 404):
                wanted = any(h.azure.create_resource_group for h in hosts)
                if wanted and self.preflight.create_resource_groups and not created:
                    if self._create_resource_group(hosts, rg, scope):
                        self._resource_group(hosts, created=True)
                    return
                self.add(CheckResult(
                    CheckName.RESOURCE_GROUP, scope, CheckStatus.FAILED, Category.INVALID_INPUT,
                    f"resource group {rg} does not exist in subscription {self.subscription}",
                    f"Create it (`az group create --name {rg} --location <region> "
                    f"--subscription {self.subscription}`) or correct azure.resource_group.",
                    PREREQ_URL, hosts=names))
                return
            self.not_done(CheckName.PERMISSIONS, scope, hosts, failed,
                          "the identity's permissions on the resource group")
            return
        self.rg_entries[rg.lower()] = entries
        if not created:
            self.add(CheckResult(CheckName.RESOURCE_GROUP, scope, CheckStatus.PASSED,
                                 cause="the resource group exists", hosts=names))
        needed = list(MACHINE_ACTIONS)
        if any(h.azure.private_link_scope for h in hosts):
            needed.append(PRIVATE_LINK_ACTION)
        missing = [action for action in needed
                   if not any(action_allowed(action, list(e.actions or []),
                                             list(e.not_actions or [])) for e in entries)]
        if not missing:
            self.add(CheckResult(CheckName.PERMISSIONS, scope, CheckStatus.PASSED,
                                 cause="the identity holds " + ", ".join(needed), hosts=names))
            return
        sp = hosts[0].azure.service_principal
        assignee = sp.client_id if sp else "<the signed-in identity>"
        self.add(CheckResult(
            CheckName.PERMISSIONS, scope, CheckStatus.FAILED, Category.PERMISSIONS,
            f"the identity lacks {', '.join(missing)} on resource group {rg}; every connect "
            "there would be refused (AuthorizationFailed)",
            f"Assign the role '{ONBOARDING_ROLE}' ({ONBOARDING_ROLE_ID}) to {assignee} on "
            f"{scope}: az role assignment create --assignee {assignee} --role "
            f"\"{ONBOARDING_ROLE}\" --scope {scope}",
            PERMISSIONS_URL, hosts=names, detail={"missing_actions": ",".join(missing),
                                                  "role": ONBOARDING_ROLE}))

    def _create_resource_group(self, hosts: list[ResolvedHost], rg: str, scope: str) -> bool:
        """create_resource_group: true. Creates it in the first host's location; True when it
        now exists (the permissions read follows)."""
        location = str(hosts[0].azure.location or "")
        client = self.session.resources(self.subscription)
        try:
            _call(partial(client.resource_groups.create_or_update, rg, {"location": location}))
        except _CallFailed as failed:
            if not failed.reached:
                self.not_done(CheckName.RESOURCE_GROUP, scope, hosts, failed,
                              "the creation of the resource group")
                return False
            self.add(CheckResult(
                CheckName.RESOURCE_GROUP, scope, CheckStatus.FAILED, Category.PERMISSIONS,
                f"resource group {rg} does not exist and creating it (create_resource_group) "
                f"was refused: {failed}",
                f"Create it (`az group create --name {rg} --location {location} "
                f"--subscription {self.subscription}`), or give the identity "
                "Microsoft.Resources/subscriptions/resourceGroups/write on the subscription "
                "(e.g. Contributor).", PREREQ_URL, hosts=_names(hosts)))
            return False
        self.add(CheckResult(CheckName.RESOURCE_GROUP, scope, CheckStatus.FIXED,
                             cause=f"created in {location} (create_resource_group)",
                             hosts=_names(hosts), detail={"created": rg}))
        return True

    # ---- machines that already exist with the inventory's names ---------------------------

    def _machine_names(self) -> None:
        client = self.session.hybrid_compute(self.subscription)
        scope = f"/subscriptions/{self.subscription}"
        try:
            machines = _call(lambda: list(client.machines.list_by_subscription()))
        except _CallFailed as failed:
            self.not_done(CheckName.MACHINE_NAME, scope, self.hosts, failed,
                          "the subscription's Arc machines")
            return
        by_name: dict[str, list[Any]] = defaultdict(list)
        for machine in machines:
            by_name[str(machine.name).lower()].append(machine)
        for host in self.hosts:
            name = host.resource_name
            wanted_rg = str(host.azure.resource_group).lower()
            for machine in by_name.get(name.lower(), []):
                self._name_taken(host, name, wanted_rg, machine)

    def _name_taken(self, host: ResolvedHost, name: str, wanted_rg: str, machine: Any) -> None:
        machine_id = str(machine.id)
        parsed = parse_resource_id(machine_id)
        machine_rg = parsed[1] if parsed else "?"
        properties = getattr(machine, "properties", None)
        raw_status = getattr(properties, "status", None) or getattr(machine, "status", None)
        status = str(getattr(raw_status, "value", raw_status) or "Unknown")
        same_rg = machine_rg.lower() == wanted_rg
        if same_rg and self.preflight.delete_stale and status.lower() in STALE_STATUSES:
            self._delete_stale(host, name, machine_id, machine_rg, status)
            return
        if same_rg and status.lower() == "connected":
            cause = (f"{name} already exists in the target resource group and is Connected: "
                     "if this host is that machine nothing changes; another machine would fail "
                     "with AZCM0044")
            fix = ("No action if it is this host; otherwise give the host another resource "
                   "name.")
            category = Category.RESOURCE_CONFLICT
        elif same_rg:
            cause = (f"{name} exists in the target resource group with status {status}: a host "
                     "with no local agent state fails with AZCM0044; a host still holding the "
                     "old identity may fail with AZCM0081")
            fix = (f"Delete the stale resource (az connectedmachine delete --name {name} "
                   f"--resource-group {machine_rg}; needs the Azure Connected Machine Resource "
                   "Administrator role), then rerun the host.")
            category = Category.STALE_RESOURCE
        else:
            cause = (f"the name {name} is taken by a machine with status {status} in resource "
                     f"group {machine_rg}: this host may already be connected there "
                     "(AZCM0067) or another machine uses the name")
            fix = ("Check which machine it is; disconnect it from there, or give this host "
                   "another resource name.")
            category = Category.RESOURCE_CONFLICT
        self.add(CheckResult(CheckName.MACHINE_NAME, machine_id, CheckStatus.WARNING, category,
                             cause, fix, hosts=(host.name,),
                             detail={"status": status, "resource_group": machine_rg}))

    def _delete_stale(self, host: ResolvedHost, name: str, machine_id: str, machine_rg: str,
                      status: str) -> None:
        sp = host.azure.service_principal
        if can_delete(self.rg_entries.get(machine_rg.lower())):
            session = self.session
            label = (f"the onboarding service principal {sp.client_id}" if sp
                     else "the onboarding identity")
        else:
            session = self.preflight.operator.session_for(self.session, host.azure.tenant_id)
            label = "the operator's own Azure credential (DefaultAzureCredential)"
        self.add(delete_stale_machine(host, machine_id, machine_rg, name, status, session,
                                      label, _call))

    # ---- private link scope and gateway ----------------------------------------------------

    def _linked(self, field_name: str, check: CheckName, type_name: str) -> None:
        by_id: dict[str, list[ResolvedHost]] = defaultdict(list)
        for host in self.hosts:
            value = getattr(host.azure, field_name)
            if value:
                by_id[value].append(host)
        for resource_id, hosts in by_id.items():
            names = _names(hosts)
            parsed = parse_resource_id(resource_id)
            if parsed is None or parsed[2].lower() != type_name:
                self.add(CheckResult(
                    check, resource_id, CheckStatus.FAILED, Category.INVALID_INPUT,
                    f"azure.{field_name} is not a Microsoft.HybridCompute/{type_name} resource "
                    "id", f"Give the full resource id of the {check.value.replace('_', ' ')}.",
                    PRIVATE_LINK_URL, hosts=names))
                continue
            subscription, rg, _, name = parsed
            client = self.session.hybrid_compute(subscription)
            operations = (client.private_link_scopes if check is CheckName.PRIVATE_LINK_SCOPE
                          else client.gateways)
            try:
                _call(partial(operations.get, rg, name))
            except _CallFailed as failed:
                if not failed.reached:
                    self.not_done(check, resource_id, hosts, failed, check.value)
                    continue
                missing = failed.status == 404
                self.add(CheckResult(
                    check, resource_id, CheckStatus.FAILED,
                    Category.INVALID_INPUT if missing else Category.PERMISSIONS,
                    f"{check.value.replace('_', ' ')} {name} "
                    + ("does not exist" if missing else f"cannot be read: {failed}"),
                    "Correct the resource id in the inventory." if missing else
                    f"Grant the identity Microsoft.HybridCompute/{type_name}/read on it.",
                    PRIVATE_LINK_URL, hosts=names))
                continue
            self.add(CheckResult(check, resource_id, CheckStatus.PASSED,
                                 cause="exists and is readable", hosts=names))


def run_azure_preflight(hosts: Sequence[ResolvedHost], secrets: SecretBook, *,
                        register_providers: bool = False, delete_stale: bool = False,
                        create_resource_groups: bool = False) -> AzurePreflightResult:
    """Every check for ``hosts``, each distinct scope once (see the module docstring)."""
    return AzurePreflight(hosts, secrets, register_providers=register_providers,
                          delete_stale=delete_stale,
                          create_resource_groups=create_resource_groups).run()


def offline_location_results(hosts: Sequence[ResolvedHost]) -> list[CheckResult]:
    """With --no-azure-check: one row per location saying it was checked for syntax only."""
    by_location: dict[str, list[str]] = defaultdict(list)
    for host in hosts:
        if host.azure.location:
            by_location[host.azure.location].append(host.name)
    return [CheckResult(CheckName.LOCATION, location, CheckStatus.NOT_DONE, None,
                        f"{location} was checked for syntax only (--no-azure-check): whether "
                        "Microsoft.HybridCompute/machines is offered there was not asked",
                        "Run without --no-azure-check to have Azure confirm it.",
                        hosts=tuple(names))
            for location, names in by_location.items()]

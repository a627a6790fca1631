"""What the fake Azure knows: apps and their secrets, subscriptions, providers, resource groups,
role assignments, Arc machines, private link scopes, gateways, and throttling.

Scenarios (tests, ``arcfleet lab up``) set this state; the server (:mod:`fleet.lab.azure.server`)
answers from it under one lock. Role definitions carry the actions of the built-in roles the
reference lists (Azure Connected Machine Onboarding, Resource Administrator, Contributor).
"""

from __future__ import annotations

import fnmatch
import threading
import time
from dataclasses import dataclass, field

ARC_PROVIDERS = (
    "Microsoft.HybridCompute",
    "Microsoft.GuestConfiguration",
    "Microsoft.HybridConnectivity",
)

# The locations ARM lists for Microsoft.HybridCompute/machines in the lab (display names, as ARM
# returns them). A region missing here is "not available" to the fake subscription.
DEFAULT_MACHINE_LOCATIONS = (
    "West Europe", "North Europe", "East US", "East US 2", "West US 2", "UK South",
    "Sweden Central", "Southeast Asia", "Australia East", "Japan East",
)


@dataclass(frozen=True)
class RoleDefinition:
    name: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()


ONBOARDING = RoleDefinition(
    "Azure Connected Machine Onboarding",
    (
        "Microsoft.HybridCompute/machines/read",
        "Microsoft.HybridCompute/machines/write",
        "Microsoft.HybridCompute/privateLinkScopes/read",
        "Microsoft.GuestConfiguration/guestConfigurationAssignments/read",
    ),
)
RESOURCE_ADMINISTRATOR = RoleDefinition(
    "Azure Connected Machine Resource Administrator",
    (
        "Microsoft.HybridCompute/machines/read",
        "Microsoft.HybridCompute/machines/write",
        "Microsoft.HybridCompute/machines/delete",
        "Microsoft.HybridCompute/machines/UpgradeExtensions/action",
        "Microsoft.HybridCompute/machines/extensions/*",
        "Microsoft.HybridCompute/privateLinkScopes/*",
        "Microsoft.HybridCompute/*/read",
        "Microsoft.Resources/deployments/*",
    ),
)
CONTRIBUTOR = RoleDefinition(
    "Contributor",
    ("*",),
    (
        "Microsoft.Authorization/*/Delete",
        "Microsoft.Authorization/*/Write",
        "Microsoft.Authorization/elevateAccess/Action",
    ),
)
READER = RoleDefinition("Reader", ("*/read",))
ROLES = {r.name: r for r in (ONBOARDING, RESOURCE_ADMINISTRATOR, CONTRIBUTOR, READER)}


@dataclass
class App:
    """A service principal: its secret (or none), and whether that secret has expired."""

    tenant_id: str
    client_id: str
    secret: str | None = None
    secret_expired: bool = False
    # The secret expires after this many tokens were issued with it (None: never): a secret
    # that expires in the middle of a run, after the preflight signed in.
    tokens_before_expiry: int | None = None
    # The certificate (PEM) whose key may sign client assertions for it.
    certificate_pem: bytes | None = None


@dataclass
class Machine:
    subscription_id: str
    resource_group: str
    name: str
    location: str = "westeurope"
    status: str = "Connected"  # Connected | Disconnected | Expired | Error

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.HybridCompute/machines/{self.name}")


@dataclass
class Subscription:
    subscription_id: str
    tenant_id: str
    registered: set[str] = field(default_factory=lambda: set(ARC_PROVIDERS))
    resource_groups: dict[str, str] = field(default_factory=dict)  # lower name -> location
    rg_names: dict[str, str] = field(default_factory=dict)  # lower name -> name as created
    machine_locations: tuple[str, ...] = DEFAULT_MACHINE_LOCATIONS
    # (lower rg, lower name) of private link scopes and gateways that exist.
    private_link_scopes: set[tuple[str, str]] = field(default_factory=set)
    gateways: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True)
class RoleAssignment:
    principal: str  # client id of the service principal
    scope: str  # /subscriptions/<id>[/resourceGroups/<rg>]
    role: str  # a name in ROLES


@dataclass(frozen=True)
class Request:
    """One request the fake served (for tests: who asked what, with which credential)."""

    method: str
    path: str
    principal: str | None  # client id behind the bearer token, or the one asking for a token
    status: int
    token: str | None = None  # the bearer token presented, if any
    user_agent: str = ""  # who asked: the simulated agents say "azcmagent-lab/<host>"


class AzureState:
    """All of the fake's state; every method takes the lock, so tests may poke it any time."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.apps: dict[str, App] = {}  # client id -> app
        self.tenants: set[str] = set()
        self.subscriptions: dict[str, Subscription] = {}
        self.assignments: list[RoleAssignment] = []
        self.machines: dict[str, Machine] = {}  # lower id -> machine
        self.tokens: dict[str, tuple[str, str, float]] = {}  # token -> (tenant, client, expiry)
        self.token_lifetime_s = 3600.0
        self.throttle_remaining = 0  # next N ARM requests answer 429
        self.retry_after_s = 1
        self.requests: list[Request] = []
        self.unavailable = False  # every request answers 503 (ARM or Entra down)
        # The lab's Key Vault (one vault, at <url>/secrets/...): name -> {version: value}, the
        # last version set is the current one; principals allowed to read (Secrets User).
        self.keyvault_secrets: dict[str, dict[str, str]] = {}
        self.keyvault_readers: set[str] = set()

    # ---- scenario setters --------------------------------------------------------------

    def add_tenant(self, tenant_id: str) -> None:
        with self.lock:
            self.tenants.add(tenant_id.lower())

    def add_app(self, tenant_id: str, client_id: str, secret: str | None = None, *,
                expired: bool = False, certificate_pem: bytes | None = None) -> App:
        with self.lock:
            self.add_tenant(tenant_id)
            app = App(tenant_id.lower(), client_id.lower(), secret, expired,
                      certificate_pem=certificate_pem)
            self.apps[client_id.lower()] = app
            return app

    def add_subscription(self, subscription_id: str, tenant_id: str) -> Subscription:
        with self.lock:
            sub = Subscription(subscription_id.lower(), tenant_id.lower())
            self.subscriptions[subscription_id.lower()] = sub
            return sub

    def add_resource_group(self, subscription_id: str, name: str,
                           location: str = "westeurope") -> None:
        with self.lock:
            sub = self.subscriptions[subscription_id.lower()]
            sub.resource_groups[name.lower()] = location
            sub.rg_names[name.lower()] = name

    def set_registered(self, subscription_id: str, namespace: str, registered: bool) -> None:
        with self.lock:
            sub = self.subscriptions[subscription_id.lower()]
            (sub.registered.add if registered else sub.registered.discard)(namespace)

    def assign_role(self, principal: str, scope: str, role: str) -> None:
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
        with self.lock:
            self.assignments.append(RoleAssignment(principal.lower(), scope.rstrip("/"), role))

    def remove_roles(self, principal: str, scope: str) -> None:
        with self.lock:
            self.assignments = [a for a in self.assignments
                                if not (a.principal == principal.lower()
                                        and a.scope.lower() == scope.rstrip("/").lower())]

    def add_machine(self, machine: Machine) -> None:
        with self.lock:
            self.machines[machine.id.lower()] = machine

    def set_keyvault_secret(self, name: str, value: str) -> str:
        """Adds a version of a Key Vault secret (now its current value); returns the version."""
        import uuid

        with self.lock:
            version = uuid.uuid4().hex
            self.keyvault_secrets.setdefault(name.lower(), {})[version] = value
            return version

    def allow_keyvault(self, principal: str) -> None:
        with self.lock:
            self.keyvault_readers.add(principal.lower())

    def throttle(self, count: int, retry_after_s: int = 1) -> None:
        with self.lock:
            self.throttle_remaining = count
            self.retry_after_s = retry_after_s

    # ---- what the server asks ----------------------------------------------------------

    def permissions(self, principal: str, scope: str) -> list[RoleDefinition]:
        """The role definitions that apply to ``principal`` at ``scope`` (inherited from above)."""
        scope = scope.rstrip("/").lower()
        with self.lock:
            return [ROLES[a.role] for a in self.assignments
                    if a.principal == principal.lower()
                    and (scope == a.scope.lower() or scope.startswith(a.scope.lower() + "/"))]

    def allowed(self, principal: str, scope: str, action: str) -> bool:
        def match(pattern: str) -> bool:
            return fnmatch.fnmatchcase(action.lower(), pattern.lower())

        roles = self.permissions(principal, scope)
        return any(any(match(p) for p in r.actions) and not any(match(p) for p in r.not_actions)
                   for r in roles)

    def issue_token(self, tenant_id: str, client_id: str) -> tuple[str, int]:
        import secrets

        with self.lock:
            token = "lab." + secrets.token_urlsafe(24)
            lifetime = int(self.token_lifetime_s)
            self.tokens[token] = (tenant_id.lower(), client_id.lower(), time.time() + lifetime)
            return token, lifetime

    def principal_of(self, token: str) -> tuple[str, str] | None:
        """(tenant, client) of a valid token; None when unknown or expired."""
        with self.lock:
            entry = self.tokens.get(token)
        if entry is None or entry[2] < time.time():
            return None
        return entry[0], entry[1]

    def log(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def requests_by(self, principal: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.principal == principal.lower()]

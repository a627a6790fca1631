"""The circuit breaker: stop starting hosts that share a cause that will fail every one of them.

A wrong service-principal secret fails the 500th host of that service principal exactly as it
failed the 3rd, but says nothing about hosts that use another one. So the breaker is *scoped*: a
``fail_run`` diagnosis names what its cause is about (``extra["breaker_scope"]``, set by the
pattern that recognised it), and the breaker keys its counts by that scope of the host:

=====================  =========================================  ==============================
scope kind             key (from the host's inventory target)     causes
=====================  =========================================  ==============================
``service_principal``  client id + tenant                         AADSTS7000215/7000222/700016..
``subscription``       subscription id                            MissingSubscriptionRegistration
``resource_group``     subscription id + resource group           RBAC, policy, missing group
=====================  =========================================  ==============================

and it is *confirmed*: a scope trips only when ``threshold`` hosts failed with the same cause
**and** they are at least ``share`` of that scope's hosts started so far (finished or in flight),
so three hosts printing a hostile message among a hundred healthy ones stop nobody. A
:class:`Confirmer` (:class:`fleet.azure.confirm.AzureConfirmer` asks Azure) may settle a cause
instead: True trips at the threshold alone, False never trips, None (cannot tell) falls back to
the share.

Hosts of a tripped scope that have not started are skipped with the scope and the cause named;
hosts of other scopes go on. Hosts already running finish.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fleet.azcm.diagnosis import Category, Diagnosis

if TYPE_CHECKING:
    from fleet.inventory.model import ResolvedHost

SERVICE_PRINCIPAL = "service_principal"
SUBSCRIPTION = "subscription"
RESOURCE_GROUP = "resource_group"
KINDS = (SERVICE_PRINCIPAL, SUBSCRIPTION, RESOURCE_GROUP)


@dataclass(frozen=True)
class ScopeTarget:
    """What a host targets, as far as a breaker scope needs it (inventory values)."""

    client_id: str = ""
    tenant_id: str = ""
    subscription_id: str = ""
    resource_group: str = ""

    @classmethod
    def of(cls, host: ResolvedHost) -> ScopeTarget:
        """A host's target as the runner and the Azure confirmer key their scopes."""
        azure = host.azure
        sp = azure.service_principal
        return cls(
            client_id=sp.client_id if sp else "",
            tenant_id=azure.tenant_id or "",
            subscription_id=azure.subscription_id or "",
            resource_group=azure.resource_group or "",
        )

    def key(self, kind: str) -> str:
        if kind == SERVICE_PRINCIPAL:
            return f"client {self.client_id or '?'} in tenant {self.tenant_id or '?'}"
        if kind == SUBSCRIPTION:
            return f"subscription {self.subscription_id or '?'}"
        return (f"resource group {self.resource_group or '?'} in subscription "
                f"{self.subscription_id or '?'}")


@dataclass(frozen=True)
class BreakerScope:
    kind: str
    key: str

    @property
    def label(self) -> str:
        return {SERVICE_PRINCIPAL: "service principal", SUBSCRIPTION: "subscription",
                RESOURCE_GROUP: "resource group"}.get(self.kind, self.kind)


def scope_kind(diagnosis: Diagnosis) -> str:
    """The kind of scope a fail_run cause is about (the pattern says; else by category)."""
    kind = diagnosis.extra.get("breaker_scope")
    if kind in KINDS:
        return kind
    return SERVICE_PRINCIPAL if diagnosis.category is Category.CREDENTIALS else RESOURCE_GROUP


def scope_of(diagnosis: Diagnosis, target: ScopeTarget) -> BreakerScope:
    kind = scope_kind(diagnosis)
    return BreakerScope(kind, target.key(kind))


class Confirmer(Protocol):
    """Asks Azure (from the jump host) whether a cause is real for a scope.

    Returns True (confirmed: trip at the threshold), False (refuted: never trip for it) or None
    (cannot tell: require the share). It must answer quickly and never raise; an implementation
    that needs the network should answer from what it learnt before the run.
    """

    def confirm(self, scope: BreakerScope, diagnosis: Diagnosis) -> bool | None: ...


@dataclass(frozen=True)
class Trip:
    scope: BreakerScope
    cause_key: str
    count: int
    started: int
    diagnosis: Diagnosis
    confirmed_by_azure: bool = False

    @property
    def reason(self) -> str:
        d = self.diagnosis
        what = d.extra.get("aadsts") or d.code or d.name or d.category.value
        how = ("confirmed with Azure" if self.confirmed_by_azure
               else f"{self.count} of {self.started} hosts started in this scope")
        return (
            f"circuit breaker open for {self.scope.label} {self.scope.key}: {how} failed with "
            f"{what} ({d.category.value}, {d.rule or d.name}); fix: {d.fix}"
        )


class CircuitBreaker:
    def __init__(self, threshold: int, share: float = 0.2,
                 confirmer: Confirmer | None = None) -> None:
        self.threshold = threshold
        self.share = share
        self.confirmer = confirmer
        self._failures: Counter[tuple[BreakerScope, str]] = Counter()
        self._started: Counter[BreakerScope] = Counter()
        self._finished: Counter[BreakerScope] = Counter()
        self._refuted: set[tuple[BreakerScope, str]] = set()
        self.trips: dict[BreakerScope, Trip] = {}

    @staticmethod
    def cause_key(diagnosis: Diagnosis) -> str:
        return (
            f"{diagnosis.category.value}|{diagnosis.code or ''}|{diagnosis.rule or diagnosis.name}"
        )

    @staticmethod
    def _scopes(target: ScopeTarget) -> list[BreakerScope]:
        return [BreakerScope(kind, target.key(kind)) for kind in KINDS]

    def started(self, target: ScopeTarget) -> None:
        """A host of these scopes started (its outcome will follow)."""
        for scope in self._scopes(target):
            self._started[scope] += 1

    def record(self, diagnosis: Diagnosis, target: ScopeTarget) -> Trip | None:
        """Count a finished host; returns the trip it caused, if any."""
        for scope in self._scopes(target):
            self._finished[scope] += 1
        if self.threshold <= 0 or not diagnosis.fail_run:
            return None
        scope = scope_of(diagnosis, target)
        key = (scope, self.cause_key(diagnosis))
        self._failures[key] += 1
        count = self._failures[key]
        if scope in self.trips or key in self._refuted or count < self.threshold:
            return None
        started = max(self._started[scope], self._finished[scope])
        verdict = self.confirmer.confirm(scope, diagnosis) if self.confirmer else None
        if verdict is False:
            self._refuted.add(key)
            return None
        if verdict is None and count < self.share * started:
            return None
        trip = Trip(scope, key[1], count, started, diagnosis, confirmed_by_azure=bool(verdict))
        self.trips[scope] = trip
        return trip

    def blocked(self, target: ScopeTarget) -> Trip | None:
        """The trip that stops a host of this target, if one of its scopes tripped."""
        for scope in self._scopes(target):
            trip = self.trips.get(scope)
            if trip is not None:
                return trip
        return None

    @property
    def open(self) -> bool:
        """Whether any scope has tripped."""
        return bool(self.trips)

    @property
    def trip(self) -> Trip | None:
        """The first trip (for callers that report one reason)."""
        return next(iter(self.trips.values()), None)

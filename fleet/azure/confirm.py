"""The breaker's confirmer: before a credential or RBAC verdict from hosts stops other hosts,
ask Azure from the jump host whether it is true.

A few hosts printing AADSTS7000215 may have a broken clock, a hostile proxy or a stale copy of
the secret; the service principal may still be fine. So when the breaker
(:mod:`fleet.engine.breaker`) reaches its threshold for a ``service_principal`` or
``resource_group`` scope it asks this confirmer, which makes one token request for that scope's
identity (a fresh credential: no cached token can hide an expired secret) and, for a resource
group, one permissions read there:

=====================  ==================================  ==================================
scope                  confirmed (True: trip)               refuted (False: never trip)
=====================  ==================================  ==================================
service principal      Entra ID refuses the sign-in         a token is issued
resource group         sign-in refused, the group does      the identity holds machines/read
                       not exist, or an onboarding action   and machines/write there (RBAC
                       is not allowed                       verdicts only)
=====================  ==================================  ==================================

Anything else (Azure unreachable, throttled, another kind of scope or cause) answers None and
the breaker falls back to its share rule. Each scope is asked once per run; the answer is kept.
The call blocks the run's event loop for its duration (one or two HTTPS requests with short
timeouts and one retry): the breaker needs the answer before it decides, and it asks at most
once per scope.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from fleet.azcm.diagnosis import Category, Diagnosis
from fleet.azure.calls import CallFailed, call
from fleet.azure.checks import MACHINE_ACTIONS, action_allowed
from fleet.azure.clouds import CloudEndpoints, endpoints_for
from fleet.azure.session import ArmSession, Identity
from fleet.engine.breaker import RESOURCE_GROUP, SERVICE_PRINCIPAL, BreakerScope, ScopeTarget
from fleet.engine.secrets import SecretBook
from fleet.errors import SecretUnavailable, UsageError
from fleet.inventory.model import ResolvedHost

log = structlog.get_logger("fleet.azure.confirm")

# The run waits for this answer: fail fast when Azure does not answer.
CONFIRM_SETTINGS: dict[str, Any] = {
    "retry_total": 1,
    "retry_connect": 1,
    "retry_read": 0,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 2,
    "connection_timeout": 5,
    "read_timeout": 10,
}


@dataclass(frozen=True)
class _ScopeInfo:
    host: ResolvedHost  # the first host of the scope: its identity and target stand for all


class AzureConfirmer:
    """A :class:`fleet.engine.breaker.Confirmer` that asks Azure (see the module docstring)."""

    def __init__(self, hosts: Sequence[ResolvedHost], secrets: SecretBook) -> None:
        self.secrets = secrets
        self._scopes: dict[BreakerScope, _ScopeInfo] = {}
        for host in hosts:
            if not (host.azure.tenant_id and host.azure.subscription_id):
                continue
            target = ScopeTarget.of(host)
            for kind in (SERVICE_PRINCIPAL, RESOURCE_GROUP):
                self._scopes.setdefault(BreakerScope(kind, target.key(kind)), _ScopeInfo(host))
        self._answers: dict[BreakerScope, bool | None] = {}
        self._lock = threading.Lock()
        self.asked: list[tuple[BreakerScope, bool | None]] = []  # what was asked, in order

    def confirm(self, scope: BreakerScope, diagnosis: Diagnosis) -> bool | None:
        with self._lock:
            if scope in self._answers:
                return self._answers[scope]
            info = self._scopes.get(scope)
            answer: bool | None = None
            if info is not None:
                try:
                    answer = self._ask(scope, info.host, diagnosis)
                except Exception as exc:  # the breaker must get an answer, never an exception
                    log.warning("breaker confirmation failed", scope=scope.key,
                                error=f"{type(exc).__name__}: {exc}")
                    answer = None
            self._answers[scope] = answer
            self.asked.append((scope, answer))
            log.info("breaker asked Azure", scope_kind=scope.kind, scope=scope.key,
                     cause=diagnosis.rule or diagnosis.name,
                     verdict={True: "confirmed", False: "refuted", None: "unknown"}[answer])
            return answer

    def _ask(self, scope: BreakerScope, host: ResolvedHost, diagnosis: Diagnosis) -> bool | None:
        if scope.kind == RESOURCE_GROUP and diagnosis.category not in (
                Category.PERMISSIONS, Category.INVALID_INPUT, Category.CREDENTIALS):
            return None  # a policy denial or the like: the permissions read cannot tell
        session = self._session(host)
        if session is None:
            return None
        quiet = logging.getLogger("azure")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # azure-identity warns on every refused sign-in
        try:
            try:
                call(session.token)
            except CallFailed as failed:
                return True if failed.kind == "sign_in" else None
            if scope.kind == SERVICE_PRINCIPAL:
                return False
            return self._permissions(session, host, diagnosis)
        finally:
            quiet.setLevel(level)
            session.close()

    def _session(self, host: ResolvedHost) -> ArmSession | None:
        sp = host.azure.service_principal
        try:
            secret = self.secrets.sp_secret(host)
            endpoints: CloudEndpoints = endpoints_for(host.azure.cloud, host.azure.endpoints_file)
        except (SecretUnavailable, UsageError):
            return None
        identity = Identity(host.azure.tenant_id, sp.client_id if sp else None, secret,
                            sp.certificate_file if sp else None)
        return ArmSession(identity, endpoints, settings=CONFIRM_SETTINGS)

    @staticmethod
    def _permissions(session: ArmSession, host: ResolvedHost,
                     diagnosis: Diagnosis) -> bool | None:
        subscription = str(host.azure.subscription_id)
        rg = str(host.azure.resource_group)
        client = session.authorization(subscription)
        try:
            entries = call(lambda: list(client.permissions.list_for_resource_group(rg)))
        except CallFailed as failed:
            if failed.reached and (failed.code == "ResourceGroupNotFound"
                                   or failed.status == 404):
                return True
            return None
        missing = [action for action in MACHINE_ACTIONS
                   if not any(action_allowed(action, list(e.actions or []),
                                             list(e.not_actions or [])) for e in entries)]
        if missing:
            return True
        # Every onboarding action is allowed: an RBAC verdict is refuted; another cause (the
        # group missing, a sign-in refusal) was not what this read could see.
        return False if diagnosis.category is Category.PERMISSIONS else None
